//! Integration tests of HTTP/1.1 message handling through `wslb serve`:
//! chunked and large bodies (1 GiB each way with the balancer's memory
//! watched), pipelining, `Expect: 100-continue`, bodiless responses, a
//! response delimited by close, and header rewriting.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::client::{rss_kib, HttpConn, RawBackend};
use common::proc::{echo, serve};

const GIB: u64 = 1 << 30;
/// Most the balancer may hold while relaying a 1 GiB body.
const RSS_LIMIT_KIB: u64 = 200 * 1024;

#[test]
fn chunked_request_and_response_bodies() {
    let a = echo("alpha");
    let lb = serve(&[&a], &[]);
    let mut conn = HttpConn::connect(lb.http());
    // Whole body in one write.
    conn.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n");
    let r = conn.read_response(false).expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.text(), "hello world");
    // Streamed in pieces with pauses, split inside size lines and data.
    conn.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for piece in [
        &b"1"[..],
        b"0\r\n0123456",
        b"789abcdef\r\n",
        b"3\r\nxyz\r",
        b"\n0\r\n",
        b"\r\n",
    ] {
        std::thread::sleep(Duration::from_millis(30));
        conn.send(piece);
    }
    let r = conn.read_response(false).expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "0123456789abcdefxyz");
    // The connection is still good afterwards.
    assert_eq!(conn.get("/").text(), "alpha\n");
}

/// Content-Length body echoed back, then keep-alive goes on.
#[test]
fn content_length_body_echoed_and_connection_kept() {
    let a = echo("alpha");
    let lb = serve(&[&a], &[]);
    let mut conn = HttpConn::connect(lb.http());
    let body = vec![b'z'; 100_000];
    conn.send(
        format!(
            "PUT /x HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    conn.send(&body);
    let r = conn.read_response(false).expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, body);
    assert_eq!(conn.get("/").text(), "alpha\n");
}

/// Samples the RSS of `pid` every 100 ms until `stop` is set; returns the peak.
fn watch_rss(
    pid: u32,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            peak = peak.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(100));
        }
        peak.max(rss_kib(pid))
    })
}

/// Reads a 1 GiB response on `conn`, stops the RSS watcher, and checks the
/// byte count and the balancer's peak RSS.
fn receive_gib(
    conn: &mut HttpConn,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    watcher: std::thread::JoinHandle<u64>,
    started: Instant,
    what: &str,
) {
    let head = conn.read_head().expect("response head");
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(GIB.to_string().as_str())
    );
    let got = conn.count_body(GIB);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let peak = watcher.join().expect("watcher");
    eprintln!(
        "1 GiB {what} in {:?}, balancer peak RSS {peak} KiB",
        started.elapsed()
    );
    assert_eq!(got, GIB);
    assert!(
        peak > 0 && peak < RSS_LIMIT_KIB,
        "balancer RSS peaked at {peak} KiB"
    );
}

#[test]
fn one_gib_upload_streams_through_in_bounded_memory() {
    let a = echo("alpha");
    let lb = serve(&[&a], &[]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = watch_rss(lb.child.id(), stop.clone());
    let started = Instant::now();
    let mut conn = HttpConn::connect(lb.http());
    conn.send(
        format!("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {GIB}\r\n\r\n").as_bytes(),
    );
    let mut writer = conn.stream.try_clone().expect("clone");
    let upload = std::thread::spawn(move || {
        let block = vec![b'u'; 1 << 20];
        for _ in 0..(GIB >> 20) {
            writer.write_all(&block).expect("upload write");
        }
    });
    receive_gib(&mut conn, stop, watcher, started, "upload echoed");
    upload.join().expect("upload thread");
    // Same connection still works.
    assert_eq!(conn.get("/").text(), "alpha\n");
}

#[test]
fn one_gib_download_streams_through_in_bounded_memory() {
    let a = echo("alpha");
    let lb = serve(&[&a], &[]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = watch_rss(lb.child.id(), stop.clone());
    let started = Instant::now();
    let mut conn = HttpConn::connect(lb.http());
    conn.send(format!("GET /bytes/{GIB} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    receive_gib(&mut conn, stop, watcher, started, "download");
    assert_eq!(conn.get("/").text(), "alpha\n");
}

#[test]
fn pipelined_requests_answered_in_order() {
    let a = echo("alpha");
    let lb = serve(&[&a], &[]);
    let mut conn = HttpConn::connect(lb.http());
    conn.send(
        b"GET /delay/200 HTTP/1.1\r\nHost: t\r\n\r\n\
GET /status/201 HTTP/1.1\r\nHost: t\r\n\r\n\
POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc\
HEAD / HTTP/1.1\r\nHost: t\r\n\r\n\
GET /status/204 HTTP/1.1\r\nHost: t\r\n\r\n\
POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n\
GET /status/202 HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let expect: [(u16, bool, &str); 7] = [
        (200, false, "alpha delayed 200ms\n"),
        (201, false, "status 201 from alpha\n"),
        (200, false, "abc"),
        (200, true, ""),
        (204, false, ""),
        (200, false, "hi"),
        (202, false, "status 202 from alpha\n"),
    ];
    for (i, (status, head, body)) in expect.iter().enumerate() {
        let r = conn
            .read_response(*head)
            .unwrap_or_else(|| panic!("response {i} missing"));
        assert_eq!(
            (r.status, r.text().as_str()),
            (*status, *body),
            "response {i}"
        );
    }
    assert_eq!(conn.get("/").text(), "alpha\n");
}

#[test]
fn expect_100_continue_is_relayed_before_the_body() {
    let a = echo("alpha");
    let lb = serve(&[&a], &[]);
    let mut conn = HttpConn::connect(lb.http());
    conn.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    );
    conn.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .ok();
    let interim = conn
        .read_response(false)
        .expect("100 Continue before the body");
    assert_eq!(interim.status, 100);
    conn.send(b"hello");
    let r = conn.read_response(false).expect("final response");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello");
    assert_eq!(conn.get("/").text(), "alpha\n");
}

#[test]
fn head_204_and_304_carry_no_body() {
    let a = echo("alpha");
    let lb = serve(&[&a], &[]);
    let mut conn = HttpConn::connect(lb.http());
    conn.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = conn.read_response(true).expect("HEAD response");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("6"));
    for code in [204u16, 304] {
        let r = conn.get(&format!("/status/{code}"));
        assert_eq!(r.status, code);
        assert!(r.header("content-length").is_none() && r.header("transfer-encoding").is_none());
    }
    // Any stray body byte would corrupt this answer.
    let r = conn.get("/");
    assert_eq!((r.status, r.text().as_str()), (200, "alpha\n"));
    assert!(
        !conn.is_closed(Duration::from_millis(200)),
        "connection should stay open"
    );
}

#[test]
fn response_delimited_by_close_is_relayed_then_closed() {
    let raw = RawBackend::start(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello until close\nsecond line\n",
    );
    let url = raw.url();
    let lb = serve(&[], &["--backend", &url]);
    let mut conn = HttpConn::connect(lb.http());
    conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = conn.read_response(false).expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello until close\nsecond line\n");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(conn.is_closed(Duration::from_secs(2)));
}

#[test]
fn hop_by_hop_removed_forwarded_headers_added_host_kept() {
    let a = echo("alpha");
    let lb = serve(&[&a], &[]);
    let mut conn = HttpConn::connect(lb.http());
    conn.send(
        b"GET /headers HTTP/1.1\r\nHost: example.test:8080\r\nConnection: keep-alive, X-Private\r\n\
X-Private: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-Sum\r\n\
Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\nX-Forwarded-For: 10.1.2.3\r\n\
X-Forwarded-Proto: https\r\nX-Kept: yes\r\n\r\n",
    );
    let r = conn.read_response(false).expect("response");
    assert_eq!(r.status, 200);
    let seen = r.text().to_ascii_lowercase();
    assert!(seen.contains("\r\nhost: example.test:8080\r\n"), "{seen}");
    assert!(seen.contains("\r\nx-kept: yes\r\n"), "{seen}");
    for gone in [
        "connection:",
        "x-private",
        "keep-alive",
        "\r\nte:",
        "trailer:",
        "proxy-connection",
        "upgrade:",
    ] {
        assert!(!seen.contains(gone), "{gone:?} forwarded: {seen}");
    }
    // The client is not a trusted proxy: its X-Forwarded-For is replaced
    // (tests/hardening_limits.rs covers the trusted case).
    assert!(
        seen.contains("\r\nx-forwarded-for: 127.0.0.1\r\n"),
        "{seen}"
    );
    assert!(!seen.contains("10.1.2.3"), "{seen}");
    assert!(seen.contains("\r\nx-forwarded-proto: http\r\n"), "{seen}");
    assert_eq!(seen.matches("x-forwarded-proto").count(), 1, "{seen}");
    // The backend's own hop-by-hop fields are not relayed either.
    assert!(r.header("keep-alive").is_none());
}

#[test]
fn http_1_0_clients_get_1_0_answers_and_their_keep_alive() {
    let a = echo("alpha");
    let lb = serve(&[&a], &[]);
    let mut conn = HttpConn::connect(lb.http());
    conn.send(b"GET / HTTP/1.0\r\n\r\n");
    let r = conn.read_response(false).expect("response");
    assert_eq!((r.status, r.text().as_str()), (200, "alpha\n"));
    assert!(
        conn.is_closed(Duration::from_secs(2)),
        "HTTP/1.0 without keep-alive must close"
    );
    let mut conn = HttpConn::connect(lb.http());
    conn.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = conn.read_response(false).expect("response");
    assert_eq!(
        r.header("connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("keep-alive")
    );
    conn.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(
        conn.read_response(false).expect("second response").text(),
        "alpha\n"
    );
    // A chunked answer cannot go to an HTTP/1.0 client as it is: the
    // balancer relays it and closes.
    conn.send(b"POST /e HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi");
    let mut raw = Vec::new();
    conn.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .ok();
    let _ = std::io::Read::read_to_end(&mut conn.stream, &mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");
    assert!(text.ends_with("hi"), "{text}");
}
