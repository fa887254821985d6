//! Scripted I/O for the relay's unit tests: writers that never complete,
//! take everything (at once or slowly), or fail, and a reader that hands
//! out a script and then waits forever.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::BufResult;

/// A writer whose writes never complete: a peer that stopped reading with
/// every buffer full.
pub struct Stuck;

/// A writer that takes everything and keeps a copy.
#[derive(Default)]
pub struct Sink(pub Vec<u8>);

/// A writer on a slow link: each write takes `delay`, then takes
/// everything, keeping a copy in `got`; after `writes` writes, the peer
/// stops reading and writes never complete.
pub struct Slow {
    pub delay: Duration,
    pub writes: usize,
    pub got: Rc<RefCell<Vec<u8>>>,
}

/// A writer whose peer is gone: every write fails with EPIPE.
pub struct Broken;

/// A reader that returns `0` (its script) in one read, then never again.
pub struct Script(pub Vec<u8>);

impl AsyncWriteRent for Stuck {
    fn write<T: IoBuf>(&mut self, _buf: T) -> impl Future<Output = BufResult<usize, T>> {
        std::future::pending()
    }

    fn writev<T: IoVecBuf>(&mut self, _buf: T) -> impl Future<Output = BufResult<usize, T>> {
        std::future::pending()
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The initialised bytes of a buffer handed to a write.
fn bytes_of<T: IoBuf>(buf: &T) -> &[u8] {
    // SAFETY: IoBuf guarantees `read_ptr` is valid for `bytes_init` bytes
    // while the buffer is borrowed, which the returned slice's lifetime ties.
    unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) }
}

impl AsyncWriteRent for Sink {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let bytes = bytes_of(&buf);
        self.0.extend_from_slice(bytes);
        (Ok(bytes.len()), buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        (Ok(0), buf)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl AsyncWriteRent for Slow {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        if self.writes == 0 {
            return std::future::pending().await;
        }
        self.writes -= 1;
        monoio::time::sleep(self.delay).await;
        let bytes = bytes_of(&buf);
        self.got.borrow_mut().extend_from_slice(bytes);
        (Ok(bytes.len()), buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        (Ok(0), buf)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl AsyncWriteRent for Broken {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        (Err(std::io::ErrorKind::BrokenPipe.into()), buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        (Err(std::io::ErrorKind::BrokenPipe.into()), buf)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl AsyncReadRent for Script {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        if self.0.is_empty() {
            return std::future::pending().await;
        }
        let n = self.0.len().min(buf.bytes_total());
        // SAFETY: IoBufMut guarantees `write_ptr` is valid for
        // `bytes_total` bytes (a read fills from there); we write `n` of
        // them and mark them initialised, as a read of `n` bytes does.
        unsafe {
            std::ptr::copy_nonoverlapping(self.0.as_ptr(), buf.write_ptr(), n);
            buf.set_init(n);
        }
        self.0.drain(..n);
        (Ok(n), buf)
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        (Ok(0), buf)
    }
}

/// A script has no readiness: it is read through pending reads.
impl crate::rt::ready::ReadReady for Script {}

/// Runs `f` on a fresh single-thread runtime with timers.
pub fn run<F: Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// The code of the close frame at the start of `bytes` (masked or not).
pub fn close_code(bytes: &[u8]) -> Option<u16> {
    if bytes.first() != Some(&0x88) || bytes.len() < 4 {
        return None;
    }
    let masked = bytes[1] & 0x80 != 0;
    let (key, at) = if masked {
        ([bytes[2], bytes[3], bytes[4], bytes[5]], 6)
    } else {
        ([0; 4], 2)
    };
    let hi = *bytes.get(at)? ^ key[0];
    let lo = *bytes.get(at + 1)? ^ key[1];
    Some(u16::from_be_bytes([hi, lo]))
}
