//! The channel index of one worker: channel name -> the local ids of this
//! worker's sessions in it, mirrored by each session's own list (for its
//! listing and its exit). Only the worker that owns the sessions touches it.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use super::session::WsSession;
use crate::hub::ops::MAX_CHANNELS_PER_SESSION;

/// Channel name -> the local ids of this worker's sessions in it.
#[derive(Default)]
pub(crate) struct ChannelIndex {
    members: RefCell<HashMap<Rc<str>, HashSet<u64>>>,
}

impl ChannelIndex {
    /// Puts `session` in channel `name` (false: already in, or the session
    /// is in as many channels as it may be).
    pub(crate) fn join(&self, session: &WsSession, name: &str) -> bool {
        session.with_channels(|mine| {
            if mine.iter().any(|c| &**c == name) || mine.len() >= MAX_CHANNELS_PER_SESSION {
                return false;
            }
            let mut members = self.members.borrow_mut();
            let key = match members.get_key_value(name) {
                Some((k, _)) => k.clone(),
                None => Rc::from(name),
            };
            members
                .entry(key.clone())
                .or_default()
                .insert(session.local);
            mine.push(key);
            true
        })
    }

    /// Takes `session` out of channel `name` (false: it was not in).
    pub(crate) fn leave(&self, session: &WsSession, name: &str) -> bool {
        let key = session.with_channels(|mine| {
            let at = mine.iter().position(|c| &**c == name)?;
            Some(mine.swap_remove(at))
        });
        match key {
            Some(key) => {
                self.forget(&key, session.local);
                true
            }
            None => false,
        }
    }

    /// Takes `session` out of every channel.
    pub(crate) fn leave_all(&self, session: &WsSession) {
        let mine = session.with_channels(std::mem::take);
        for key in mine {
            self.forget(&key, session.local);
        }
    }

    fn forget(&self, key: &Rc<str>, local: u64) {
        let mut members = self.members.borrow_mut();
        if let Some(set) = members.get_mut(key) {
            set.remove(&local);
            if set.is_empty() {
                members.remove(key);
            }
        }
    }

    /// The local ids of the members of `name`.
    pub(crate) fn members(&self, name: &str) -> Vec<u64> {
        self.members
            .borrow()
            .get(name)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// How many channels have members here.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.members.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn session(local: u64) -> WsSession {
        WsSession::new(
            local,
            "127.0.0.1:1".parse().unwrap(),
            Arc::from("b"),
            "/".into(),
            None,
            false,
        )
    }

    #[test]
    fn channels_are_mirrored_on_the_session_and_emptied_channels_go() {
        let index = ChannelIndex::default();
        let (a, b) = (session(1), session(2));
        assert!(index.join(&a, "room"));
        assert!(!index.join(&a, "room"));
        assert!(index.join(&b, "room"));
        assert!(index.join(&b, "other"));
        let mut m = index.members("room");
        m.sort();
        assert_eq!(m, vec![1, 2]);
        assert!(index.leave(&a, "room"));
        assert!(!index.leave(&a, "room"));
        assert_eq!(index.members("room"), vec![2]);
        index.leave_all(&b);
        assert_eq!(index.len(), 0);
        assert!(b.with_channels(|m| m.is_empty()));
        for i in 0..MAX_CHANNELS_PER_SESSION {
            assert!(index.join(&a, &format!("c{i}")));
        }
        assert!(!index.join(&a, "one-too-many"));
    }
}
