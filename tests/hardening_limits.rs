//! Hardening limits, end to end on the real binary: the admin listener's
//! token-before-body check, request deadline and connection cap; the
//! per-IP connection limit; forwarding headers from untrusted and trusted
//! peers; the startup warning for an exposed admin API without a token.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::client::{get, HttpConn};
use common::proc::{echo, serve};
use common::sockets::connect_from;

/// Whether the peer has closed `s` (EOF or reset) within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).ok();
    let mut b = [0u8; 256];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn admin_answers_401_before_waiting_for_a_body() {
    let a = echo("a");
    let lb = serve(
        &[&a],
        &["--admin-listen", "127.0.0.1:0", "--admin-token", "s3cret"],
    );
    let admin = lb.addr("admin");
    for auth in ["", "Authorization: Bearer wrong\r\n"] {
        let mut c = HttpConn::connect(admin);
        c.stream.set_read_timeout(Some(Duration::from_secs(3))).ok();
        let started = Instant::now();
        c.send(
            format!(
                "POST /api/backends/x/drain HTTP/1.1\r\nHost: a\r\n{auth}\
                 Content-Length: 10000000000\r\n\r\n"
            )
            .as_bytes(),
        );
        let r = c.read_response(false).expect("401 without the body");
        assert_eq!(r.status, 401, "{}", r.text());
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(r.header("connection"), Some("close"));
        assert!(closed_within(&mut c.stream, Duration::from_secs(2)));
    }
    // The right token still gets through (the body is read and skipped).
    let mut c = HttpConn::connect(admin);
    c.send(b"POST /api/backends/none/drain HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer s3cret\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(c.read_response(false).expect("answer").status, 404);
    c.send(b"GET /healthz HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer s3cret\r\n\r\n");
    assert_eq!(c.read_response(false).expect("kept alive").status, 200);
}

#[test]
fn admin_cuts_a_trickled_head_at_the_request_deadline() {
    let a = echo("a");
    let lb = serve(
        &[&a],
        &[
            "--admin-listen",
            "127.0.0.1:0",
            "--admin-request-timeout",
            "1s",
        ],
    );
    let mut s = TcpStream::connect(lb.addr("admin")).expect("connect");
    let started = Instant::now();
    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n");
    let mut closed = false;
    // A byte-sized header line every 200 ms: every read is quick, the
    // request as a whole is not.
    while started.elapsed() < Duration::from_secs(5) {
        if s.write_all(b"X: y\r\n").is_err() || closed_within(&mut s, Duration::from_millis(200)) {
            closed = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(closed, "still open after {took:?}");
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "closed late: {took:?}");
    // Idle keep-alive connections end at the same deadline.
    let mut c = HttpConn::connect(lb.addr("admin"));
    assert_eq!(c.get("/healthz").status, 200);
    let idle = Instant::now();
    assert!(closed_within(&mut c.stream, Duration::from_secs(3)));
    assert!(idle.elapsed() < Duration::from_millis(2500));
}

#[test]
fn admin_cap_evicts_the_longest_idle_and_still_answers() {
    let a = echo("a");
    let lb = serve(
        &[&a],
        &[
            "--admin-listen",
            "127.0.0.1:0",
            "--admin-max-connections",
            "4",
            "--admin-request-timeout",
            "30s",
        ],
    );
    let admin = lb.addr("admin");
    let mut idle: Vec<TcpStream> = (0..10)
        .map(|_| {
            let s = TcpStream::connect(admin).expect("connect");
            // Let the listener admit them in order.
            std::thread::sleep(Duration::from_millis(20));
            s
        })
        .collect();
    let started = Instant::now();
    let r = get(admin, "/healthz");
    assert_eq!(r.status, 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    // 10 idle + 1 operator through a cap of 4: the 7 oldest idle ones were
    // cut, the 3 youngest are still open (the deadline is 30 s away).
    let states: Vec<bool> = idle
        .iter_mut()
        .map(|s| closed_within(s, Duration::from_millis(300)))
        .collect();
    assert_eq!(
        states,
        [[true; 7].as_slice(), &[false; 3]].concat(),
        "{states:?}"
    );
}

/// One `GET /` with `Connection: close` on `s`; the status line's code.
fn status_of_get(mut s: TcpStream) -> String {
    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    String::from_utf8_lossy(all.get(9..12).unwrap_or(b"eof")).into_owned()
}

#[test]
fn per_ip_limit_answers_429_and_counts_every_worker() {
    let a = echo("a");
    let lb = serve(
        &[&a],
        &[
            "--admin-listen",
            "127.0.0.1:0",
            "--max-connections-per-ip",
            "3",
        ],
    );
    let mut held: Vec<HttpConn> = (0..3).map(|_| HttpConn::connect(lb.http())).collect();
    for c in &mut held {
        assert_eq!(c.get("/").status, 200);
    }
    let mut fourth = HttpConn::connect(lb.http());
    fourth.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = fourth.read_response(false).expect("an answer, not a reset");
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("connection"), Some("close"));
    assert!(closed_within(&mut fourth.stream, Duration::from_secs(2)));
    assert_eq!(status_of_get(connect_from("127.0.0.2", lb.http())), "200");
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let code = status_of_get(connect_from("127.0.0.1", lb.http()));
        if code == "200" {
            break;
        }
        assert!(Instant::now() < deadline, "no room after a close: {code}");
        std::thread::sleep(Duration::from_millis(50));
    }
    for c in &mut held {
        assert_eq!(c.get("/").status, 200, "held connections unaffected");
    }
    let metrics = get(lb.addr("admin"), "/metrics").text();
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("wslb_per_ip_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(refused >= 1, "{metrics}");
}

const SPOOFED: &str = "GET /headers HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 6.6.6.6\r\n\
    X-Forwarded-For: 7.7.7.7\r\nX-Forwarded-Proto: https\r\nForwarded: for=6.6.6.6\r\n\
    X-Real-IP: 6.6.6.6\r\n\r\n";

/// The head the echo backend received for [`SPOOFED`] sent through `lb`.
fn head_seen_by_backend(lb: SocketAddr) -> String {
    let mut c = HttpConn::connect(lb);
    c.send(SPOOFED.as_bytes());
    let r = c.read_response(false).expect("response");
    assert_eq!(r.status, 200);
    r.text().to_ascii_lowercase()
}

#[test]
fn forwarding_headers_are_replaced_unless_the_peer_is_trusted() {
    let a = echo("a");
    let lb = serve(&[&a], &[]);
    let head = head_seen_by_backend(lb.http());
    assert!(
        head.contains("\r\nx-forwarded-for: 127.0.0.1\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nx-forwarded-proto: http\r\n"), "{head}");
    assert!(
        !head.contains("6.6.6.6") && !head.contains("7.7.7.7"),
        "{head}"
    );
    assert!(
        !head.contains("\r\nforwarded:") && !head.contains("x-real-ip"),
        "{head}"
    );
    assert_eq!(head.matches("x-forwarded-for").count(), 1, "{head}");

    let trusting = serve(&[&a], &["--trusted-proxies", "10.0.0.0/8,127.0.0.1"]);
    let head = head_seen_by_backend(trusting.http());
    assert!(
        head.contains("\r\nx-forwarded-for: 6.6.6.6, 7.7.7.7, 127.0.0.1\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nx-forwarded-proto: https\r\n"), "{head}");
    assert!(head.contains("\r\nforwarded: for=6.6.6.6\r\n"), "{head}");
    assert!(head.contains("\r\nx-real-ip: 6.6.6.6\r\n"), "{head}");
}

/// Starts `wslb serve` with `admin` flags, waits for "ready", stops it, and
/// returns what it logged on stderr.
fn startup_log(admin: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wslb"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--no-pin",
        ])
        .args(admin)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wslb");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line == "ready" {
                let _ = tx.send(());
            }
        }
    });
    let ready = rx.recv_timeout(Duration::from_secs(10)).is_ok();
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready, "wslb {admin:?} did not become ready");
    let mut log = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut log);
    }
    log
}

#[test]
fn warns_when_the_admin_api_is_exposed_without_a_token() {
    const WARNING: &str = "without --admin-token";
    let exposed = startup_log(&["--admin-listen", "0.0.0.0:0"]);
    assert!(exposed.contains(WARNING), "{exposed}");
    let local = startup_log(&["--admin-listen", "127.0.0.1:0"]);
    assert!(!local.contains(WARNING), "{local}");
    let with_token = startup_log(&["--admin-listen", "0.0.0.0:0", "--admin-token", "t"]);
    assert!(!with_token.contains(WARNING), "{with_token}");
}

#[test]
fn per_ip_limit_counts_websocket_sessions_and_closes_tls_silently() {
    use common::ws_client::WsConn;
    let a = echo("a");
    let cert = common::certs::generate(&["localhost"]);
    let (cert_path, key_path) = (cert.cert.to_string_lossy(), cert.key.to_string_lossy());
    let lb = serve(
        &[&a],
        &[
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            &cert_path,
            "--tls-key",
            &key_path,
            "--max-connections-per-ip",
            "2",
        ],
    );
    let mut first = WsConn::connect(lb.http());
    first.echo_text("one");
    let mut second = WsConn::connect(lb.http());
    second.echo_text("two");
    // Two sessions hold both slots: plain gets 429, TLS a close with no
    // handshake at all.
    assert_eq!(status_of_get(connect_from("127.0.0.1", lb.http())), "429");
    let mut tls = TcpStream::connect(lb.addr("https")).expect("connect");
    let started = Instant::now();
    assert!(closed_within(&mut tls, Duration::from_secs(2)));
    assert!(started.elapsed() < Duration::from_secs(1));
    // The sessions themselves are unaffected; ending one makes room.
    first.echo_text("still");
    second.drop_tcp();
    let deadline = Instant::now() + Duration::from_secs(3);
    while status_of_get(connect_from("127.0.0.1", lb.http())) != "200" {
        assert!(Instant::now() < deadline, "no room after a session ended");
        std::thread::sleep(Duration::from_millis(50));
    }
    cert.cleanup();
}

#[test]
fn refused_connections_hold_no_global_slot_while_answered() {
    let a = echo("a");
    let lb = serve(
        &[&a],
        &[
            "--admin-listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--max-connections-per-ip",
            "2",
        ],
    );
    let mut held: Vec<HttpConn> = (0..2).map(|_| HttpConn::connect(lb.http())).collect();
    for c in &mut held {
        assert_eq!(c.get("/").status, 200);
    }
    // Refused clients that read their 429 and then keep the socket open:
    // the balancer lingers a little on each before closing it.
    let mut refused = Vec::new();
    for _ in 0..10 {
        let mut c = HttpConn::connect(lb.http());
        let r = c.read_response(false).expect("a 429, not a reset");
        assert_eq!(r.status, 429);
        refused.push(c);
    }
    let status: serde_json::Value =
        serde_json::from_str(&get(lb.addr("admin"), "/api/status").text()).expect("json");
    assert_eq!(
        status["open_connections"], 2,
        "refused connections counted against --max-connections: {status}"
    );
}

#[test]
fn trusted_proxies_are_exempt_from_the_per_ip_limit() {
    let a = echo("a");
    let lb = serve(
        &[&a],
        &[
            "--max-connections-per-ip",
            "1",
            "--trusted-proxies",
            "127.0.0.2/32",
        ],
    );
    let mut proxied: Vec<TcpStream> = (0..3)
        .map(|_| connect_from("127.0.0.2", lb.http()))
        .collect();
    let mut direct = HttpConn::connect(lb.http());
    assert_eq!(direct.get("/").status, 200);
    assert_eq!(status_of_get(connect_from("127.0.0.1", lb.http())), "429");
    for s in proxied.drain(..) {
        assert_eq!(status_of_get(s), "200", "a trusted proxy's connection");
    }
}
