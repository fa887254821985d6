//! Live events: what happened to sessions and backends, as values every
//! reader can take (the admin API's `GET /api/events` stream, a backend's
//! control channel, the library's hooks). A reader holds a bounded queue:
//! when it falls behind, new events are counted as lost for it and dropped,
//! so a slow reader never slows traffic. With no reader at all, producers
//! check one atomic and build nothing.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;

use atomic_waker::AtomicWaker;
use crossbeam::queue::ArrayQueue;
use crossbeam::sync::ShardedLock;
use serde::Serialize;

/// One event, with when it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Unix time, milliseconds.
    pub ts_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// An event stamped now.
    pub fn now(kind: EventKind) -> Self {
        let ts_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Event { ts_ms, kind }
    }

    /// The backend the event concerns, if any.
    pub fn backend(&self) -> Option<&str> {
        match &self.kind {
            EventKind::SessionOpen { backend, .. }
            | EventKind::SessionClosed { backend, .. }
            | EventKind::Message { backend, .. } => Some(backend),
            EventKind::BackendRegistered { id, .. }
            | EventKind::BackendReady { id, .. }
            | EventKind::BackendLeft { id, .. }
            | EventKind::BackendDrained { id, .. } => Some(id),
            EventKind::HandshakeRefused { .. } => None,
        }
    }

    /// Whether this is a message's metadata (sent only to readers that
    /// asked for those).
    pub fn is_message(&self) -> bool {
        matches!(self.kind, EventKind::Message { .. })
    }
}

impl EventKind {
    /// The event's type as its JSON `type` field spells it (`session_open`,
    /// `backend_ready`, ...): the SSE stream's `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::SessionOpen { .. } => "session_open",
            EventKind::HandshakeRefused { .. } => "handshake_refused",
            EventKind::SessionClosed { .. } => "session_closed",
            EventKind::Message { .. } => "message",
            EventKind::BackendRegistered { .. } => "backend_registered",
            EventKind::BackendReady { .. } => "backend_ready",
            EventKind::BackendLeft { .. } => "backend_left",
            EventKind::BackendDrained { .. } => "backend_drained",
        }
    }
}

/// Who ended a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClosedBy {
    /// The client sent a close frame or went away first.
    Client,
    /// The backend did.
    Backend,
    /// The balancer closed it (drain, limits, a close request, a slow
    /// consumer, a ping timeout, a protocol error).
    Balancer,
}

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Way {
    /// From the client toward the backend.
    In,
    /// Toward the client (from the backend).
    Out,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A WebSocket session was established (the 101 went to the client).
    SessionOpen {
        /// The connection id.
        id: String,
        /// The client's address.
        client: String,
        /// The backend's id.
        backend: String,
        /// The upgrade's path.
        path: String,
        /// The negotiated subprotocol.
        subprotocol: Option<String>,
    },
    /// An upgrade was refused before any session existed.
    HandshakeRefused {
        /// The client's address.
        client: String,
        /// The request's path.
        path: String,
        /// The status answered.
        status: u16,
        /// Why.
        reason: String,
    },
    /// A session ended.
    SessionClosed {
        /// The connection id.
        id: String,
        /// The backend's id.
        backend: String,
        /// The close code (1006: lost without a close frame).
        code: u16,
        /// Who ended it.
        closed_by: ClosedBy,
        /// How long it lasted.
        duration_ms: u64,
        /// Bytes read from the client.
        bytes_in: u64,
        /// Bytes read from the backend.
        bytes_out: u64,
        /// Data messages from the client.
        messages_in: u64,
        /// Data messages toward the client.
        messages_out: u64,
    },
    /// A data message's metadata (readers that asked for messages only).
    Message {
        /// The connection id.
        id: String,
        /// The backend's id.
        backend: String,
        /// Which way.
        direction: Way,
        /// `text` or `binary`.
        opcode: &'static str,
        /// Payload bytes over all fragments.
        length: u64,
        /// Whether it came in more than one frame.
        fragmented: bool,
    },
    /// A backend joined the pool.
    BackendRegistered {
        /// The backend's id.
        id: String,
        /// Where it is reached.
        url: String,
        /// Registered over the control channel (false: static).
        registered: bool,
    },
    /// A backend takes new connections (after joining or a drain).
    BackendReady {
        /// The backend's id.
        id: String,
        /// Where it is reached.
        url: String,
    },
    /// A backend left the pool.
    BackendLeft {
        /// The backend's id.
        id: String,
        /// Where it was reached.
        url: String,
    },
    /// A backend stopped taking new connections.
    BackendDrained {
        /// The backend's id.
        id: String,
        /// Where it is reached.
        url: String,
    },
}

/// Events a reader may hold before new ones are lost for it.
pub const READER_QUEUE: usize = 4096;

/// What a reader wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interest {
    /// Message metadata too.
    pub messages: bool,
    /// Only events about this backend (its sessions and itself).
    pub backend: Option<String>,
}

/// One reader's queue.
pub struct Reader {
    interest: Interest,
    queue: ArrayQueue<Arc<Event>>,
    lost: AtomicU64,
    waker: AtomicWaker,
    closed: AtomicBool,
}

impl Reader {
    fn offer(&self, e: &Arc<Event>) {
        if e.is_message() && !self.interest.messages {
            return;
        }
        if let Some(b) = &self.interest.backend {
            if e.backend() != Some(b.as_str()) {
                return;
            }
        }
        if self.queue.push(e.clone()).is_err() {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
        self.waker.wake();
    }

    /// Events lost so far (the queue was full); the count is reset.
    pub fn take_lost(&self) -> u64 {
        self.lost.swap(0, Ordering::Relaxed)
    }

    /// The next event, if one is queued.
    pub fn try_next(&self) -> Option<Arc<Event>> {
        self.queue.pop()
    }

    /// Waits for the next event; None once the bus is shut.
    pub async fn next(&self) -> Option<Arc<Event>> {
        poll_fn(|cx| {
            if let Some(e) = self.queue.pop() {
                return Poll::Ready(Some(e));
            }
            if self.closed.load(Ordering::Acquire) {
                return Poll::Ready(None);
            }
            self.waker.register(cx.waker());
            match self.queue.pop() {
                Some(e) => Poll::Ready(Some(e)),
                None if self.closed.load(Ordering::Acquire) => Poll::Ready(None),
                None => Poll::Pending,
            }
        })
        .await
    }
}

/// The readers of one balancer.
#[derive(Default)]
pub struct EventBus {
    readers: ShardedLock<Vec<Arc<Reader>>>,
    /// Readers of any kind (a relaxed load says whether to build events).
    count: AtomicUsize,
    /// Readers that want message metadata.
    message_count: AtomicUsize,
    /// Set by [`EventBus::shut`]: later readers start closed.
    shut: AtomicBool,
}

/// A reader's place on the bus: it leaves the bus when dropped.
pub struct Subscription {
    bus: Arc<EventBus>,
    reader: Arc<Reader>,
}

impl std::ops::Deref for Subscription {
    type Target = Reader;
    fn deref(&self) -> &Reader {
        &self.reader
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut readers = self.bus.readers.write().unwrap_or_else(|e| e.into_inner());
        readers.retain(|r| !Arc::ptr_eq(r, &self.reader));
        self.bus.count.fetch_sub(1, Ordering::Relaxed);
        if self.reader.interest.messages {
            self.bus.message_count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl EventBus {
    /// A bus with no readers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether anyone reads events (build them only then).
    #[inline]
    pub fn active(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// Whether anyone reads message metadata.
    #[inline]
    pub fn wants_messages(&self) -> bool {
        self.message_count.load(Ordering::Relaxed) > 0
    }

    /// A new reader.
    pub fn subscribe(self: &Arc<Self>, interest: Interest) -> Subscription {
        let messages = interest.messages;
        let reader = Arc::new(Reader {
            interest,
            queue: ArrayQueue::new(READER_QUEUE),
            lost: AtomicU64::new(0),
            waker: AtomicWaker::new(),
            closed: AtomicBool::new(false),
        });
        let mut readers = self.readers.write().unwrap_or_else(|e| e.into_inner());
        // Read under the lock `shut` takes too: a reader either is in the
        // list `shut` closes, or sees the flag here.
        if self.shut.load(Ordering::Acquire) {
            reader.closed.store(true, Ordering::Release);
        }
        readers.push(reader.clone());
        self.count.fetch_add(1, Ordering::Relaxed);
        if messages {
            self.message_count.fetch_add(1, Ordering::Relaxed);
        }
        Subscription {
            bus: self.clone(),
            reader,
        }
    }

    /// Hands `event` to every interested reader (never waits for one).
    pub fn publish(&self, event: Event) {
        if !self.active() {
            return;
        }
        let event = Arc::new(event);
        let readers = self.readers.read().unwrap_or_else(|e| e.into_inner());
        for r in readers.iter() {
            r.offer(&event);
        }
    }

    /// Ends every reader's stream (the balancer stopped); readers that
    /// subscribe later find theirs ended at once.
    pub fn shut(&self) {
        let readers = self.readers.read().unwrap_or_else(|e| e.into_inner());
        self.shut.store(true, Ordering::Release);
        for r in readers.iter() {
            r.closed.store(true, Ordering::Release);
            r.waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    fn open(backend: &str) -> Event {
        Event::now(EventKind::SessionOpen {
            id: "t-0-1".into(),
            client: "127.0.0.1:1".into(),
            backend: backend.into(),
            path: "/".into(),
            subprotocol: None,
        })
    }

    fn message() -> Event {
        Event::now(EventKind::Message {
            id: "t-0-1".into(),
            backend: "b".into(),
            direction: Way::In,
            opcode: "text",
            length: 3,
            fragmented: false,
        })
    }

    #[test]
    fn readers_get_what_they_asked_for_and_a_full_queue_counts_losses() {
        let bus = Arc::new(EventBus::new());
        assert!(!bus.active());
        bus.publish(open("b"));
        let all = bus.subscribe(Interest::default());
        let msgs = bus.subscribe(Interest {
            messages: true,
            backend: Some("b".into()),
        });
        assert!(bus.active() && bus.wants_messages());
        bus.publish(open("b"));
        bus.publish(open("other"));
        bus.publish(message());
        assert_eq!(all.try_next().map(|e| e.backend() == Some("b")), Some(true));
        assert_eq!(
            all.try_next().map(|e| e.backend() == Some("other")),
            Some(true)
        );
        assert!(all.try_next().is_none(), "no message metadata unasked");
        assert!(msgs.try_next().is_some());
        assert!(msgs.try_next().is_some_and(|e| e.is_message()));
        assert!(msgs.try_next().is_none());
        for _ in 0..READER_QUEUE + 5 {
            bus.publish(open("b"));
        }
        assert_eq!(all.take_lost(), 5);
        assert_eq!(all.take_lost(), 0);
        drop(msgs);
        assert!(!bus.wants_messages());
        drop(all);
        assert!(!bus.active());
    }

    #[test]
    fn events_serialize_flat_with_their_type() {
        let json = serde_json::to_value(open("b")).unwrap();
        assert_eq!(json["type"], "session_open");
        assert_eq!(json["backend"], "b");
        assert!(json["ts_ms"].as_u64().unwrap() > 0);
    }

    #[test]
    fn the_name_is_the_json_type() {
        let (id, url) = (String::from("b"), String::from("http://b"));
        let kinds = [
            open("b").kind,
            message().kind,
            EventKind::HandshakeRefused {
                client: "127.0.0.1:1".into(),
                path: "/".into(),
                status: 403,
                reason: "origin".into(),
            },
            EventKind::SessionClosed {
                id: id.clone(),
                backend: id.clone(),
                code: 1000,
                closed_by: ClosedBy::Client,
                duration_ms: 1,
                bytes_in: 0,
                bytes_out: 0,
                messages_in: 0,
                messages_out: 0,
            },
            EventKind::BackendRegistered {
                id: id.clone(),
                url: url.clone(),
                registered: false,
            },
            EventKind::BackendReady {
                id: id.clone(),
                url: url.clone(),
            },
            EventKind::BackendLeft {
                id: id.clone(),
                url: url.clone(),
            },
            EventKind::BackendDrained { id, url },
        ];
        for kind in kinds {
            let json = serde_json::to_value(Event::now(kind.clone())).unwrap();
            assert_eq!(json["type"], kind.name());
        }
    }

    #[test]
    fn a_shut_bus_ends_its_readers_and_later_ones() {
        let bus = Arc::new(EventBus::new());
        let before = bus.subscribe(Interest::default());
        bus.publish(open("b"));
        bus.shut();
        let after = bus.subscribe(Interest::default());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut next = std::pin::pin!(before.next());
        assert!(matches!(next.as_mut().poll(&mut cx), Poll::Ready(Some(_))));
        let mut next = std::pin::pin!(before.next());
        assert!(matches!(next.as_mut().poll(&mut cx), Poll::Ready(None)));
        let mut next = std::pin::pin!(after.next());
        assert!(matches!(next.as_mut().poll(&mut cx), Poll::Ready(None)));
    }
}
