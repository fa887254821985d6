//! The server handshake for [`TlsServerStream`]: rustls' unbuffered
//! connection driven over the socket's readiness. Each flight from the
//! client is decrypted in the worker's scratch buffer; each flight toward
//! it is written from a buffer freed once sent. Certificates (SNI choice),
//! ALPN, tickets and the session cache come from the `ServerConfig`.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use rustls::ServerConfig;

use super::handshake::HandshakeError;
use super::server_core::{Received, TlsCore};
use super::server_stream::{recv_now, TlsServerStream};

/// Performs the server side of a TLS handshake on an accepted socket. Has
/// no timeout of its own: wrap it in `monoio::time::timeout`.
pub async fn accept(
    config: Arc<ServerConfig>,
    mut io: TcpStream,
) -> Result<TlsServerStream, HandshakeError> {
    let mut core = TlsCore::new(config)?;
    let fd = io.as_raw_fd();
    loop {
        let advanced = core.advance();
        let out = core.take_outgoing();
        if !out.is_empty() {
            let (res, _) = io.write_all(out).await;
            res?;
        }
        advanced?;
        if !core.is_handshaking() {
            break;
        }
        // Wait for the client's next flight, then take what is there.
        loop {
            io.readable(false).await?;
            match core.read_with(&mut [], |room| recv_now(fd, room)) {
                Ok(Received::Closed) => return Err(HandshakeError::Eof),
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(HandshakeError::Eof)
                }
                Err(e) => {
                    // Best effort: tell the client why (rustls queued an alert).
                    let out = core.take_outgoing();
                    if !out.is_empty() {
                        let _ = io.write_all(out).await;
                    }
                    return Err(tls_or_io(e));
                }
            }
        }
    }
    Ok(TlsServerStream::new(io, core))
}

/// A failed read during the handshake: the TLS error rustls reported, or
/// the socket's own.
fn tls_or_io(e: std::io::Error) -> HandshakeError {
    if e.kind() == std::io::ErrorKind::InvalidData {
        if let Some(tls) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return HandshakeError::Tls(tls.clone());
        }
    }
    HandshakeError::Io(e)
}
