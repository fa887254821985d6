//! A backend connection's stream: plain TCP or TLS (`https://`, `wss://`
//! backends), and the TLS connect that makes the latter. One enum so that
//! the relays and the exchange stay one (non-generic) code path; the plain
//! arm costs a branch per read or write, and the TLS arm's larger futures
//! are boxed so that the relays' futures (kept for the whole life of a
//! session) do not grow for plain backends.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf, Split};
use monoio::net::TcpStream;
use monoio::BufResult;
use monoio_rustls::{ClientTlsStream, TlsConnector};

use crate::rt::ready::ReadReady;
use crate::rt::ready_read::{recv_now, shared_stream};

/// Why a backend connection could not be made.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The backend refused or could not be reached: its fault. (The error
    /// is read through `Debug`, in the log line.)
    Refused(#[allow(dead_code)] io::Error),
    /// Connect and (for a TLS backend) handshake took longer than allowed.
    Timeout,
    /// The TLS handshake failed (certificate refused, protocol error, the
    /// backend closed): the backend's fault, like a refusal. The reason is
    /// read through `Debug`, in the log line.
    Tls(#[allow(dead_code)] String),
    /// This machine ran out of something (descriptors, ports, memory):
    /// not the backend's fault, and another backend would fail the same.
    Local(io::Error),
}

impl ConnectError {
    pub(super) fn from_io(e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(
                libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL,
            ) => ConnectError::Local(e),
            _ => ConnectError::Refused(e),
        }
    }
}

/// Plain TCP or TLS over TCP to a backend.
pub(crate) enum BackendStream {
    Plain(TcpStream),
    /// Boxed: the TLS session is large and a plain connection must not
    /// pay for its room.
    Tls(Box<ClientTlsStream<TcpStream>>),
}

impl BackendStream {
    /// Whether this is a TLS connection.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, BackendStream::Tls(_))
    }
}

// SAFETY: both arms are `Split` (monoio's TcpStream, and monoio-rustls'
// stream over it, which marks itself `Split` for a `Split` transport): their
// reads and writes may run at the same time from the two halves, which is
// all this enum forwards to (the arm never changes after construction).
unsafe impl Split for BackendStream {}

impl AsyncReadRent for BackendStream {
    #[inline]
    fn read<T: IoBufMut>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        match self {
            BackendStream::Plain(s) => Either::Plain(s.read(buf)),
            BackendStream::Tls(s) => Either::Tls(Box::pin(s.read(buf))),
        }
    }

    #[inline]
    fn readv<T: IoVecBufMut>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        match self {
            BackendStream::Plain(s) => Either::Plain(s.readv(buf)),
            BackendStream::Tls(s) => Either::Tls(Box::pin(s.readv(buf))),
        }
    }
}

impl AsyncWriteRent for BackendStream {
    #[inline]
    fn write<T: IoBuf>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        match self {
            BackendStream::Plain(s) => Either::Plain(s.write(buf)),
            BackendStream::Tls(s) => Either::Tls(Box::pin(s.write(buf))),
        }
    }

    #[inline]
    fn writev<T: IoVecBuf>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        match self {
            BackendStream::Plain(s) => Either::Plain(s.writev(buf)),
            BackendStream::Tls(s) => Either::Tls(Box::pin(s.writev(buf))),
        }
    }

    #[inline]
    fn flush(&mut self) -> impl Future<Output = io::Result<()>> {
        match self {
            BackendStream::Plain(s) => Either::Plain(s.flush()),
            BackendStream::Tls(s) => Either::Tls(Box::pin(s.flush())),
        }
    }

    /// On TLS, sends close_notify, then shuts the socket's write side.
    #[inline]
    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>> {
        match self {
            BackendStream::Plain(s) => Either::Plain(s.shutdown()),
            BackendStream::Tls(s) => Either::Tls(Box::pin(s.shutdown())),
        }
    }
}

/// A plain backend is read through readiness (no buffer held while the
/// session is idle); a TLS one as before.
impl ReadReady for OwnedReadHalf<BackendStream> {
    fn has_readiness(&self) -> bool {
        !shared_stream(self).is_tls()
    }

    async fn read_ready(&mut self) -> io::Result<()> {
        match shared_stream(self) {
            BackendStream::Plain(s) => s.readable(false).await,
            BackendStream::Tls(_) => Err(io::Error::from(io::ErrorKind::Unsupported)),
        }
    }

    fn try_read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        match shared_stream(self) {
            BackendStream::Plain(s) => recv_now(s.as_raw_fd(), dst),
            BackendStream::Tls(_) => Err(io::Error::from(io::ErrorKind::Unsupported)),
        }
    }
}

/// Opens a verified TLS connection to `addr` for `host` (see
/// `tls::backend`): TCP connect and handshake together within `timeout`.
/// Returns the stream and its socket.
pub(super) async fn connect_tls(
    addr: SocketAddr,
    host: &str,
    tls: Option<&TlsConnector>,
    timeout: Duration,
) -> Result<(BackendStream, RawFd), ConnectError> {
    use crate::tls::backend::{handshake, server_name};
    let Some(connector) = tls else {
        return Err(ConnectError::Tls(
            "no trusted CA certificates for TLS backends (give --backend-ca)".to_string(),
        ));
    };
    let name = server_name(host).map_err(|e| ConnectError::Tls(e.to_string()))?;
    let work = async {
        let tcp = TcpStream::connect_addr(addr)
            .await
            .map_err(ConnectError::from_io)?;
        let _ = tcp.set_nodelay(true);
        let fd = tcp.as_raw_fd();
        let stream = handshake(connector, tcp, name)
            .await
            .map_err(|e| ConnectError::Tls(e.to_string()))?;
        Ok((stream, fd))
    };
    match monoio::time::timeout(timeout, work).await {
        Ok(Ok((stream, fd))) => Ok((BackendStream::Tls(Box::new(stream)), fd)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ConnectError::Timeout),
    }
}

/// The future of one operation on either arm: the plain arm's future held
/// in place (no larger than it was on a bare `TcpStream`, plus a tag), the
/// TLS arm's boxed.
enum Either<P, T> {
    Plain(P),
    Tls(Pin<Box<T>>),
}

impl<P: Future, T: Future<Output = P::Output>> Future for Either<P, T> {
    type Output = P::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<P::Output> {
        // SAFETY: the `Plain` future is never moved out of the enum, nor the
        // enum changed to the other arm, while it is pinned: this is plain
        // structural pinning of one field; the `Tls` arm is a `Pin<Box<_>>`,
        // which is `Unpin`.
        unsafe {
            match self.get_unchecked_mut() {
                Either::Plain(p) => Pin::new_unchecked(p).poll(cx),
                Either::Tls(t) => t.as_mut().poll(cx),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::io::ReadBuf;
    use monoio::io::{AsyncReadRentExt, AsyncWriteRentExt, Splitable};
    use monoio::net::TcpListener;

    /// A plain backend connection behind the enum costs a relay's pending
    /// read no more than a tag over a bare TCP stream's.
    #[monoio::test(enable_timer = true)]
    async fn the_plain_arm_keeps_reads_small_and_works() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let bare = TcpStream::connect_addr(addr).await.expect("connect");
        let (mut peer, _) = listener.accept().await.expect("accept");
        let wrapped = TcpStream::connect_addr(addr).await.expect("connect");
        let (mut peer2, _) = listener.accept().await.expect("accept");
        let (mut bare_r, _bare_w) = bare.into_split();
        let (mut r, mut w) = BackendStream::Plain(wrapped).into_split();
        let mut buf = ReadBuf::with_capacity(512);
        let bare_size = std::mem::size_of_val(&buf.read_from(&mut bare_r, 512));
        let enum_size = std::mem::size_of_val(&buf.read_from(&mut r, 512));
        assert!(enum_size <= bare_size + 16, "{enum_size} vs {bare_size}");
        // Bytes both ways through the enum.
        let (res, _) = w.write_all(b"ping".to_vec()).await;
        res.expect("write");
        let (res, got) = peer2.read_exact(vec![0u8; 4]).await;
        res.expect("read");
        assert_eq!(got, b"ping");
        let (res, _) = peer2.write_all(b"pong".to_vec()).await;
        res.expect("write");
        assert_eq!(buf.read_from(&mut r, 512).await.expect("read"), 4);
        assert_eq!(buf.data(), b"pong");
        w.shutdown().await.expect("shutdown");
        let (res, _) = peer2.read(vec![0u8; 4]).await;
        assert_eq!(res.expect("eof"), 0);
        let _ = peer.write_all(b"x".to_vec()).await;
    }
}
