//! Helpers of the reload tests: the certificate a new TLS handshake sees,
//! certificate files replaced on disk, `POST /api/reload`, a balancer
//! embedded in the test process, and a WebSocket session that echoes on
//! its own thread until told to stop.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use crate::common::certs::TestCert;
use crate::common::client::{HttpConn, Response};
use crate::common::ws_client::{Event, WsConn};

pub use crate::common::certs::der;

/// A client that trusts every certificate in `certs` (and resumes no
/// session: one config per call).
pub fn trusting(certs: &[&TestCert]) -> Arc<rustls::ClientConfig> {
    let pem: String = certs.iter().map(|c| c.cert_pem.as_str()).collect();
    crate::common::certs::client_config(&pem)
}

/// One HTTPS `GET path` on a fresh connection (SNI `localhost`): the
/// status and the leaf certificate presented; Err on any failure.
pub fn https_get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<(u16, CertificateDer<'static>), String> {
    https_get_named(addr, config, "localhost", path)
}

/// [`https_get`] naming `host` in SNI.
pub fn https_get_named(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    host: &str,
    path: &str,
) -> Result<(u16, CertificateDer<'static>), String> {
    let (text, leaf) = crate::common::certs::https_exchange(addr, config, host, path)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {text:?}"))?;
    Ok((status, leaf))
}

/// Replaces the files at `at` with `with`'s certificate and key (each
/// written aside, then renamed over, as a deploy tool would).
pub fn install(with: &TestCert, at: &TestCert) {
    for (from, to) in [(&with.cert, &at.cert), (&with.key, &at.key)] {
        let aside = to.with_extension("new");
        std::fs::copy(from, &aside).expect("copy certificate file");
        std::fs::rename(&aside, to).expect("rename certificate file");
    }
}

/// `POST /api/reload` with an optional bearer token.
pub fn post_reload(admin: SocketAddr, token: Option<&str>) -> (Response, serde_json::Value) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let mut c = HttpConn::connect(admin);
    c.send(
        format!("POST /api/reload HTTP/1.1\r\nHost: a\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    let r = c.read_response(false).expect("admin response");
    let v = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
    (r, v)
}

/// The path as a string (temp paths are UTF-8 here).
pub fn path(p: &Path) -> String {
    p.to_str().expect("utf-8 temp path").to_string()
}

/// A WebSocket session through the balancer that sends a message and
/// waits for its echo in a loop on its own thread; `stop` ends the loop
/// and the thread's result says whether every echo came back.
pub struct EchoingSession {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<(WsConn<TcpStream>, u64), String>>,
}

impl EchoingSession {
    /// Opens a session to `addr` and starts echoing every `pause`.
    pub fn open(addr: SocketAddr, label: usize, pause: Duration) -> EchoingSession {
        let mut ws = WsConn::connect(addr);
        ws.set_read_timeout(Duration::from_secs(10));
        let stop = Arc::new(AtomicBool::new(false));
        let theirs = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut echoed = 0u64;
            while !theirs.load(Ordering::Relaxed) {
                let text = format!("session {label} message {echoed}");
                if !ws.send_text(&text) {
                    return Err(format!("session {label}: send failed after {echoed}"));
                }
                match ws.recv() {
                    Event::Msg(m) if m.payload == text.as_bytes() => {}
                    other => return Err(format!("session {label}: {other:?} for {text:?}")),
                }
                echoed += 1;
                std::thread::sleep(pause);
            }
            Ok((ws, echoed))
        });
        EchoingSession { stop, thread }
    }

    /// Stops the loop; the session (still open) and how many echoes came
    /// back, or what went wrong.
    pub fn finish(self) -> Result<(WsConn<TcpStream>, u64), String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| "session thread panicked".to_string())?
    }
}
