//! The control hub: which worker-side control session speaks for which
//! backend id, so that other threads (the admin API, the channel's own
//! operation and event tasks) can send a message down a backend's channel
//! without touching its worker.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Context;
use std::task::Poll;

use atomic_waker::AtomicWaker;
use crossbeam::queue::SegQueue;

use super::protocol::ServerMessage;

/// Events a mailbox holds at most; beyond it they are refused (the
/// caller counts them lost), so a backend that reads slowly never makes
/// its mailbox grow without bound.
pub(crate) const MAX_QUEUED_EVENTS: usize = 256;

/// A session's mailbox: a lock-free queue plus a waker the session awaits.
/// Notices and answers are few (bounded by their senders: an admin
/// request, the channel's pending operations); events are counted and
/// bounded here.
#[derive(Default)]
pub(crate) struct Mailbox {
    queue: SegQueue<ServerMessage>,
    waker: AtomicWaker,
    events: AtomicUsize,
}

impl Mailbox {
    pub(crate) fn push(&self, msg: ServerMessage) {
        if matches!(msg, ServerMessage::Event { .. }) {
            self.events.fetch_add(1, Ordering::AcqRel);
        }
        self.queue.push(msg);
        self.waker.wake();
    }

    /// Queues an event unless [`MAX_QUEUED_EVENTS`] are waiting already;
    /// false when it was refused.
    pub(crate) fn push_event(&self, msg: ServerMessage) -> bool {
        if self.events.load(Ordering::Acquire) >= MAX_QUEUED_EVENTS {
            return false;
        }
        self.push(msg);
        true
    }

    fn pop(&self) -> Option<ServerMessage> {
        let m = self.queue.pop()?;
        if matches!(m, ServerMessage::Event { .. }) {
            self.events.fetch_sub(1, Ordering::AcqRel);
        }
        Some(m)
    }

    /// The next message, or registers the waker (one waiter: the session).
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<ServerMessage> {
        if let Some(m) = self.pop() {
            return Poll::Ready(m);
        }
        self.waker.register(cx.waker());
        match self.pop() {
            Some(m) => Poll::Ready(m),
            None => Poll::Pending,
        }
    }
}

/// Backend id -> the session currently speaking for it.
#[derive(Default)]
pub(crate) struct ControlHub {
    next_session: AtomicU64,
    sessions: Mutex<HashMap<String, Owner>>,
}

/// The session speaking for a backend id, and where it connected from.
struct Owner {
    session: u64,
    peer: IpAddr,
    mailbox: Arc<Mailbox>,
}

impl ControlHub {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A fresh session number.
    pub(crate) fn new_session(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Session `session`, connected from `peer`, now speaks for `id`. An
    /// older session of the same id is replaced only when it came from the
    /// same address (the backend reconnecting): a token holder elsewhere
    /// cannot take over a live backend's id and send its traffic to itself.
    /// False (and nothing changed) when another address holds the id.
    pub(crate) fn claim(
        &self,
        id: &str,
        session: u64,
        peer: IpAddr,
        mailbox: Arc<Mailbox>,
    ) -> bool {
        let peer = peer.to_canonical();
        let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(owner) = s.get(id) {
            if owner.session != session && owner.peer != peer {
                return false;
            }
        }
        s.insert(
            id.to_string(),
            Owner {
                session,
                peer,
                mailbox,
            },
        );
        true
    }

    /// Removes `id` if `session` still speaks for it; returns whether it did
    /// (a newer session of the same backend keeps its registration).
    pub(crate) fn detach(&self, id: &str, session: u64) -> bool {
        let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        match s.get(id) {
            Some(owner) if owner.session == session => {
                s.remove(id);
                true
            }
            _ => false,
        }
    }

    /// Sends `msg` to the backend's channel; false if it has none.
    pub(crate) fn send(&self, id: &str, msg: ServerMessage) -> bool {
        let s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        match s.get(id) {
            Some(owner) => {
                owner.mailbox.push(msg);
                true
            }
            None => false,
        }
    }

    pub(crate) fn connected(&self) -> usize {
        self.sessions.lock().map(|s| s.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn newer_session_survives_older_detach() {
        let hub = ControlHub::new();
        let (a, b) = (hub.new_session(), hub.new_session());
        let here = ip("10.0.0.1");
        assert!(hub.claim("x", a, here, Arc::new(Mailbox::default())));
        assert!(hub.claim("x", b, here, Arc::new(Mailbox::default())));
        assert!(!hub.detach("x", a));
        assert!(hub.send("x", ServerMessage::Drain));
        assert!(hub.detach("x", b));
        assert!(!hub.send("x", ServerMessage::Drain));
    }

    fn event(n: u64) -> ServerMessage {
        let mut fields = serde_json::Map::new();
        fields.insert("event".into(), "session_open".into());
        fields.insert("n".into(), n.into());
        ServerMessage::Event { fields }
    }

    #[test]
    fn a_mailbox_refuses_events_past_its_bound_but_never_answers() {
        let m = Mailbox::default();
        for i in 0..MAX_QUEUED_EVENTS as u64 {
            assert!(m.push_event(event(i)));
        }
        assert!(!m.push_event(event(999)), "full of events");
        m.push(ServerMessage::Drain);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert_eq!(m.poll_next(&mut cx), Poll::Ready(event(0)));
        assert!(m.push_event(event(1000)), "room again after one is taken");
        let mut got = Vec::new();
        while let Poll::Ready(msg) = m.poll_next(&mut cx) {
            got.push(msg);
        }
        assert_eq!(got.len(), MAX_QUEUED_EVENTS + 1);
        assert_eq!(got[MAX_QUEUED_EVENTS - 1], ServerMessage::Drain);
        assert_eq!(m.events.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn another_address_cannot_take_a_live_id() {
        let hub = ControlHub::new();
        let (a, b, c) = (hub.new_session(), hub.new_session(), hub.new_session());
        assert!(hub.claim("x", a, ip("10.0.0.1"), Arc::new(Mailbox::default())));
        assert!(!hub.claim("x", b, ip("10.0.0.2"), Arc::new(Mailbox::default())));
        // The mapped form of the owner's address is the owner.
        assert!(hub.claim("x", c, ip("::ffff:10.0.0.1"), Arc::new(Mailbox::default())));
        assert!(hub.detach("x", c));
        assert!(hub.claim("x", b, ip("10.0.0.2"), Arc::new(Mailbox::default())));
    }
}
