//! TLS to backends (`https://` and `wss://` backends): the client
//! configuration, loaded once at startup (the system roots, or only the CA
//! certificates of `--backend-ca`; verification cannot be turned off), and
//! a verified connect over an open TCP stream. SNI and the name checked
//! against the certificate come from the backend's host: a DNS name is sent
//! as SNI and must be in the certificate's DNS SANs; an IP address is
//! checked against its IP SANs and no SNI is sent. ALPN offers `http/1.1`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpStream;
use monoio_rustls::ClientTlsStream;
use rustls::pki_types::ServerName;

use super::TlsError;

/// Why a TLS connection to a backend could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BackendTlsError {
    /// The backend's host is not a name a certificate can be checked against.
    #[error("backend host {0:?} is not a valid TLS server name")]
    BadName(String),
    /// The TCP connection failed.
    #[error("connect failed: {0}")]
    Connect(#[source] std::io::Error),
    /// The handshake failed: certificate refused (unknown issuer, name
    /// mismatch, expired), protocol error, or the backend closed.
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] std::io::Error),
    /// Connect and handshake did not finish in time.
    #[error("connect and TLS handshake timed out")]
    Timeout,
}

/// The client configuration for TLS backends: trusts only the CA
/// certificates in `ca_file` when given (error naming the file if it holds
/// none), else the system bundle (`SSL_CERT_FILE` or the distribution's).
/// TLS 1.2 and 1.3, ALPN `http/1.1`, every certificate verified.
pub fn backend_client_config(
    ca_file: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    super::build_client_config(ca_file, false)
}

/// The name a backend's certificate is checked against, from its host: an
/// IP literal (IPv6 with or without brackets) or a DNS name.
pub fn server_name(host: &str) -> Result<ServerName<'static>, BackendTlsError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(bare.to_string()).map_err(|_| BackendTlsError::BadName(host.to_string()))
}

/// Runs the TLS handshake as a client over `tcp`, verifying the backend's
/// certificate for `name` (see [`server_name`]). Not bounded in time: the
/// caller puts its own timeout around it (see [`open`]).
pub async fn handshake(
    connector: &monoio_rustls::TlsConnector,
    tcp: TcpStream,
    name: ServerName<'static>,
) -> Result<ClientTlsStream<TcpStream>, BackendTlsError> {
    connector
        .connect(name, tcp)
        .await
        .map_err(|e| BackendTlsError::Handshake(e.into()))
}

/// Opens a verified TLS connection to the backend at `addr` whose host
/// (as written in its URL) is `host`: TCP connect and handshake together
/// within `timeout`. For anything that reaches a backend outside a client's
/// request (health checks); the proxy's own connect is in `proxy::backend`.
pub async fn open(
    connector: &monoio_rustls::TlsConnector,
    addr: SocketAddr,
    host: &str,
    timeout: Duration,
) -> Result<ClientTlsStream<TcpStream>, BackendTlsError> {
    let name = server_name(host)?;
    let work = async {
        let tcp = TcpStream::connect_addr(addr)
            .await
            .map_err(BackendTlsError::Connect)?;
        let _ = tcp.set_nodelay(true);
        handshake(connector, tcp, name).await
    };
    monoio::time::timeout(timeout, work)
        .await
        .unwrap_or(Err(BackendTlsError::Timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_hosts() {
        assert!(matches!(
            server_name("127.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(server_name("[::1]"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(server_name("::1"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(
            server_name("backend.example.com"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(server_name("bad name!").is_err());
        assert!(server_name("").is_err());
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("wslb-backend-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = backend_client_config(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("empty.pem"), "{err}");
        let missing = dir.join("missing.pem");
        let err = backend_client_config(Some(&missing))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.pem"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
