//! A backend connection's stream: plain TCP or TLS (`https://`, `wss://`
//! backends). One enum so that the relays and the exchange stay one
//! (non-generic) code path; the plain arm costs a branch per read or write,
//! and the TLS arm's larger futures are boxed so that the relays' futures
//! (kept for the whole life of a session) do not grow for plain backends.

use std::io;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::net::TcpStream;
use monoio::BufResult;
use monoio_rustls::ClientTlsStream;

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
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            BackendStream::Plain(s) => s.read(buf).await,
            BackendStream::Tls(s) => Box::pin(s.read(buf)).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            BackendStream::Plain(s) => s.readv(buf).await,
            BackendStream::Tls(s) => Box::pin(s.readv(buf)).await,
        }
    }
}

impl AsyncWriteRent for BackendStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            BackendStream::Plain(s) => s.write(buf).await,
            BackendStream::Tls(s) => Box::pin(s.write(buf)).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            BackendStream::Plain(s) => s.writev(buf).await,
            BackendStream::Tls(s) => Box::pin(s.writev(buf)).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            BackendStream::Plain(s) => s.flush().await,
            BackendStream::Tls(s) => Box::pin(s.flush()).await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            BackendStream::Plain(s) => s.shutdown().await,
            // Sends close_notify, then shuts the socket's write side.
            BackendStream::Tls(s) => Box::pin(s.shutdown()).await,
        }
    }
}
