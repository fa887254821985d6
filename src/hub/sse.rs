//! Fallback sessions (WebSocket to the backend, Server-Sent Events to the
//! client) as every worker sees them: the table of live sessions by token,
//! and each session's shared state — the events kept for a resume, the
//! stream attached now, the messages posted toward the backend.
//!
//! A session is owned by the worker that opened it (its relay and adapter
//! run there). Its event stream and the POSTs that feed it may land on any
//! worker, so the state they share sits behind one short-held mutex per
//! session, and each side wakes the other through an `AtomicWaker`. The
//! table is sharded by token, so lookups from many cores rarely meet.
//!
//! Nothing here does I/O.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Context;
use std::time::Instant;

use atomic_waker::AtomicWaker;

/// A fallback session's token: 128 random bits from the operating system.
/// Whoever holds it can post into the session, so it is only ever shown in
/// full to the client that opened it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SseToken(u128);

impl SseToken {
    /// A fresh token from the OS's random source.
    pub fn random() -> std::io::Result<Self> {
        let mut bytes = [0u8; 16];
        getrandom::getrandom(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(SseToken(u128::from_be_bytes(bytes)))
    }

    /// Reads the 32 lowercase hex digits [`SseToken`] is written as.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| u128::from_str_radix(s, 16).ok().map(SseToken))
            .flatten()
    }

    /// The first 8 hex digits, for logs (never the whole token).
    pub fn short(&self) -> String {
        format!("{:08x}…", (self.0 >> 96) as u32)
    }
}

impl fmt::Display for SseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for SseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SseToken({})", self.short())
    }
}

/// A message posted toward the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// UTF-8 checked by the poster.
    Text(Vec<u8>),
    Binary(Vec<u8>),
    /// Close the backend session with this code (the client's DELETE).
    Close(u16),
}

impl Outgoing {
    fn len(&self) -> usize {
        match self {
            Outgoing::Text(b) | Outgoing::Binary(b) => b.len(),
            Outgoing::Close(_) => 0,
        }
    }
}

/// Why a post was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostError {
    /// The session ended (or is ending).
    Gone,
    /// Too much is already waiting to go to the backend.
    Busy,
}

/// What pushing an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Kept,
    /// A stream is attached but behind by the whole buffer: stop reading
    /// the backend until it catches up ([`SseShared::poll_room`]).
    Full,
    /// No stream, and the events not yet sent anywhere passed the buffer:
    /// the session is to close (1001).
    Overflow,
}

/// Why a stream cannot attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachError {
    /// The events after the client's last one are no longer kept (or its
    /// id is one the session never sent).
    Gap,
    /// The client already got the session's last event (its close).
    Over,
}

/// One step of an attached stream.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamStep {
    /// Events were appended to the output, up to this id.
    Events { upto: u64 },
    /// Nothing new; the stream's waker is registered.
    Pending,
    /// Every event went out, the last being the close: the stream ends.
    Finished,
    /// A newer stream took over this session.
    Superseded,
}

/// The state a session's sides share.
#[derive(Debug)]
struct State {
    /// Formatted events by id, oldest first.
    events: VecDeque<(u64, Box<[u8]>)>,
    /// Bytes in `events`.
    held: usize,
    /// The id the next event gets.
    next_id: u64,
    /// The highest id written to a stream since the last attach.
    sent_upto: u64,
    /// Bytes of the events after `sent_upto`.
    unsent: usize,
    /// The attached stream's generation (0: none).
    attached: u64,
    generations: u64,
    /// Since when no stream has been attached.
    detached_since: Option<Instant>,
    /// Moves on every attach and detach (the owner watches it).
    epoch: u64,
    outgoing: VecDeque<Outgoing>,
    outgoing_bytes: usize,
    /// The close event was pushed: no more events.
    closed: bool,
    /// No more posts are taken.
    ended: bool,
    /// The owner waits for the stream to catch up.
    owner_waits_room: bool,
}

impl State {
    /// The events after id `after`, oldest first. Ids are contiguous, so
    /// the first is at a known offset from the front: nothing before it is
    /// looked at.
    fn after(&self, after: u64) -> impl Iterator<Item = &(u64, Box<[u8]>)> {
        let first = self.events.front().map_or(self.next_id, |(id, _)| *id);
        let skip = (after + 1).saturating_sub(first);
        self.events
            .iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
    }
}

/// One fallback session, shared by its owner and its streams and posters.
#[derive(Debug)]
pub struct SseShared {
    pub token: SseToken,
    /// Bytes of events kept for a resume (`--fallback-buffer`).
    buffer: usize,
    state: Mutex<State>,
    /// The attached stream's task.
    stream_waker: AtomicWaker,
    /// The owner's task (adapter).
    owner_waker: AtomicWaker,
}

impl SseShared {
    /// A session with a stream already attached (generation 1, the one
    /// that opened it) and events from id 1.
    pub fn new(token: SseToken, buffer: usize) -> Self {
        SseShared {
            token,
            buffer,
            state: Mutex::new(State {
                events: VecDeque::new(),
                held: 0,
                next_id: 1,
                sent_upto: 0,
                unsent: 0,
                attached: 1,
                generations: 1,
                detached_since: None,
                epoch: 0,
                outgoing: VecDeque::new(),
                outgoing_bytes: 0,
                closed: false,
                ended: false,
                owner_waits_room: false,
            }),
            stream_waker: AtomicWaker::new(),
            owner_waker: AtomicWaker::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an event that `write` formats with the id it is given. Events
    /// already sent are dropped, oldest first, to keep the buffer's size.
    pub fn push(&self, close: bool, write: impl FnOnce(u64, &mut Vec<u8>)) -> Pushed {
        let mut st = self.lock();
        if st.closed {
            return Pushed::Kept;
        }
        let id = st.next_id;
        st.next_id += 1;
        let mut bytes = Vec::new();
        write(id, &mut bytes);
        let len = bytes.len();
        st.events.push_back((id, bytes.into_boxed_slice()));
        st.held += len;
        st.unsent += len;
        st.closed |= close;
        while st.held > self.buffer {
            match st.events.front() {
                Some((first, ev)) if *first <= st.sent_upto => {
                    st.held -= ev.len();
                    st.events.pop_front();
                }
                _ => break,
            }
        }
        let full = st.unsent > self.buffer;
        let attached = st.attached != 0;
        drop(st);
        self.stream_waker.wake();
        match (full, attached) {
            (false, _) => Pushed::Kept,
            (true, true) => Pushed::Full,
            (true, false) => Pushed::Overflow,
        }
    }

    /// Ready once the attached stream caught up below the buffer (or went
    /// away: then the caller's push says Overflow on its own).
    pub fn poll_room(&self, cx: &mut Context<'_>) -> bool {
        let mut st = self.lock();
        if st.unsent <= self.buffer || st.attached == 0 {
            st.owner_waits_room = false;
            return true;
        }
        st.owner_waits_room = true;
        self.owner_waker.register(cx.waker());
        false
    }

    /// Attaches a new stream that got every event up to `last` (the
    /// client's `Last-Event-ID`); an older stream still attached is
    /// superseded. Returns the new stream's generation.
    pub fn attach(&self, last: u64) -> Result<u64, AttachError> {
        let mut st = self.lock();
        let newest = st.next_id - 1;
        let oldest_kept = st.events.front().map_or(st.next_id, |(id, _)| *id);
        if st.closed && last == newest {
            return Err(AttachError::Over);
        }
        if last > newest || last + 1 < oldest_kept {
            return Err(AttachError::Gap);
        }
        st.generations += 1;
        st.attached = st.generations;
        st.detached_since = None;
        st.epoch += 1;
        st.sent_upto = last;
        st.unsent = st.after(last).map(|(_, e)| e.len()).sum();
        let generation = st.attached;
        drop(st);
        // The superseded stream (if any) wakes, sees it, and ends.
        self.stream_waker.wake();
        self.owner_waker.wake();
        Ok(generation)
    }

    /// Detaches stream `generation` (its connection ended): the resume
    /// timeout starts.
    pub fn detach(&self, generation: u64) {
        let mut st = self.lock();
        if st.attached != generation {
            return;
        }
        st.attached = 0;
        st.detached_since = Some(Instant::now());
        st.epoch += 1;
        drop(st);
        self.owner_waker.wake();
    }

    /// Appends the events after `cursor` (at most about `max` bytes, at
    /// least one event) for stream `generation`; registers its waker when
    /// there are none.
    pub fn next_events(
        &self,
        generation: u64,
        cursor: u64,
        out: &mut Vec<u8>,
        max: usize,
        cx: &mut Context<'_>,
    ) -> StreamStep {
        let st = self.lock();
        if st.attached != generation {
            return StreamStep::Superseded;
        }
        let mut upto = cursor;
        for (id, ev) in st.after(cursor) {
            if upto != cursor && out.len() + ev.len() > max {
                break;
            }
            out.extend_from_slice(ev);
            upto = *id;
        }
        if upto != cursor {
            return StreamStep::Events { upto };
        }
        if st.closed && cursor + 1 >= st.next_id {
            return StreamStep::Finished;
        }
        self.stream_waker.register(cx.waker());
        // A push between the check and the registration woke nobody:
        // the caller polls again after this Pending.
        drop(st);
        StreamStep::Pending
    }

    /// Stream `generation` wrote the events up to `upto`.
    pub fn wrote(&self, generation: u64, upto: u64) {
        let mut st = self.lock();
        if st.attached != generation || upto <= st.sent_upto {
            return;
        }
        let done: usize = st
            .after(st.sent_upto)
            .take_while(|(id, _)| *id <= upto)
            .map(|(_, e)| e.len())
            .sum();
        st.sent_upto = upto;
        st.unsent = st.unsent.saturating_sub(done);
        let wake = st.owner_waits_room && st.unsent <= self.buffer;
        drop(st);
        if wake {
            self.owner_waker.wake();
        }
    }

    /// Queues a message toward the backend, within `limit` bytes waiting.
    pub fn post(&self, msg: Outgoing, limit: usize) -> Result<(), PostError> {
        let mut st = self.lock();
        if st.ended {
            return Err(PostError::Gone);
        }
        let len = msg.len();
        let close = matches!(msg, Outgoing::Close(_));
        if !close && st.outgoing_bytes > 0 && st.outgoing_bytes + len > limit {
            return Err(PostError::Busy);
        }
        if close {
            st.ended = true;
        }
        st.outgoing_bytes += len;
        st.outgoing.push_back(msg);
        drop(st);
        self.owner_waker.wake();
        Ok(())
    }

    /// The next message for the backend; registers the owner's waker when
    /// none waits.
    pub fn poll_outgoing(&self, cx: &mut Context<'_>) -> Option<Outgoing> {
        let mut st = self.lock();
        match st.outgoing.pop_front() {
            Some(m) => {
                st.outgoing_bytes -= m.len();
                Some(m)
            }
            None => {
                self.owner_waker.register(cx.waker());
                None
            }
        }
    }

    /// The attach epoch and, when detached, since when; registers the
    /// owner's waker (it is woken when the epoch moves).
    pub fn watch_attach(&self, cx: &mut Context<'_>) -> (u64, Option<Instant>) {
        self.owner_waker.register(cx.waker());
        let st = self.lock();
        (st.epoch, st.detached_since)
    }

    /// Whether the last event (a close) went to a stream.
    pub fn delivered_all(&self) -> bool {
        let st = self.lock();
        st.closed && st.sent_upto + 1 >= st.next_id
    }

    /// No more posts: the backend session is over or closing.
    pub fn end(&self) {
        let mut st = self.lock();
        st.ended = true;
        st.outgoing.clear();
        st.outgoing_bytes = 0;
    }

    /// Whether posts are still taken.
    pub fn is_open(&self) -> bool {
        !self.lock().ended
    }
}

/// Shards of the token table.
const SHARDS: usize = 16;

/// Every live fallback session of the balancer, by token.
#[derive(Debug, Default)]
pub struct SseTable {
    shards: [Mutex<HashMap<SseToken, Arc<SseShared>>>; SHARDS],
}

impl SseTable {
    fn shard(&self, t: &SseToken) -> MutexGuard<'_, HashMap<SseToken, Arc<SseShared>>> {
        self.shards[(t.0 as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub fn insert(&self, s: Arc<SseShared>) {
        self.shard(&s.token).insert(s.token, s.clone());
    }

    pub fn get(&self, t: &SseToken) -> Option<Arc<SseShared>> {
        self.shard(t).get(t).cloned()
    }

    pub fn remove(&self, t: &SseToken) {
        self.shard(t).remove(t);
    }

    /// Sessions held (all states).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.len()))
            .sum()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[path = "sse_tests.rs"]
mod tests;
