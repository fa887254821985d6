//! The TLS stream of an accepted client connection, over monoio's
//! owned-buffer traits. Reads wait for the socket's readiness (an io_uring
//! PollAdd, no buffer lent to the kernel), then take the ciphertext without
//! waiting into the worker's scratch buffer ([`super::server_core`]); writes
//! encrypt into a buffer that lives only while the write is in flight. An
//! idle session therefore holds no 16 KiB buffer at all. It splits into a
//! read half and a write half used at the same time by two relay
//! directions: the rustls state sits in a `RefCell` that is never borrowed
//! across an await.

use std::cell::{Cell, RefCell};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Split};
use monoio::net::TcpStream;
use monoio::BufResult;

use super::server_core::{tls_io_error, Received, TlsCore};

/// Most plaintext one write encrypts (the caller's `write_all` loops).
const MAX_WRITE: usize = 64 * 1024;

thread_local! {
    /// Gathers a vectored write into one run of plaintext (records are not
    /// cut at every slice). Never held across an await.
    static GATHER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A server-side TLS stream for an accepted client: a TCP socket and a
/// rustls unbuffered connection. Made by [`super::accept`].
pub struct TlsServerStream {
    io: TcpStream,
    core: RefCell<TlsCore>,
    /// A write was abandoned part way (its future dropped): the record
    /// stream toward the client is broken, nothing more may be written.
    write_cut: Cell<bool>,
    /// The last `recv` found the socket empty (it returned less than the
    /// room offered, or nothing): the next read waits for readiness first
    /// instead of trying a `recv` that would find nothing.
    drained: Cell<bool>,
}

// SAFETY: the read methods touch only `core` (through its RefCell, never
// borrowed across an await), `drained` (a Cell) and the socket through
// `&self` (readiness, `recv` on its fd); the write methods touch `core`
// the same way, `write_cut` (a Cell) and the socket's send side. Reads and writes running at
// the same time therefore share nothing that is not interior-mutable, as
// monoio's contract for `Split` asks (the same as for `TcpStream` itself).
unsafe impl Split for TlsServerStream {}

impl TlsServerStream {
    pub(crate) fn new(io: TcpStream, core: TlsCore) -> Self {
        Self {
            io,
            core: RefCell::new(core),
            write_cut: Cell::new(false),
            drained: Cell::new(false),
        }
    }

    /// The negotiated ALPN protocol (`b"http/1.1"`), if the client offered ALPN.
    pub fn alpn_protocol(&self) -> Option<Vec<u8>> {
        self.core.borrow().alpn_protocol().map(<[u8]>::to_vec)
    }

    /// Bytes the connection holds outside rustls (tests of the at-rest promise).
    #[cfg(test)]
    pub(crate) fn held_bytes(&self) -> usize {
        self.core.borrow().held_bytes()
    }

    /// Reads what is there without waiting into `dst`: `Ok(0)` is the end
    /// of the client's data, `WouldBlock` nothing yet.
    fn try_read_into(&self, dst: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        if dst.is_empty() {
            return Ok(0);
        }
        let fd = self.io.as_raw_fd();
        let drained = &self.drained;
        let received = self.core.borrow_mut().read_with(dst, |room| {
            let got = recv_now(fd, room);
            drained.set(got.as_ref().map_or(true, |&n| n < room.len()));
            got
        })?;
        match received {
            Received::Data(n) => Ok(n),
            Received::Closed => Ok(0),
            Received::Nothing => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Reads what is there without waiting into `dst` (the read half's
    /// `ReadReady::try_read`, in `rt::ready_tls`).
    pub(crate) fn try_read_now(&self, dst: &mut [u8]) -> io::Result<usize> {
        // SAFETY: initialized bytes viewed as maybe-uninitialized; only
        // initialized bytes are ever written through this view.
        let dst = unsafe {
            std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast::<MaybeUninit<u8>>(), dst.len())
        };
        self.try_read_into(dst)
    }

    /// Waits until a read may find something (or at once when decrypted
    /// bytes, the close or an error are already there), holding no buffer.
    pub(crate) async fn wait_readable(&self) -> io::Result<()> {
        if self.core.borrow().read_is_ready() {
            return Ok(());
        }
        self.io.readable(false).await
    }

    /// Reads into `dst`, waiting for the socket as long as needed.
    async fn read_into(&self, dst: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        loop {
            if self.drained.get() {
                // Nothing was left last time: wait before trying again
                // (returns at once when decrypted bytes are pending).
                self.wait_readable().await?;
                self.drained.set(false);
            }
            match self.try_read_into(dst) {
                // `drained` says whether to wait before the next try.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
        }
    }

    /// Encrypts `data` (after what rustls queued) and sends it all; the
    /// ciphertext buffer lives only for this call.
    async fn send_encrypted(&mut self, data: Option<&[u8]>) -> io::Result<()> {
        if self.write_cut.get() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "an earlier tls write was abandoned part way",
            ));
        }
        let out = {
            let mut core = self.core.borrow_mut();
            match data {
                Some(data) => core.encrypt(data),
                None => core.close_notify(),
            }
            .map_err(tls_io_error)?;
            core.take_outgoing()
        };
        self.send_all(out).await
    }

    /// Writes `out` whole; marks the stream cut if dropped part way.
    async fn send_all(&mut self, out: Vec<u8>) -> io::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        let guard = CutOnDrop(&self.write_cut);
        let (res, _out) = self.io.write_all(out).await;
        std::mem::forget(guard);
        if res.is_err() {
            self.write_cut.set(true);
        }
        res.map(|_| ())
    }
}

/// Marks the stream's writer cut when a write future is dropped mid-way.
struct CutOnDrop<'a>(&'a Cell<bool>);

impl Drop for CutOnDrop<'_> {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// One `recv` that does not wait (MSG_DONTWAIT): `WouldBlock` when the
/// socket has nothing.
pub(crate) fn recv_now(fd: std::os::fd::RawFd, room: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `room` is a valid, writable slice of `room.len()` bytes
        // for the duration of the call; `fd` is the stream's open socket.
        let n = unsafe { libc::recv(fd, room.as_mut_ptr().cast(), room.len(), libc::MSG_DONTWAIT) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The spare room of a monoio buffer as uninitialized bytes.
fn spare<T: IoBufMut>(buf: &mut T) -> &mut [MaybeUninit<u8>] {
    // SAFETY: `write_ptr` is valid for `bytes_total` bytes of writes for as
    // long as `buf` is borrowed (IoBufMut's contract); MaybeUninit makes no
    // claim that those bytes are initialized.
    unsafe { std::slice::from_raw_parts_mut(buf.write_ptr().cast(), buf.bytes_total()) }
}

impl AsyncReadRent for TlsServerStream {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        let res = self.read_into(spare(&mut buf)).await;
        if let Ok(n) = res {
            // SAFETY: `read_into` initialized the first `n` bytes.
            unsafe { buf.set_init(n) };
        }
        (res, buf)
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // Reads into the first non-empty slice (the callers pass one).
        // SAFETY: `write_iovec_ptr` points to `write_iovec_len` iovecs owned
        // by `buf`, valid while `buf` is borrowed.
        let first =
            unsafe { std::slice::from_raw_parts(buf.write_iovec_ptr(), buf.write_iovec_len()) }
                .iter()
                .find(|v| v.iov_len > 0)
                .map(|v| (v.iov_base.cast::<MaybeUninit<u8>>(), v.iov_len));
        let Some((ptr, len)) = first else {
            return (Ok(0), buf);
        };
        // SAFETY: the iovec describes writable memory owned by `buf`.
        let dst = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
        let res = self.read_into(dst).await;
        if let Ok(n) = res {
            // SAFETY: `read_into` initialized the first `n` bytes.
            unsafe { buf.set_init(n) };
        }
        (res, buf)
    }
}

impl AsyncWriteRent for TlsServerStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let n = buf.bytes_init().min(MAX_WRITE);
        // SAFETY: `read_ptr` is valid for `bytes_init` initialized bytes
        // while `buf` is owned here.
        let data = unsafe { std::slice::from_raw_parts(buf.read_ptr(), n) };
        let res = self.send_encrypted(Some(data)).await;
        (res.map(|_| n), buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: `read_iovec_ptr` points to `read_iovec_len` iovecs of
        // initialized bytes owned by `buf`, valid while `buf` is owned here.
        let iovecs =
            unsafe { std::slice::from_raw_parts(buf.read_iovec_ptr(), buf.read_iovec_len()) };
        let out = GATHER.with(|gather| {
            let mut gather = gather.borrow_mut();
            gather.clear();
            for v in iovecs {
                let room = MAX_WRITE - gather.len();
                if room == 0 {
                    break;
                }
                // SAFETY: as above, each iovec is `iov_len` initialized bytes.
                let part =
                    unsafe { std::slice::from_raw_parts(v.iov_base.cast::<u8>(), v.iov_len) };
                gather.extend_from_slice(&part[..part.len().min(room)]);
            }
            if self.write_cut.get() {
                return Err(io::Error::from(io::ErrorKind::BrokenPipe));
            }
            let mut core = self.core.borrow_mut();
            core.encrypt(&gather).map_err(tls_io_error)?;
            Ok((gather.len(), core.take_outgoing()))
        });
        let res = match out {
            Ok((n, out)) => self.send_all(out).await.map(|_| n),
            Err(e) => Err(e),
        };
        (res, buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        // Nothing is buffered but what rustls queued on its own.
        let out = self.core.borrow_mut().take_outgoing();
        if self.write_cut.get() {
            return Ok(());
        }
        self.send_all(out).await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        // After a cut write, a close_notify would land mid-record: just
        // close the TCP side.
        let sent = if self.write_cut.get() {
            Ok(())
        } else {
            self.send_encrypted(None).await
        };
        let shut = self.io.shutdown().await;
        sent.and(shut)
    }
}
