//! A server handshake that also reports what the client asked for (SNI host
//! name, ALPN, TLS version). monoio-rustls 0.4 hides the rustls session
//! inside its stream (only `alpn_protocol()` is exposed), so we drive the
//! handshake ourselves and then wrap the finished session in its stream type.

use std::sync::Arc;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio_rustls::ServerTlsStream;
use rustls::{ServerConfig, ServerConnection};

/// Bytes read per socket read during the handshake. Kept below rustls'
/// received-plaintext limit (16 KiB) so early application data arriving with
/// the client's last flight always fits.
const READ_CHUNK: usize = 8 * 1024;

/// Why a TLS handshake with a client failed (a per-connection, client-side
/// error; never retried).
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Socket error during the handshake.
    #[error("tls handshake i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The client's TLS was rejected (bad message, no shared cipher, no
    /// certificate for its SNI, ...). An alert has been sent if possible.
    #[error("tls handshake failed: {0}")]
    Tls(#[from] rustls::Error),
    /// The client closed the connection before the handshake finished.
    #[error("client closed the connection during the tls handshake")]
    Eof,
}

/// A finished server handshake and what was negotiated.
#[derive(Debug)]
pub struct TlsAccepted<IO> {
    /// The TLS stream, ready for `read`/`write` (and `into_split` when `IO`
    /// is splittable).
    pub stream: ServerTlsStream<IO>,
    /// The SNI host name the client sent, lower-case, if any.
    pub sni: Option<String>,
    /// The negotiated ALPN protocol (`b"http/1.1"`), if the client offered ALPN.
    pub alpn: Option<Vec<u8>>,
    /// The negotiated TLS version.
    pub version: Option<rustls::ProtocolVersion>,
}

/// Performs the server side of a TLS handshake on `io` and returns the
/// stream together with the SNI, ALPN and version. Has no timeout of its own:
/// wrap it in `monoio::time::timeout`.
pub async fn accept_with_info<IO>(
    config: &Arc<ServerConfig>,
    mut io: IO,
) -> Result<TlsAccepted<IO>, HandshakeError>
where
    IO: AsyncReadRent + AsyncWriteRent,
{
    let mut conn = ServerConnection::new(config.clone())?;
    let mut wbuf = Vec::with_capacity(4 * 1024);
    let mut rbuf = Vec::with_capacity(READ_CHUNK);
    loop {
        wbuf = flush(&mut conn, &mut io, wbuf).await?;
        if !conn.is_handshaking() {
            break;
        }
        rbuf.clear();
        let (res, buf) = io.read(rbuf).await;
        rbuf = buf;
        if res? == 0 {
            return Err(HandshakeError::Eof);
        }
        let mut rest = rbuf.as_slice();
        while !rest.is_empty() {
            conn.read_tls(&mut rest)?;
            if let Err(e) = conn.process_new_packets() {
                // Best effort: tell the client why (the alert is queued).
                let _ = flush(&mut conn, &mut io, wbuf).await;
                return Err(HandshakeError::Tls(e));
            }
        }
    }
    let sni = conn.server_name().map(str::to_ascii_lowercase);
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    let version = conn.protocol_version();
    Ok(TlsAccepted {
        stream: ServerTlsStream::new(io, conn),
        sni,
        alpn,
        version,
    })
}

/// Writes everything rustls has queued; returns the buffer for reuse.
async fn flush<IO: AsyncWriteRent>(
    conn: &mut ServerConnection,
    io: &mut IO,
    mut wbuf: Vec<u8>,
) -> Result<Vec<u8>, HandshakeError> {
    while conn.wants_write() {
        wbuf.clear();
        conn.write_tls(&mut wbuf)?;
        let (res, buf) = io.write_all(wbuf).await;
        wbuf = buf;
        res?;
    }
    Ok(wbuf)
}
