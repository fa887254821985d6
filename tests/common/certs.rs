//! Test certificates: self-signed rcgen certificates written to a unique
//! temporary directory, so integration tests can start the real binary with
//! `--tls-cert/--tls-key` and have a client trust exactly that certificate.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};

/// A generated certificate and key on disk.
#[derive(Debug, Clone)]
pub struct TestCert {
    /// The unique directory holding both files (removed by [`TestCert::cleanup`]).
    pub dir: PathBuf,
    /// `cert.pem`: the self-signed certificate.
    pub cert: PathBuf,
    /// `key.pem`: its PKCS#8 private key.
    pub key: PathBuf,
    /// The certificate PEM text, for a client to trust.
    pub cert_pem: String,
}

impl TestCert {
    /// Removes the directory (best effort).
    pub fn cleanup(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A self-signed ECDSA P-256 certificate with `names` as its subject
/// alternative names (DNS names, or IP addresses such as "127.0.0.1"),
/// written as `cert.pem` and `key.pem` in a fresh directory under the
/// system temp dir. Panics on failure (test helper).
pub fn generate(names: &[&str]) -> TestCert {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let generated = rcgen::generate_simple_self_signed(names).expect("rcgen: generate certificate");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "wslb-test-certs-{}-{}-{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create temp cert dir");
    let cert_pem = generated.cert.pem();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, &cert_pem).expect("write cert.pem");
    std::fs::write(&key, generated.key_pair.serialize_pem()).expect("write key.pem");
    TestCert {
        dir,
        cert,
        key,
        cert_pem,
    }
}

/// A rustls client configuration (ring, TLS 1.2/1.3, ALPN http/1.1) that
/// trusts only the certificates in `trusted_pem`. Built with rustls
/// directly, not through wslb, so it checks the server independently.
pub fn client_config(trusted_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut trusted_pem.as_bytes()) {
        roots
            .add(cert.expect("trusted_pem: bad PEM"))
            .expect("trusted_pem: not a usable certificate");
    }
    assert!(!roots.is_empty(), "trusted_pem holds no certificate");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// The leaf certificate of `cert`, as a server presents it.
pub fn der(cert: &TestCert) -> CertificateDer<'static> {
    rustls_pemfile::certs(&mut cert.cert_pem.as_bytes())
        .next()
        .expect("one cert")
        .expect("valid PEM")
}

/// One `GET path` with `Connection: close` over TLS to `addr`, naming
/// `host` (SNI for a DNS name; none for an IP): the response text read to
/// the end and the leaf certificate the server presented; Err naming the
/// step that failed.
pub fn https_exchange(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    host: &str,
    path: &str,
) -> Result<(String, CertificateDer<'static>), String> {
    let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes())
        .map_err(|e| format!("TLS write: {e}"))?;
    let mut out = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        match tls.read(&mut tmp) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&tmp[..n]),
            // A peer that closes without close_notify still sent its answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(format!("TLS read: {e}")),
        }
    }
    let leaf = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no peer certificate")?
        .clone()
        .into_owned();
    Ok((String::from_utf8_lossy(&out).into_owned(), leaf))
}
