//! `wslb bench http --handshakes URL`: TLS handshake rate. Each connection
//! slot loops: TCP connect, a TLS 1.3 handshake (full, or resumed from a
//! ticket with `--resume`), one `GET` with `Connection: close`, the whole
//! response read, close. One operation is one such session; its latency runs
//! from the connect to the last byte of the response.

use std::io::BufReader;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind, RootCertStore};

use super::response::{parse_head, BodySkipper};
use super::runner::Worker;
use super::stats::ErrorKind;
use super::ticket_store::BenchTicketStore;
use super::url::Target;
use super::BenchError;

/// First read buffer of a session (small responses fit at once).
const READ_BUF: usize = 16 * 1024;
/// A response larger than this is refused (the bench wants small ones).
const READ_BUF_MAX: usize = 1024 * 1024;

/// Settings every handshake task shares.
#[derive(Clone)]
pub struct HandshakeJob {
    /// Where to connect.
    pub target: Target,
    /// The name the certificate is checked against (and SNI, for a DNS name).
    pub server_name: ServerName<'static>,
    /// TLS 1.3 only, ALPN `http/1.1`, resumption on or off.
    pub config: Arc<ClientConfig>,
    /// Time allowed for one whole session.
    pub timeout: Duration,
    /// The request bytes.
    pub request: Rc<[u8]>,
}

/// How one session went: its handshake kind, or why it failed.
type SessionResult = Result<Option<HandshakeKind>, ErrorKind>;

/// A TLS 1.3-only client configuration trusting the CA certificates in
/// `ca_file`, offering ALPN `http/1.1`, keeping session tickets for
/// resumption when `resume` is set and none at all otherwise.
pub fn client_config(ca_file: &Path, resume: bool) -> Result<Arc<ClientConfig>, BenchError> {
    let bad = |why: String| BenchError::Args(format!("--ca {}: {why}", ca_file.display()));
    let file = std::fs::File::open(ca_file).map_err(|e| bad(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut BufReader::new(file)) {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in the file".into()));
    }
    let mut config = ClientConfig::builder_with_provider(wslb::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| BenchError::Args(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = wslb::tls::alpn_protocols();
    config.resumption = if resume {
        Resumption::store(Arc::new(BenchTicketStore::default()))
    } else {
        Resumption::disabled()
    };
    Ok(Arc::new(config))
}

/// The server name for a target host (`host` or `host:port`, IPv6 in brackets).
pub fn server_name(target: &Target) -> Result<ServerName<'static>, BenchError> {
    let host = match target.host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => target
            .host
            .rsplit_once(':')
            .map_or(&*target.host, |(h, _)| h),
    };
    ServerName::try_from(host.to_string())
        .map_err(|_| BenchError::Args(format!("{host:?} is not a TLS server name")))
}

/// The request each session sends: a GET that asks the server to close.
pub fn request(target: &Target) -> Rc<[u8]> {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: wslb-bench\r\nConnection: close\r\n\r\n",
        target.path, target.host
    )
    .into_bytes()
    .into()
}

/// Run this thread's share of connection slots.
pub async fn thread_main(job: Rc<HandshakeJob>, worker: Worker) {
    let worker = Rc::new(worker);
    let tasks: Vec<_> = (0..worker.conns.len())
        .map(|slot| monoio::spawn(slot_main(Rc::clone(&job), Rc::clone(&worker), slot)))
        .collect();
    for t in tasks {
        t.await;
    }
}

async fn slot_main(job: Rc<HandshakeJob>, w: Rc<Worker>, slot: usize) {
    while !w.stop.is_fired() {
        let began = Instant::now();
        let session = monoio::time::timeout(job.timeout, session(&job, &w));
        match w.stop.or_stop(slot, session).await {
            None => return,
            Some(Ok(Ok(kind))) => {
                w.op(began.elapsed());
                let mut stats = w.stats.borrow_mut();
                stats.connects += 1;
                if kind == Some(HandshakeKind::Resumed) {
                    stats.resumed += 1;
                }
            }
            Some(Ok(Err(kind))) => {
                w.err(kind);
                // Avoid spinning on a refused port.
                w.stop
                    .sleep_until(slot, Instant::now() + Duration::from_millis(10))
                    .await;
            }
            Some(Err(_elapsed)) => w.err(ErrorKind::Timeout),
        }
    }
}

/// One session: connect, handshake, request, response, close.
async fn session(job: &HandshakeJob, w: &Worker) -> SessionResult {
    let tcp = TcpStream::connect_addr(job.target.addr)
        .await
        .map_err(|_| ErrorKind::Connect)?;
    // Latency figures assume no Nagle delay; failure here only costs accuracy.
    let _ = tcp.set_nodelay(true);
    let connector = monoio_rustls::TlsConnector::from(Arc::clone(&job.config));
    let mut tls = connector
        .connect(job.server_name.clone(), tcp)
        .await
        .map_err(|_| ErrorKind::Tls)?;
    let (res, _) = tls.write_all(job.request.to_vec()).await;
    res.map_err(|_| ErrorKind::Write)?;
    let mut buf = Vec::with_capacity(READ_BUF);
    let mut received = 0u64;
    let mut body: Option<(BodySkipper, u16)> = None;
    let mut pos = 0;
    loop {
        if body.is_none() {
            if let Some(head) = parse_head(&buf[pos..]).map_err(|_| ErrorKind::Protocol)? {
                pos += head.len;
                if !(100..200).contains(&head.status) || head.status == 101 {
                    body = Some((BodySkipper::new(head.framing), head.status));
                }
                continue;
            }
        }
        if let Some((skipper, status)) = body.as_mut() {
            pos += skipper.feed(&buf[pos..]).map_err(|_| ErrorKind::Protocol)?;
            if skipper.done() {
                if !(200..400).contains(status) {
                    return Err(ErrorKind::Status);
                }
                break;
            }
        }
        if pos == buf.len() {
            buf.clear();
            pos = 0;
        } else if buf.len() == buf.capacity() {
            if buf.capacity() >= READ_BUF_MAX {
                return Err(ErrorKind::Protocol);
            }
            buf.reserve(buf.capacity());
        }
        let len = buf.len();
        let (res, slice) = tls.read(buf.slice_mut(len..)).await;
        buf = slice.into_inner();
        match res {
            Ok(0) => {
                let until_close = body.as_ref().is_some_and(|(s, _)| s.until_close());
                if until_close {
                    break;
                }
                return Err(ErrorKind::Closed);
            }
            Ok(n) => received += n as u64,
            Err(_) => return Err(ErrorKind::Read),
        }
    }
    w.bytes(job.request.len() as u64, received);
    let (_, conn) = tls.into_parts();
    Ok(conn.handshake_kind())
}
