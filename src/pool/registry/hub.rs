//! The control hub: which worker-side control session speaks for which
//! backend id, so that other threads (the admin API, later broadcasts) can
//! send a message down a backend's channel without touching its worker.

use std::collections::HashMap;
use std::future::poll_fn;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use atomic_waker::AtomicWaker;
use crossbeam::queue::SegQueue;

use super::protocol::ServerMessage;

/// A session's mailbox: a lock-free queue plus a waker the session awaits.
#[derive(Default)]
pub(crate) struct Mailbox {
    queue: SegQueue<ServerMessage>,
    waker: AtomicWaker,
}

impl Mailbox {
    pub(crate) fn push(&self, msg: ServerMessage) {
        self.queue.push(msg);
        self.waker.wake();
    }

    /// Waits for the next message (one waiter: the session task).
    pub(crate) async fn next(&self) -> ServerMessage {
        poll_fn(|cx| {
            if let Some(m) = self.queue.pop() {
                return Poll::Ready(m);
            }
            self.waker.register(cx.waker());
            match self.queue.pop() {
                Some(m) => Poll::Ready(m),
                None => Poll::Pending,
            }
        })
        .await
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
