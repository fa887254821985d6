//! Reads for relays whose sessions sit idle most of the time: a stream with
//! read readiness ([`ReadReady`]) is waited on with no buffer lent to the
//! kernel, and read without waiting into a buffer the worker lends the
//! session from its [`ReadPool`] only then. The session keeps that buffer
//! while it has bytes in it (a frame partly received, a write toward a peer
//! that does not read) and gives it back once drained, so an idle session
//! owns no read buffer. Streams without readiness (TLS) are read as before,
//! each pending read owning the session's buffer.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use monoio::io::{AsyncReadRent, OwnedReadHalf};
use monoio::net::TcpStream;

use super::io::ReadBuf;
use super::ready::ReadReady;

/// The size of the buffers a [`ReadPool`] lends (and the largest read
/// into one, unless the bytes held need more room): a 16 KiB message with
/// its header fits one read, so it goes out in one write, not two.
pub(crate) const POOLED_READ: usize = 32 * 1024;
/// How many free buffers a worker keeps for the next sessions that wake.
const KEEP_FREE: usize = 64;

/// A worker's spare read buffers: a session that wakes takes one, and a
/// session whose buffer is drained gives it back (worker-local, no lock).
#[derive(Default)]
pub(crate) struct ReadPool {
    free: RefCell<Vec<Vec<u8>>>,
}

impl ReadPool {
    /// An empty buffer with room for [`POOLED_READ`] bytes.
    pub(crate) fn take(&self) -> Vec<u8> {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(POOLED_READ))
    }

    /// Takes back a buffer (its bytes are dropped); one grown past twice
    /// the pooled size, or beyond the pool's keep, is freed instead.
    pub(crate) fn give(&self, mut buf: Vec<u8>) {
        let cap = buf.capacity();
        if !(POOLED_READ..=2 * POOLED_READ).contains(&cap) {
            return;
        }
        let mut free = self.free.borrow_mut();
        if free.len() < KEEP_FREE {
            buf.clear();
            free.push(buf);
        }
    }

    /// How many buffers are free now.
    #[cfg(test)]
    pub(crate) fn free_len(&self) -> usize {
        self.free.borrow().len()
    }
}

/// Reads once into `buf` (appending to what it holds; `Ok(0)` is the end of
/// the stream): through readiness when `r` has it (see [`read_ready`]),
/// else by lending `buf` to a pending read.
pub(crate) async fn read_some<R: AsyncReadRent + ReadReady>(
    buf: &mut ReadBuf,
    r: &mut R,
    pool: &ReadPool,
    max: usize,
) -> io::Result<usize> {
    if r.has_readiness() {
        read_ready(buf, r, pool, max).await
    } else {
        buf.read_from(r, max).await
    }
}

/// Held bytes up to this many move out of a pooled buffer into one of
/// their own size before the session waits (see [`release_idle`]).
const SMALL_HOLD: usize = 4 * 1024;

/// Gives `buf`'s storage back to `pool` when it holds no bytes.
pub(crate) fn release_if_empty(buf: &mut ReadBuf, pool: &ReadPool) {
    if buf.is_empty() && buf.buf.capacity() > 0 {
        pool.give(std::mem::take(&mut buf.buf));
        buf.pos = 0;
    }
}

/// Before a session waits: an empty buffer goes back to `pool`, and a few
/// held bytes (a frame's start, up to [`SMALL_HOLD`]) move out of a pooled
/// buffer into one of their own size, which goes back to `pool`. A peer
/// that leaves a frame unfinished then holds about what it sent, never a
/// whole pooled buffer per session.
pub(crate) fn release_idle(buf: &mut ReadBuf, pool: &ReadPool) {
    if buf.is_empty() {
        release_if_empty(buf, pool);
        return;
    }
    if buf.len() <= SMALL_HOLD && buf.buf.capacity() >= POOLED_READ {
        let mut own = Vec::with_capacity(buf.len().max(super::io::MIN_READ));
        own.extend_from_slice(buf.data());
        pool.give(std::mem::replace(&mut buf.buf, own));
        buf.pos = 0;
    }
}

/// Waits for `r` to be readable holding no buffer (an empty `buf` goes
/// back to `pool` first), then reads what is there without waiting, into
/// `buf`'s own storage or one taken from `pool`. When the last read filled
/// its room, reads first and waits only if nothing is there.
pub(crate) async fn read_ready<R: ReadReady>(
    buf: &mut ReadBuf,
    r: &mut R,
    pool: &ReadPool,
    max: usize,
) -> io::Result<usize> {
    let mut wait = !buf.last_read_filled();
    loop {
        if wait {
            release_idle(buf, pool);
            r.read_ready().await?;
        }
        wait = true;
        if buf.buf.capacity() == 0 {
            buf.buf = pool.take();
            buf.pos = 0;
        }
        let want = buf.read_size(max);
        buf.make_room(want);
        let start = buf.buf.len();
        // try_read takes initialised bytes: the room is zeroed (the read
        // size adapts, so a session of small messages zeroes little).
        buf.buf.resize(start + want, 0);
        let res = r.try_read(&mut buf.buf[start..]);
        let n = *res.as_ref().unwrap_or(&0);
        buf.buf.truncate(start + n);
        match res {
            Ok(n) => {
                buf.adapt(n, want, max);
                return Ok(n);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads what a socket holds now, without waiting.
pub(crate) fn recv_now(fd: RawFd, dst: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `dst` is a valid, initialised, exclusively borrowed region of
    // `dst.len()` bytes for the length of the call, which is all recv
    // writes to; `fd` is a socket the caller keeps open meanwhile.
    let n = unsafe {
        libc::recv(
            fd,
            dst.as_mut_ptr().cast::<libc::c_void>(),
            dst.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// The stream a split half shares with its other half.
pub(crate) fn shared_stream<T>(half: &OwnedReadHalf<T>) -> &T {
    // SAFETY: the two halves of a monoio split live on one thread and only
    // reach the stream through its `UnsafeCell` while polled or called, as
    // monoio's own `OwnedReadHalf` does for its reads; the readiness wait
    // and the recv only read the descriptor, never change the stream.
    unsafe { &*half.0.get() }
}

impl ReadReady for OwnedReadHalf<TcpStream> {
    fn has_readiness(&self) -> bool {
        true
    }

    /// Not relaxed: the legacy (epoll) driver would otherwise trust its
    /// cached readiness, which a recv outside it never clears, and spin;
    /// io_uring ignores the flag (a PollAdd either way).
    async fn read_ready(&mut self) -> io::Result<()> {
        shared_stream(self).readable(false).await
    }

    fn try_read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        recv_now(shared_stream(self).as_raw_fd(), dst)
    }
}

#[cfg(test)]
#[path = "ready_read_tests.rs"]
pub(crate) mod tests;
