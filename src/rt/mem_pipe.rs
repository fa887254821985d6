//! An in-memory byte pipe pair for one worker: what one end writes, the
//! other reads, through a bounded buffer per direction, with no system call
//! and no descriptor. A fallback session's relay takes one end for its
//! client and the adapter the other, so a message crosses it as a copy
//! instead of four trips through a kernel socket pair.
//!
//! The ends implement monoio's read and write traits, `Split`, and read
//! readiness, so the relays run over them unchanged. Dropping or shutting
//! an end is the other end's end of stream; writing toward a dropped end
//! fails with `BrokenPipe`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf, Split};
use monoio::BufResult;

use super::ready::ReadReady;
use super::ready_read::shared_stream;

/// Bytes one direction holds before its writer waits.
const CAPACITY: usize = 256 * 1024;

/// One direction of the pipe.
#[derive(Default)]
struct Direction {
    bytes: RefCell<VecDeque<u8>>,
    /// The writing end shut or went: the reader sees the end once drained.
    write_closed: Cell<bool>,
    /// The reading end went: writes fail.
    read_closed: Cell<bool>,
    reader: Cell<Option<Waker>>,
    writer: Cell<Option<Waker>>,
}

impl Direction {
    fn wake_reader(&self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    fn wake_writer(&self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    /// Copies what is there into `dst`; Pending (waker kept) when nothing
    /// is there and the writer is still open.
    fn poll_read(&self, cx: Option<&mut Context<'_>>, dst: &mut [u8]) -> Poll<usize> {
        let mut bytes = self.bytes.borrow_mut();
        if bytes.is_empty() {
            if self.write_closed.get() || dst.is_empty() {
                return Poll::Ready(0);
            }
            if let Some(cx) = cx {
                self.reader.set(Some(cx.waker().clone()));
            }
            return Poll::Pending;
        }
        let n = dst.len().min(bytes.len());
        let (a, b) = bytes.as_slices();
        let from_a = n.min(a.len());
        dst[..from_a].copy_from_slice(&a[..from_a]);
        dst[from_a..n].copy_from_slice(&b[..n - from_a]);
        bytes.drain(..n);
        drop(bytes);
        self.wake_writer();
        Poll::Ready(n)
    }

    /// Whether a read would not wait; keeps the reader's waker otherwise.
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.bytes.borrow().is_empty() || self.write_closed.get() {
            return Poll::Ready(());
        }
        self.reader.set(Some(cx.waker().clone()));
        Poll::Pending
    }

    /// Copies as much of `srcs` as there is room for; Pending (waker kept)
    /// when the buffer is full.
    fn poll_write<'a>(
        &self,
        cx: &mut Context<'_>,
        srcs: impl IntoIterator<Item = &'a [u8]>,
    ) -> Poll<io::Result<usize>> {
        if self.read_closed.get() || self.write_closed.get() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let mut bytes = self.bytes.borrow_mut();
        let room = CAPACITY.saturating_sub(bytes.len());
        let (mut written, mut asked) = (0, false);
        for src in srcs {
            asked |= !src.is_empty();
            if written == room {
                break;
            }
            let take = src.len().min(room - written);
            bytes.extend(&src[..take]);
            written += take;
        }
        drop(bytes);
        if !asked {
            return Poll::Ready(Ok(0));
        }
        if written == 0 {
            self.writer.set(Some(cx.waker().clone()));
            return Poll::Pending;
        }
        self.wake_reader();
        Poll::Ready(Ok(written))
    }
}

/// One end of an in-memory pipe (see [`mem_pipe`]).
pub(crate) struct MemPipe {
    inbound: Rc<Direction>,
    outbound: Rc<Direction>,
}

/// Two connected ends.
pub(crate) fn mem_pipe() -> (MemPipe, MemPipe) {
    let (ab, ba) = (Rc::new(Direction::default()), Rc::new(Direction::default()));
    let a = MemPipe {
        inbound: ba.clone(),
        outbound: ab.clone(),
    };
    let b = MemPipe {
        inbound: ab,
        outbound: ba,
    };
    (a, b)
}

impl Drop for MemPipe {
    fn drop(&mut self) {
        self.outbound.write_closed.set(true);
        self.outbound.wake_reader();
        self.inbound.read_closed.set(true);
        self.inbound.bytes.borrow_mut().clear();
        self.inbound.wake_writer();
    }
}

// SAFETY: the read half only touches `inbound` and the write half only
// `outbound` (each through cells, never borrowed across an await), so the
// two halves may be used at the same time, on the one thread that owns them.
unsafe impl Split for MemPipe {}

impl AsyncReadRent for MemPipe {
    fn read<T: IoBufMut>(&mut self, mut buf: T) -> impl Future<Output = BufResult<usize, T>> {
        let inbound = self.inbound.clone();
        async move {
            let n = poll_fn(|cx| {
                // SAFETY: `write_ptr` is valid for `bytes_total` bytes while
                // we hold `buf` (IoBufMut's contract); the copy writes only
                // within it, and `set_init` below covers exactly what it wrote.
                let dst =
                    unsafe { std::slice::from_raw_parts_mut(buf.write_ptr(), buf.bytes_total()) };
                inbound.poll_read(Some(cx), dst)
            })
            .await;
            // SAFETY: the first `n` bytes at `write_ptr` were just written.
            unsafe { buf.set_init(n) };
            (Ok(n), buf)
        }
    }

    fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> impl Future<Output = BufResult<usize, T>> {
        let inbound = self.inbound.clone();
        async move {
            // Only the first buffer is filled: a short read, as a socket may
            // give.
            let (ptr, len) = if buf.write_iovec_len() == 0 {
                (std::ptr::null_mut(), 0)
            } else {
                // SAFETY: the pointer is valid for `write_iovec_len` iovecs
                // while we hold `buf` (IoVecBufMut's contract).
                let first = unsafe { *buf.write_iovec_ptr() };
                (first.iov_base.cast::<u8>(), first.iov_len)
            };
            let n = poll_fn(|cx| {
                if len == 0 {
                    return Poll::Ready(0);
                }
                // SAFETY: the first iovec describes `len` writable bytes at
                // `ptr`, valid while we hold `buf`.
                let dst = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
                inbound.poll_read(Some(cx), dst)
            })
            .await;
            // SAFETY: `n` bytes of the first buffer were just written.
            unsafe { buf.set_init(n) };
            (Ok(n), buf)
        }
    }
}

impl AsyncWriteRent for MemPipe {
    fn write<T: IoBuf>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        let outbound = self.outbound.clone();
        async move {
            let res = poll_fn(|cx| {
                // SAFETY: `read_ptr` is valid for `bytes_init` bytes while
                // we hold `buf` (IoBuf's contract).
                let src = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
                outbound.poll_write(cx, [src])
            })
            .await;
            (res, buf)
        }
    }

    fn writev<T: IoVecBuf>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        let outbound = self.outbound.clone();
        async move {
            let res = poll_fn(|cx| {
                // SAFETY: the pointer is valid for `read_iovec_len` iovecs,
                // each describing initialized bytes, while we hold `buf`
                // (IoVecBuf's contract).
                let iovecs = unsafe {
                    std::slice::from_raw_parts(buf.read_iovec_ptr(), buf.read_iovec_len())
                };
                let srcs = iovecs
                    .iter()
                    .filter(|v| v.iov_len > 0)
                    // SAFETY: as above, each iovec is `iov_len` readable bytes.
                    .map(|v| unsafe {
                        std::slice::from_raw_parts(v.iov_base.cast::<u8>(), v.iov_len)
                    });
                outbound.poll_write(cx, srcs)
            })
            .await;
            (res, buf)
        }
    }

    fn flush(&mut self) -> impl Future<Output = io::Result<()>> {
        std::future::ready(Ok(()))
    }

    /// The other end reads what is left, then the end of the stream.
    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>> {
        self.outbound.write_closed.set(true);
        self.outbound.wake_reader();
        std::future::ready(Ok(()))
    }
}

impl ReadReady for OwnedReadHalf<MemPipe> {
    fn has_readiness(&self) -> bool {
        true
    }

    async fn read_ready(&mut self) -> io::Result<()> {
        let inbound = shared_stream(self).inbound.clone();
        poll_fn(|cx| inbound.poll_readable(cx)).await;
        Ok(())
    }

    fn try_read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        match shared_stream(self).inbound.poll_read(None, dst) {
            Poll::Ready(n) => Ok(n),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

#[cfg(test)]
#[path = "mem_pipe_tests.rs"]
mod tests;
