//! I/O helpers over monoio's owned-buffer traits: append-reads into a
//! connection's buffer, whole writes of a slice of a buffer, and a tiny
//! worker-local async lock for writers shared by two relay directions.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::ops::{Deref, DerefMut};
use std::task::{Poll, Waker};

use monoio::buf::{IoBuf, IoBufMut, SliceMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

/// Smallest read offered; idle connections sit at about this size.
pub const MIN_READ: usize = 512;
/// Read size for HTTP body streaming, and the largest single write toward
/// a client on the HTTP path.
pub(crate) const CHUNK: usize = 32 * 1024;

/// A connection's read buffer with a consumed prefix (`pos`): bytes before
/// `pos` are done with; `data()` is what is left to handle. The size of each
/// read adapts: it doubles while reads fill the space offered and halves when
/// they come back small, so an idle connection holds a small buffer (with
/// io_uring a pending read owns its buffer) while a busy one reads big chunks.
pub struct ReadBuf {
    /// The bytes read; `buf[..pos]` is consumed.
    pub buf: Vec<u8>,
    /// Where the unconsumed bytes start.
    pub pos: usize,
    hint: usize,
    /// Bytes marked consumed with [`ReadBuf::consume`], ever.
    consumed: u64,
    /// The last read filled all the room it was offered (more is likely
    /// waiting).
    filled: bool,
}

impl ReadBuf {
    /// A buffer whose first read offers `first_read` bytes; nothing is
    /// allocated until then.
    pub fn with_capacity(first_read: usize) -> Self {
        Self {
            buf: Vec::new(),
            pos: 0,
            hint: first_read.max(MIN_READ),
            consumed: 0,
            filled: false,
        }
    }

    /// Takes over `buf` with `buf[..pos]` already consumed (e.g. bytes read past a head).
    pub fn from_vec(buf: Vec<u8>, pos: usize) -> Self {
        let hint = buf.capacity().max(MIN_READ);
        Self {
            buf,
            pos,
            hint,
            consumed: 0,
            filled: false,
        }
    }

    /// The unconsumed bytes.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Bytes marked consumed with [`ReadBuf::consume`] since the buffer
    /// was made (what a connection has handled so far).
    pub fn consumed_total(&self) -> u64 {
        self.consumed
    }

    /// How many bytes are unconsumed.
    pub fn len(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether every byte read is consumed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marks `n` more bytes consumed (at most all of them); an emptied buffer starts over at 0.
    pub fn consume(&mut self, n: usize) {
        let before = self.pos;
        self.pos = (self.pos + n).min(self.buf.len());
        self.consumed = self.consumed.wrapping_add((self.pos - before) as u64);
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Starts over small: frees an empty buffer and makes the next read
    /// offer [`MIN_READ`] bytes (for a connection likely to sit idle).
    pub fn shrink_idle(&mut self) {
        self.hint = MIN_READ;
        if self.is_empty() {
            self.buf = Vec::new();
            self.pos = 0;
        }
    }

    /// Moves unconsumed bytes to the front and makes room for `want` more.
    pub fn make_room(&mut self, want: usize) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let spare = self.buf.capacity() - self.buf.len();
        if spare < want {
            self.buf.reserve(want - spare);
        }
    }

    /// Reads once, appending to the unconsumed bytes; Ok(0) is end of
    /// stream. `max` caps what one read offers (the buffer still grows past
    /// it when unconsumed bytes need more room).
    pub async fn read_from<R: AsyncReadRent>(
        &mut self,
        r: &mut R,
        max: usize,
    ) -> io::Result<usize> {
        let want = self.read_size(max);
        if self.is_empty() && self.buf.capacity() > want * 2 {
            // Give back what a burst grew; the next read is small again.
            self.buf = Vec::with_capacity(want);
            self.pos = 0;
        }
        self.make_room(want);
        let buf = std::mem::take(&mut self.buf);
        let len = buf.len();
        let cap = buf.capacity();
        let slice: SliceMut<Vec<u8>> = buf.slice_mut(len..cap);
        let (res, slice) = r.read(slice).await;
        self.buf = slice.into_inner();
        if let Ok(n) = res {
            self.adapt(n, cap - len, max);
        }
        res
    }

    /// How many bytes the next read offers, at most `max`.
    pub(crate) fn read_size(&self, max: usize) -> usize {
        self.hint.clamp(MIN_READ, max.max(MIN_READ))
    }

    /// Adapts the next read's size to a read of `n` bytes that was
    /// offered `offered`: doubles (up to `max`) when it filled the room,
    /// halves when it came back under a quarter.
    pub(crate) fn adapt(&mut self, n: usize, offered: usize, max: usize) {
        let want = self.read_size(max);
        self.filled = n >= offered;
        if self.filled {
            self.hint = (want * 2).min(max.max(MIN_READ));
        } else if n < want / 4 {
            self.hint = (want / 2).max(MIN_READ);
        }
    }

    /// Whether the last read filled all the room it was offered.
    pub(crate) fn last_read_filled(&self) -> bool {
        self.filled
    }
}

/// Writes `buf[range]` whole and gives the buffer back.
pub async fn write_range<W: AsyncWriteRentExt>(
    w: &mut W,
    buf: Vec<u8>,
    start: usize,
    end: usize,
) -> (io::Result<()>, Vec<u8>) {
    if start >= end {
        return (Ok(()), buf);
    }
    let (res, slice) = w.write_all(buf.slice(start..end)).await;
    (res.map(|_| ()), slice.into_inner())
}

/// Writes the whole of `buf` and gives it back.
pub async fn write_vec<W: AsyncWriteRentExt>(w: &mut W, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
    let end = buf.len();
    write_range(w, buf, 0, end).await
}

/// Writes a static byte string (error answers).
pub async fn write_static<W: AsyncWriteRentExt>(w: &mut W, bytes: &'static [u8]) -> io::Result<()> {
    let (res, _) = w.write_all(bytes).await;
    res.map(|_| ())
}

/// A worker-local async mutex for the writers two relay tasks share: the
/// value is moved out while held, so no RefCell borrow lives across an
/// await. Releasing wakes every waiter (there are at most a few: a
/// direction's forwarder, the pinger, a closing task), and each takes the
/// value or waits again; so a waiter that was dropped cannot swallow the
/// wake-up another one needs. Uncontended, locking and unlocking touch two
/// cells. (A one-permit `local_sync` semaphore fits too, but measured under
/// callgrind it added about 200 instructions to every relayed WebSocket
/// message, 3.5% of the proxy's cost, for the queue it keeps.)
pub(crate) struct LocalLock<T> {
    slot: RefCell<Option<T>>,
    waiters: RefCell<Vec<Waker>>,
}

impl<T> LocalLock<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            slot: RefCell::new(Some(value)),
            waiters: RefCell::new(Vec::new()),
        }
    }

    /// The value if nobody holds it now.
    pub(crate) fn try_lock(&self) -> Option<LockGuard<'_, T>> {
        let value = self.slot.borrow_mut().take()?;
        Some(LockGuard {
            lock: self,
            value: Some(value),
        })
    }

    /// Waits for the value.
    pub(crate) async fn lock(&self) -> LockGuard<'_, T> {
        poll_fn(|cx| match self.slot.borrow_mut().take() {
            Some(value) => Poll::Ready(LockGuard {
                lock: self,
                value: Some(value),
            }),
            None => {
                let mut waiters = self.waiters.borrow_mut();
                if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    waiters.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await
    }
}

/// Holds a [`LocalLock`]'s value; dropping it puts the value back and
/// wakes the waiters.
pub(crate) struct LockGuard<'a, T> {
    lock: &'a LocalLock<T>,
    value: Option<T>,
}

impl<T> Deref for LockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value
            .as_ref()
            .expect("guard holds the value until dropped")
    }
}

impl<T> DerefMut for LockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value
            .as_mut()
            .expect("guard holds the value until dropped")
    }
}

impl<T> Drop for LockGuard<'_, T> {
    fn drop(&mut self) {
        *self.lock.slot.borrow_mut() = self.value.take();
        let waiters = std::mem::take(&mut *self.lock.waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
    }
}

/// For the small servers (echo backend, admin API): reads until a whole
/// request head is buffered in `buf`, answering a malformed one with its
/// error status. `None` when the peer leaves, a read fails or `timeout`
/// (per read) passes first.
pub async fn read_request_head<S: AsyncReadRent + AsyncWriteRent>(
    stream: &mut S,
    buf: &mut ReadBuf,
    limits: &crate::proto::http::Limits,
    fwd: &crate::proto::http::ForwardInfo,
    scratch: &mut Vec<u8>,
    timeout: Option<std::time::Duration>,
) -> Option<crate::proto::http::ParsedRequest> {
    loop {
        scratch.clear();
        match crate::proto::http::parse_request(buf.data(), limits, fwd, scratch) {
            Ok(Some(req)) => return Some(req),
            Ok(None) => {}
            Err(e) => {
                let _ = write_static(stream, crate::proto::http::error_response(e.status())).await;
                return None;
            }
        }
        let read = match timeout {
            Some(t) => match monoio::time::timeout(t, buf.read_from(stream, 16 * 1024)).await {
                Ok(r) => r,
                Err(_) => return None,
            },
            None => buf.read_from(stream, 16 * 1024).await,
        };
        match read {
            Ok(n) if n > 0 => {}
            _ => return None,
        }
    }
}

/// Before closing a connection whose write side is done (answered without
/// reading all of its request): reads and drops what the peer still sends,
/// at most `max` bytes for at most `within`, into `buf` (emptied first), so
/// that closing with unread bytes does not reset the connection before the
/// peer has read the answer.
pub async fn drain_briefly<S: AsyncReadRent>(
    s: &mut S,
    buf: &mut ReadBuf,
    max: usize,
    within: std::time::Duration,
) {
    let until = monoio::time::Instant::now() + within;
    let mut dropped = 0;
    buf.consume(buf.len());
    while dropped < max {
        match monoio::time::timeout_at(until, buf.read_from(s, max - dropped)).await {
            Ok(Ok(n)) if n > 0 => {
                dropped += n;
                buf.consume(n);
            }
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    use super::LocalLock;

    /// A waker that counts its wake-ups.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn a_dropped_waiter_does_not_keep_the_next_one_waiting() {
        let lock = LocalLock::new(1u32);
        let (gone_count, gone_waker) = counting();
        let (next_count, next_waker) = counting();
        let held = lock.try_lock().expect("free at first");
        {
            let mut gone = pin!(lock.lock());
            let mut cx = Context::from_waker(&gone_waker);
            assert!(gone.as_mut().poll(&mut cx).is_pending());
        }
        let mut next = pin!(lock.lock());
        let mut cx = Context::from_waker(&next_waker);
        assert!(next.as_mut().poll(&mut cx).is_pending());
        // Polled again while still held: registered once, not twice.
        assert!(next.as_mut().poll(&mut cx).is_pending());
        assert!(lock.try_lock().is_none(), "held");
        drop(held);
        assert_eq!(
            next_count.0.load(Ordering::Relaxed),
            1,
            "the live waiter is woken once"
        );
        assert!(gone_count.0.load(Ordering::Relaxed) <= 1);
        match next.as_mut().poll(&mut cx) {
            Poll::Ready(mut g) => *g += 1,
            Poll::Pending => panic!("the live waiter gets the lock"),
        }
        assert_eq!(*lock.try_lock().expect("free again"), 2);
    }

    #[test]
    fn an_uncontended_release_wakes_nobody() {
        let lock = LocalLock::new(());
        drop(lock.try_lock().expect("free"));
        assert!(lock.waiters.borrow().is_empty());
        assert!(lock.try_lock().is_some());
    }
}
