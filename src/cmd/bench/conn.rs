//! A client connection for the load generator: a monoio TCP stream with an
//! owned, reused read buffer (unconsumed bytes live in `rbuf[pos..]`) and an
//! owned, reused write buffer.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::stats::ErrorKind;

/// Read buffer size; grows only when a single head does not fit.
const READ_BUF: usize = 64 * 1024;
/// Never grow the read buffer beyond this.
const READ_BUF_MAX: usize = 1024 * 1024;

/// Why an exchange on a connection did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The stop fired mid-exchange: not an error.
    Stopped,
    /// Count this and drop the connection.
    Error(ErrorKind),
}

/// One client connection.
pub struct Conn {
    stream: TcpStream,
    rbuf: Vec<u8>,
    pos: usize,
    /// Bytes to send on the next `send`.
    pub wbuf: Vec<u8>,
    sent: u64,
    received: u64,
}

impl Conn {
    /// Connect with a timeout and the default read buffer.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Conn, ErrorKind> {
        Self::connect_with(addr, timeout, READ_BUF).await
    }

    /// Connect with a timeout and a read buffer of `rcap` bytes to start with.
    pub async fn connect_with(
        addr: SocketAddr,
        timeout: Duration,
        rcap: usize,
    ) -> Result<Conn, ErrorKind> {
        let stream = match monoio::time::timeout(timeout, TcpStream::connect_addr(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => return Err(ErrorKind::Connect),
            Err(_) => return Err(ErrorKind::Timeout),
        };
        // Latency figures assume no Nagle delay; failure here only costs accuracy.
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            rbuf: Vec::with_capacity(rcap.max(256)),
            pos: 0,
            wbuf: Vec::new(),
            sent: 0,
            received: 0,
        })
    }

    /// Bytes received and not consumed yet.
    pub fn pending(&self) -> &[u8] {
        &self.rbuf[self.pos..]
    }

    /// Mark `n` pending bytes as consumed.
    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.rbuf.len());
        if self.pos == self.rbuf.len() {
            self.rbuf.clear();
            self.pos = 0;
        }
    }

    /// Read more bytes after the pending ones; returns how many (0 at EOF).
    pub async fn fill(&mut self) -> io::Result<usize> {
        if self.pos > 0 && self.rbuf.len() == self.rbuf.capacity() {
            self.rbuf.drain(..self.pos);
            self.pos = 0;
        }
        if self.rbuf.len() == self.rbuf.capacity() {
            if self.rbuf.capacity() >= READ_BUF_MAX {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "read buffer limit",
                ));
            }
            self.rbuf.reserve(self.rbuf.capacity());
        }
        let buf = std::mem::take(&mut self.rbuf);
        let len = buf.len();
        let (res, slice) = self.stream.read(buf.slice_mut(len..)).await;
        self.rbuf = slice.into_inner();
        if let Ok(n) = res {
            self.received += n as u64;
        }
        res
    }

    /// Write all of `wbuf` (kept for reuse).
    pub async fn send(&mut self) -> io::Result<()> {
        let buf = std::mem::take(&mut self.wbuf);
        let (res, buf) = self.stream.write_all(buf).await;
        self.wbuf = buf;
        let n = res?;
        self.sent += n as u64;
        Ok(())
    }

    /// Bytes (sent, received) since the last call.
    pub fn take_counts(&mut self) -> (u64, u64) {
        let c = (self.sent, self.received);
        self.sent = 0;
        self.received = 0;
        c
    }
}
