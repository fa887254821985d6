//! A proxied WebSocket session as the message hub sees it: who it is (id,
//! client, backend, path, subprotocol, channels), what it has moved so far,
//! and its send queue of injected frames (publish, send). The session's
//! task and its worker's hub share it through the connection table; only
//! the worker that owns the session ever touches it.
//!
//! Injected data frames wait in the send queue until the stream toward the
//! client is between whole messages: the relay's forwarder writes them when
//! a message it forwarded ends, the relay's injector when the session is
//! idle. The queue is bounded (`--ws-send-queue`): a session over it is
//! closed with 1008 as a slow consumer.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Instant;

use super::track::Track;
use crate::hub::router::Tally;

/// A ping sent on an operator's request: its payload, and where its pong
/// is counted.
pub(crate) struct OpPing {
    pub payload: [u8; 16],
    pub tally: Arc<Tally>,
}

/// What a send attempt did (see [`WsSession::enqueue`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enqueued {
    /// Queued for the client.
    Queued,
    /// The session cannot take it (tunnel mode, or already closing).
    Skipped,
    /// Over the send queue's bound: the session is to be closed.
    Overflow,
}

/// One proxied WebSocket session.
pub(crate) struct WsSession {
    /// The connection's local id (worker in the top 16 bits).
    pub local: u64,
    pub peer: SocketAddr,
    pub backend: Arc<str>,
    pub path: Box<str>,
    pub subprotocol: Option<Box<str>>,
    pub started: Instant,
    /// Relayed as bytes: no frame may be injected.
    pub tunnel: bool,
    /// Channels the session belongs to (the worker's index mirrors them;
    /// see [`WsSession::with_channels`]).
    channels: Cell<Vec<Rc<str>>>,
    /// Ending, bytes and messages each way.
    pub track: Track,
    /// Injected frames waiting for a message boundary toward the client.
    outbox: Cell<Vec<u8>>,
    /// Bytes queued or being written from the outbox (at most
    /// `--ws-send-queue`, which is below 4 GiB).
    queued: Cell<u32>,
    /// Bytes waiting in the outbox (not yet taken for a write).
    waiting: Cell<u32>,
    /// The outbox got something since the injector last looked.
    kicked: Cell<bool>,
    injector: RefCell<Option<Waker>>,
    /// No more injections: the session is closing.
    closing: Cell<bool>,
    /// The operator's ping awaiting its pong.
    op_ping: Cell<Option<Box<OpPing>>>,
}

impl WsSession {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        local: u64,
        peer: SocketAddr,
        backend: Arc<str>,
        path: Box<str>,
        subprotocol: Option<Box<str>>,
        tunnel: bool,
    ) -> Self {
        WsSession {
            local,
            peer,
            backend,
            path,
            subprotocol,
            started: Instant::now(),
            tunnel,
            channels: Cell::new(Vec::new()),
            track: Track::default(),
            outbox: Cell::new(Vec::new()),
            queued: Cell::new(0),
            waiting: Cell::new(0),
            kicked: Cell::new(false),
            injector: RefCell::new(None),
            closing: Cell::new(false),
            op_ping: Cell::new(None),
        }
    }

    /// Works on the session's channel list.
    pub(crate) fn with_channels<T>(&self, f: impl FnOnce(&mut Vec<Rc<str>>) -> T) -> T {
        let mut list = self.channels.take();
        let out = f(&mut list);
        self.channels.set(list);
        out
    }

    /// Queues a whole frame for the client, within `limit` bytes queued.
    pub(crate) fn enqueue(&self, frame: &[u8], limit: usize) -> Enqueued {
        if self.tunnel || self.closing.get() {
            return Enqueued::Skipped;
        }
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let total = self.queued.get().saturating_add(len);
        if total as usize > limit || total == u32::MAX {
            self.close_outbox();
            return Enqueued::Overflow;
        }
        let mut out = self.outbox.take();
        out.extend_from_slice(frame);
        self.outbox.set(out);
        self.queued.set(total);
        self.waiting.set(self.waiting.get().saturating_add(len));
        self.track.count_injected();
        self.kicked.set(true);
        if let Some(w) = self.injector.borrow().as_ref() {
            w.wake_by_ref();
        }
        Enqueued::Queued
    }

    /// Whether frames wait in the outbox.
    #[inline]
    pub(crate) fn has_outbox(&self) -> bool {
        self.waiting.get() != 0
    }

    /// Takes the waiting frames for one write (their bytes stay counted
    /// until [`WsSession::written`]).
    pub(crate) fn take_outbox(&self) -> Vec<u8> {
        self.waiting.set(0);
        self.outbox.take()
    }

    /// `n` bytes taken from the outbox were written (or given up).
    pub(crate) fn written(&self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.queued.set(self.queued.get().saturating_sub(n));
    }

    /// Bytes queued or being written.
    pub(crate) fn queued(&self) -> usize {
        self.queued.get() as usize
    }

    /// No more injections (the session is ending); what waits is dropped.
    pub(crate) fn close_outbox(&self) {
        self.closing.set(true);
        let n = self.take_outbox().len();
        self.written(n);
    }

    /// When the session started, in Unix milliseconds.
    pub(crate) fn since_ms(&self) -> u64 {
        crate::pool::clock::unix_ms().saturating_sub(self.started.elapsed().as_millis() as u64)
    }

    /// Whether the session takes no more injections.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.get()
    }

    /// Waits until the outbox got frames since the last call (one waiter:
    /// the relay's injector).
    pub(crate) async fn kicked(&self) {
        poll_fn(|cx| {
            if self.kicked.replace(false) {
                return Poll::Ready(());
            }
            // The relay polls this on every wake: keep the waker it has.
            let mut slot = self.injector.borrow_mut();
            if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *slot = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// Arms an operator's ping; returns its payload. A ping still
    /// unanswered is replaced (its pong no longer counts).
    pub(crate) fn arm_ping(&self, tally: Arc<Tally>) -> [u8; 16] {
        let mut payload = [0u8; 16];
        payload[..6].copy_from_slice(b"wslbop");
        payload[6..14].copy_from_slice(&fastrand::u64(..).to_be_bytes());
        payload[14..].copy_from_slice(&(self.local as u16).to_be_bytes());
        self.op_ping.set(Some(Box::new(OpPing { payload, tally })));
        payload
    }

    /// Whether a pong's payload answers the operator's ping (counted then,
    /// and the pong goes no further).
    pub(crate) fn answers_op_ping(&self, payload: &[u8]) -> bool {
        match self.op_ping.take() {
            Some(p) if p.payload == payload => {
                p.tally.pong();
                true
            }
            other => {
                self.op_ping.set(other);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(tunnel: bool) -> WsSession {
        WsSession::new(
            1,
            "127.0.0.1:1".parse().unwrap(),
            Arc::from("b"),
            "/".into(),
            None,
            tunnel,
        )
    }

    #[test]
    fn the_send_queue_is_bounded_and_counts_until_written() {
        let s = session(false);
        assert_eq!(s.enqueue(&[1; 10], 25), Enqueued::Queued);
        assert_eq!(s.enqueue(&[2; 10], 25), Enqueued::Queued);
        let out = s.take_outbox();
        assert_eq!(out.len(), 20);
        assert_eq!(s.queued(), 20, "in flight still counts");
        assert_eq!(s.enqueue(&[3; 10], 25), Enqueued::Overflow);
        assert!(s.is_closing());
        assert_eq!(s.enqueue(&[3; 1], 25), Enqueued::Skipped);
        s.written(20);
        assert_eq!(s.queued(), 0);
        assert_eq!(session(true).enqueue(&[1], 10), Enqueued::Skipped);
    }

    #[test]
    fn an_operator_ping_is_answered_once_by_its_own_pong() {
        let s = session(false);
        let tally = Arc::new(Tally::new(1));
        let p = s.arm_ping(tally.clone());
        assert!(!s.answers_op_ping(b"other"));
        assert!(s.answers_op_ping(&p));
        assert!(!s.answers_op_ping(&p));
        assert_eq!(tally.pongs(), 1);
    }
}

#[cfg(test)]
#[test]
fn a_session_fits_its_allocation_class() {
    // With its Rc header, a session fills a 256-byte allocation: one more
    // field and every session costs a 320-byte one.
    assert!(std::mem::size_of::<WsSession>() <= 240);
}
