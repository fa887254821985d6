//! TLS to backends: `https://` and `wss://` backends reached over rustls,
//! verified against `--backend-ca`. The TLS backend is a second `wslb serve`
//! with a TLS listener in front of `wslb echo` (or, to count connections, a
//! small rustls server here); certificates come from rcgen.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::certs::{generate, TestCert};
use common::client::{get, HttpConn};
use common::proc::{echo, serve, Proc};
use common::ws_client::WsConn;

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// A `wslb serve` with a TLS listener (certificate `cert`) in front of `backend`.
fn tls_middle(backend: &Proc, cert: &TestCert) -> Proc {
    serve(
        &[backend],
        &[
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            path(&cert.cert),
            "--tls-key",
            path(&cert.key),
        ],
    )
}

/// The balancer under test, its log (stderr) kept in a file to read.
struct Front {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Front {
    fn start(backends: &[String], extra: &[&str]) -> Front {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let log = std::env::temp_dir().join(format!(
            "wslb-backend-tls-{}-{}.log",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let mut args: Vec<String> = ["serve", "--listen", "127.0.0.1:0", "--no-pin"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(["--workers", "1", "--admin-listen", "off"].map(String::from));
        for b in backends {
            args.push("--backend".into());
            args.push(b.clone());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_wslb"))
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn wslb");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut addr = None;
        loop {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(line) if line == "ready" => break,
                Ok(line) => {
                    let parts: Vec<&str> = line.split_whitespace().collect();
                    if parts.len() == 3 && parts[0] == "listening" && parts[1] == "http" {
                        addr = parts[2].parse().ok();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let log = std::fs::read_to_string(&log).unwrap_or_default();
                    panic!("wslb {args:?} did not become ready: {log}");
                }
            }
        }
        Front {
            child,
            addr: addr.expect("http listener"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

#[test]
fn http_and_websocket_through_a_tls_backend() {
    let cert = generate(&["localhost", "127.0.0.1"]);
    let e = echo("alpha");
    let middle = tls_middle(&e, &cert);
    let port = middle.addr("https").port();
    let ca = path(&cert.cert);
    // By DNS name (SNI "localhost") and by IP (checked against the IP SAN).
    for url in [
        format!("https://localhost:{port}"),
        format!("wss://127.0.0.1:{port}"),
    ] {
        let front = Front::start(std::slice::from_ref(&url), &["--backend-ca", ca]);
        let r = get(front.addr, "/");
        assert_eq!((r.status, r.text().as_str()), (200, "alpha\n"), "{url}");
        // The middle saw its client (this balancer) come over TLS.
        let r = get(front.addr, "/headers");
        assert!(
            r.text().contains("X-Forwarded-Proto: https\r\n"),
            "{url}: {}",
            r.text()
        );
        // A body both ways.
        let mut c = HttpConn::connect(front.addr);
        let body = "x".repeat(100_000);
        c.send(
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        let r = c.read_response(false).expect("response");
        assert_eq!((r.status, r.body.len()), (200, body.len()), "{url}");
        // A WebSocket session over the TLS backend connection.
        let mut ws = WsConn::connect(front.addr);
        for i in 0..20 {
            ws.echo_text(&format!("hello {i}"));
        }
        let big = vec![7u8; 200_000];
        assert!(ws.send_binary(&big));
        assert_eq!(ws.recv_msg().payload, big, "{url}");
        assert!(
            !front.log().contains("backend connect failed"),
            "{}",
            front.log()
        );
    }
    cert.cleanup();
}

#[test]
fn verification_failures_give_502_and_say_why() {
    let served = generate(&["localhost", "127.0.0.1"]);
    let other_ca = generate(&["localhost", "127.0.0.1"]);
    let wrong_name = generate(&["other.test"]);
    let e = echo("alpha");
    let middle = tls_middle(&e, &served);
    let port = middle.addr("https").port();
    let middle_wrong_name = tls_middle(&e, &wrong_name);
    let wrong_name_port = middle_wrong_name.addr("https").port();
    let cases = [
        // Signed by a CA this balancer does not trust (rcgen gives every
        // self-signed certificate the same subject, so webpki may find the
        // trusted one by name and then refuse the signature).
        (
            format!("https://localhost:{port}"),
            path(&other_ca.cert).to_string(),
            &["UnknownIssuer", "BadSignature"][..],
        ),
        // Trusted, but not for the backend's name.
        (
            format!("https://127.0.0.1:{wrong_name_port}"),
            path(&wrong_name.cert).to_string(),
            &["not valid for name", "NotValidForName"][..],
        ),
    ];
    for (url, ca, whys) in cases {
        let front = Front::start(std::slice::from_ref(&url), &["--backend-ca", &ca]);
        let r = get(front.addr, "/");
        assert_eq!(r.status, 502, "{url}: {}", r.text());
        let said = common::sockets::within(Duration::from_secs(5), || {
            let log = front.log();
            log.contains("backend connect failed")
                && log.contains("TLS handshake failed: invalid peer certificate")
                && whys.iter().any(|why| log.contains(why))
        });
        assert!(
            said.is_some(),
            "{url}: the log does not say why: {}",
            front.log()
        );
    }
    // A failed handshake is a connect failure: the request goes to another
    // backend.
    let good = format!("http://{}", e.http());
    let bad = format!("https://localhost:{port}");
    let front = Front::start(
        &[bad, good],
        &[
            "--backend-ca",
            path(&other_ca.cert),
            "--algorithm",
            "round-robin",
        ],
    );
    for _ in 0..4 {
        let r = get(front.addr, "/");
        assert_eq!((r.status, r.text().as_str()), (200, "alpha\n"));
    }
    for c in [served, other_ca, wrong_name] {
        c.cleanup();
    }
}

/// A keep-alive HTTPS backend that counts the connections it accepts and
/// answers every GET with `conn N request M`.
struct CountingTlsBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl CountingTlsBackend {
    /// With `close_after`, each connection is closed (close_notify, then
    /// FIN) right after its first response, which still says keep-alive.
    fn start(cert: &TestCert, close_after: bool) -> CountingTlsBackend {
        let certs: Vec<_> = rustls_pemfile::certs(&mut cert.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("certs");
        let key_pem = std::fs::read(&cert.key).expect("key");
        let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
            .expect("key pem")
            .expect("a key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                let config = config.clone();
                std::thread::spawn(move || serve_counting(tcp, config, n, close_after));
            }
        });
        CountingTlsBackend { addr, accepted }
    }
}

fn serve_counting(
    tcp: std::net::TcpStream,
    config: Arc<rustls::ServerConfig>,
    conn: usize,
    close_after: bool,
) {
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let Ok(session) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(session, tcp);
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    for request in 1.. {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match tls.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
        buf.drain(..end);
        let body = format!("conn {conn} request {request}\n");
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if tls.write_all(reply.as_bytes()).is_err() || tls.flush().is_err() {
            return;
        }
        if close_after {
            tls.conn.send_close_notify();
            let _ = tls.flush();
            let _ = tls.sock.shutdown(std::net::Shutdown::Write);
            // Let the balancer see the close before the socket goes.
            std::thread::sleep(Duration::from_secs(3));
            return;
        }
    }
}

#[test]
fn tls_backend_connections_are_pooled() {
    let cert = generate(&["localhost"]);
    let backend = CountingTlsBackend::start(&cert, false);
    let url = format!("https://localhost:{}", backend.addr.port());
    let front = Front::start(&[url], &["--backend-ca", path(&cert.cert)]);
    // Sequential requests from separate clients reuse the one pooled
    // TLS connection (the second one waits a moment, so that the liveness
    // peek runs too).
    for i in 1..=5 {
        let r = get(front.addr, "/");
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("conn 1 request {i}\n"));
        if i == 2 {
            std::thread::sleep(Duration::from_millis(1200));
        }
    }
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 1);
    cert.cleanup();
}

#[test]
fn a_pooled_tls_connection_the_backend_closed_is_not_reused() {
    let cert = generate(&["localhost"]);
    let backend = CountingTlsBackend::start(&cert, true);
    let url = format!("https://localhost:{}", backend.addr.port());
    let front = Front::start(&[url], &["--backend-ca", path(&cert.cert)]);
    // Each answer comes on a fresh connection: the closed one is either
    // found closed by the liveness peek (after a pause) or, skipped by a
    // replayable request, retried on a fresh one; the client never sees it.
    for i in 1..=4 {
        if i % 2 == 0 {
            std::thread::sleep(Duration::from_millis(1200));
        } else {
            std::thread::sleep(Duration::from_millis(100));
        }
        let r = get(front.addr, "/");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), format!("conn {i} request 1\n"));
    }
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 4);
    cert.cleanup();
}

#[test]
fn a_registered_tls_backend_is_verified_for_its_address() {
    let cert = generate(&["127.0.0.1"]);
    let e = echo("alpha");
    let middle = tls_middle(&e, &cert);
    let port = middle.addr("https").port();
    let front = Front::start(
        &[],
        &["--backend-ca", path(&cert.cert), "--register-token", "tok"],
    );
    let mut ch = common::admin::control(front.addr, Some("tok")).expect("control channel");
    let reply = common::admin::request(
        &mut ch,
        &serde_json::json!({"type": "register", "v": 1, "id": "tls-1",
            "bindings": [format!("https://127.0.0.1:{port}")]}),
    );
    assert_eq!(reply["type"], "registered", "{reply}");
    for _ in 0..3 {
        let r = get(front.addr, "/headers");
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            r.text().contains("X-Forwarded-Proto: https\r\n"),
            "{}",
            r.text()
        );
    }
    drop(ch);
    cert.cleanup();
}

#[test]
fn a_bad_backend_ca_file_is_refused_at_start() {
    let dir = std::env::temp_dir().join(format!("wslb-bad-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let junk = dir.join("junk-ca.pem");
    std::fs::write(&junk, "no certificate here\n").expect("write");
    let missing = dir.join("missing-ca.pem");
    for (file, name) in [(&junk, "junk-ca.pem"), (&missing, "missing-ca.pem")] {
        let out = Command::new(env!("CARGO_BIN_EXE_wslb"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "off",
                "--backend",
                "https://127.0.0.1:1",
                "--backend-ca",
                path(file),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("run wslb");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(name), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
