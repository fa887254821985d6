//! TLS for wslb: rustls server configuration (PEM loading, key checks, SNI
//! certificate choice) for the TLS listeners, and a client configuration for
//! `wss://` clients (bench tool, agent). All file reading and validation
//! happens here, at startup; a bad certificate never surfaces later.
//!
//! The listeners accept with [`accept`], which gives a [`TlsServerStream`]:
//! rustls' unbuffered connection over the socket's readiness, holding no
//! read or write buffer while a session is idle. The monoio-rustls
//! acceptor below stays for programs that embed wslb.
//!
//! # Accepting on a monoio worker
//!
//! ```no_run
//! # use std::sync::Arc;
//! # async fn demo(settings: wslb::tls::TlsSettings) -> Result<(), Box<dyn std::error::Error>> {
//! use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
//! let config = wslb::tls::build_server_config(&settings)?; // once, at startup
//! let acceptor = wslb::tls::acceptor(config.clone());       // clone per worker (cheap: an Arc)
//! let listener = monoio::net::TcpListener::bind("127.0.0.1:0")?;
//! let (tcp_stream, _peer) = listener.accept().await?;
//! // Plain monoio-rustls: ALPN is readable from the stream, SNI is not.
//! let mut tls = acceptor.accept(tcp_stream).await?;
//! let _alpn: Option<Vec<u8>> = tls.alpn_protocol();
//! let (res, _buf) = tls.read(vec![0u8; 4096]).await;
//! res?;
//! let (res, _) = tls.write_all(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()).await;
//! res?;
//! // Or, to learn the SNI host name too:
//! let (tcp_stream, _peer) = listener.accept().await?;
//! let accepted = wslb::tls::accept_with_info(&config, tcp_stream).await?;
//! let _host: Option<&str> = accepted.sni.as_deref();
//! let _stream = accepted.stream; // monoio_rustls::ServerTlsStream<TcpStream>
//! # Ok(()) }
//! ```

pub mod backend;
mod client;
mod handshake;
mod load;
mod resolver;
mod server_accept;
mod server_core;
mod server_records;
mod server_stream;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod tests_server_core;
#[cfg(test)]
mod tests_server_stream;

use std::path::PathBuf;
use std::sync::Arc;

pub use client::build_client_config;
pub use handshake::{accept_with_info, HandshakeError, TlsAccepted};
pub use server_accept::accept;
pub use server_stream::TlsServerStream;

/// Everything that can go wrong while loading certificates or building a
/// TLS configuration. Each message names the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate (or CA bundle) file could not be read.
    #[error("cannot read certificate file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A private key file could not be read.
    #[error("cannot read private key file {}: {source}", path.display())]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no `CERTIFICATE` PEM block.
    #[error("no PEM certificate (-----BEGIN CERTIFICATE-----) found in {}", path.display())]
    NoCertificates {
        /// The file.
        path: PathBuf,
    },
    /// The file holds no private key PEM block.
    #[error(
        "no PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY) found in {}",
        path.display()
    )]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// A PEM block is malformed (bad base64, unterminated section).
    #[error("malformed PEM in {}: {detail}", path.display())]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        detail: String,
    },
    /// The leaf certificate is not a parsable X.509 certificate.
    #[error("invalid certificate in {}: {detail}", path.display())]
    InvalidCertificate {
        /// The file.
        path: PathBuf,
        /// What rustls/webpki said.
        detail: String,
    },
    /// The private key does not belong to the leaf certificate.
    #[error(
        "private key {} does not match the first certificate in {}",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The private key could not be used (unsupported algorithm, corrupt DER).
    #[error("unusable private key in {}: {detail}", path.display())]
    InvalidKey {
        /// The file.
        path: PathBuf,
        /// What rustls said.
        detail: String,
    },
    /// rustls refused to build the configuration.
    #[error("rustls configuration error: {0}")]
    Rustls(String),
    /// An SNI host name is not a valid DNS name (or is a wildcard).
    #[error(
        "invalid SNI host name {0:?}: expected an exact DNS host name such as api.example.com"
    )]
    BadSniHost(String),
    /// The same SNI host name was given twice.
    #[error("SNI host name {0:?} is configured more than once")]
    DuplicateSniHost(String),
    /// A `--tls-sni` value is not of the form `HOST=CERT,KEY`.
    #[error("invalid --tls-sni value {arg:?}: {detail} (expected HOST=CERT_FILE,KEY_FILE)")]
    BadSniArg {
        /// The value as given.
        arg: String,
        /// What is wrong with it.
        detail: &'static str,
    },
    /// TLS was asked for but neither a default nor an SNI certificate was given.
    #[error(
        "TLS listener has no certificate: give --tls-cert/--tls-key or at least one --tls-sni"
    )]
    NoCertificateConfigured,
    /// No CA file was given and no system CA bundle was found.
    #[error("no trusted CA certificates: give a CA file, set SSL_CERT_FILE, or use insecure mode")]
    NoTrustAnchors,
}

/// A certificate chain file and its private key file (both PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertPair {
    /// PEM file with the leaf certificate first, then intermediates.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
}

/// Which certificates a TLS listener serves.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    /// Served when the client sends no SNI or an SNI that matches no entry.
    pub default_cert: Option<CertPair>,
    /// `(host name, certificate)`: served when the client's SNI equals the
    /// host name (ASCII case-insensitive, exact; no wildcards).
    pub sni: Vec<(String, CertPair)>,
}

/// The crypto provider wslb uses everywhere (ring; aws-lc is not built).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// ALPN protocol ids offered/accepted: HTTP/1.1 only (WebSocket upgrades
/// ride on HTTP/1.1).
pub fn alpn_protocols() -> Vec<Vec<u8>> {
    vec![b"http/1.1".to_vec()]
}

/// Loads every PEM chain + key (PKCS#8, RSA/PKCS#1 or SEC1 EC), checks each
/// key matches its leaf certificate, and builds a rustls `ServerConfig` with
/// the ring provider: TLS 1.2 and 1.3, ALPN `["http/1.1"]`, a certificate
/// resolver choosing by SNI (case-insensitive exact host match) and falling
/// back to the default certificate. With no default and no SNI match the
/// handshake fails. All errors happen here, at startup, never later.
pub fn build_server_config(settings: &TlsSettings) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let resolver = resolver::SniResolver::load(settings, &provider)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = alpn_protocols();
    // Stateless session tickets: resumption without a shared, locked cache.
    config.ticketer =
        rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError::Rustls(e.to_string()))?;
    Ok(Arc::new(config))
}

/// A monoio-rustls acceptor for a server configuration (cheap to clone).
pub fn acceptor(config: Arc<rustls::ServerConfig>) -> monoio_rustls::TlsAcceptor {
    monoio_rustls::TlsAcceptor::from(config)
}

/// A monoio-rustls connector for a client configuration (cheap to clone).
pub fn connector(config: Arc<rustls::ClientConfig>) -> monoio_rustls::TlsConnector {
    monoio_rustls::TlsConnector::from(config)
}

/// Parses a `--tls-sni` value `HOST=CERT,KEY` (split at the first `=` and
/// the first `,` after it). The host name is validated and lower-cased; the
/// files are not read here (that is [`build_server_config`]'s job).
pub fn parse_sni_arg(s: &str) -> Result<(String, CertPair), TlsError> {
    let bad = |detail| TlsError::BadSniArg {
        arg: s.to_string(),
        detail,
    };
    let (host, files) = s.split_once('=').ok_or_else(|| bad("missing '='"))?;
    let (cert, key) = files
        .split_once(',')
        .ok_or_else(|| bad("missing ',' between certificate and key file"))?;
    let (host, cert, key) = (host.trim(), cert.trim(), key.trim());
    if host.is_empty() {
        return Err(bad("empty host name"));
    }
    if cert.is_empty() || key.is_empty() {
        return Err(bad("empty certificate or key file name"));
    }
    let host = resolver::normalize_host(host)?;
    Ok((
        host,
        CertPair {
            cert: PathBuf::from(cert),
            key: PathBuf::from(key),
        },
    ))
}
