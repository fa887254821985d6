//! Integration tests of the answers `wslb serve` gives itself: 400 for
//! malformed and smuggling-shaped requests (never forwarded), 431, 502 for a
//! dead or non-HTTP backend, 503 with no backend, 504 on a slow backend.

mod common;

use std::time::{Duration, Instant};

use common::client::{get, HttpConn, RawBackend};
use common::proc::{echo, serve};

/// Sends `raw` on a fresh connection; returns the answer and whether the
/// balancer closed the connection afterwards.
fn send_raw(addr: std::net::SocketAddr, raw: &[u8]) -> (u16, String, bool) {
    let mut conn = HttpConn::connect(addr);
    conn.send(raw);
    let r = conn.read_response(false).expect("an answer");
    let closed = conn.is_closed(Duration::from_secs(2));
    (r.status, r.text(), closed)
}

#[test]
fn malformed_request_gets_400_and_close() {
    let a = echo("alpha");
    let lb = serve(&[&a], &[]);
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: t\r\nBad Header Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n", // HTTP/1.1 without Host
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ] {
        let (status, body, closed) = send_raw(lb.http(), raw);
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(raw));
        assert_eq!(body, "400 Bad Request\n");
        assert!(closed);
    }
}

#[test]
fn oversized_head_gets_431() {
    let a = echo("alpha");
    let lb = serve(&[&a], &["--max-header-bytes", "4k"]);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(8000)
    );
    let (status, _, closed) = send_raw(lb.http(), big.as_bytes());
    assert_eq!(status, 431);
    assert!(closed);
    // Just under the limit is fine.
    let ok = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(3000)
    );
    let (status, body, _) = send_raw(lb.http(), ok.as_bytes());
    assert_eq!((status, body.as_str()), (200, "alpha\n"));
}

#[test]
fn closed_backend_port_gets_502() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let url = format!("http://{port}");
    let lb = serve(&[], &["--backend", &url]);
    let r = get(lb.http(), "/");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.text(), "502 Bad Gateway\n");
}

#[test]
fn backend_answering_garbage_gets_502() {
    let raw = RawBackend::start(b"SSH-2.0-OpenSSH_9.6\r\nnot http at all\r\n\r\n");
    let url = raw.url();
    let lb = serve(&[], &["--backend", &url]);
    let r = get(lb.http(), "/");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(raw.accepted() >= 1, "the request never reached the backend");
}

#[test]
fn no_backend_gets_503() {
    let lb = serve(&[], &[]);
    let r = get(lb.http(), "/");
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), "503 Service Unavailable\n");
}

#[test]
fn slow_backend_gets_504_in_time() {
    let a = echo("alpha");
    let lb = serve(&[&a], &["--backend-timeout", "300ms"]);
    let started = Instant::now();
    let r = get(lb.http(), "/delay/2000");
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        took < Duration::from_millis(1500),
        "504 came after {took:?}"
    );
    // A quick request still goes through.
    assert_eq!(get(lb.http(), "/delay/10").status, 200);
}

#[test]
fn smuggling_shapes_refused_and_never_forwarded() {
    let raw = RawBackend::start(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let url = raw.url();
    let lb = serve(&[], &["--backend", &url]);
    let cases: [(&str, &[u8]); 7] = [
        (
            "CL+TE",
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        ),
        (
            "TE+CL",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nG",
        ),
        (
            "conflicting CL",
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
        ),
        ("CL list", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3, 3\r\n\r\nabc"),
        (
            "obs-fold",
            b"GET / HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n b\r\n\r\n",
        ),
        (
            "bad chunk size",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "TE not chunked last",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        ),
    ];
    for (what, req) in cases {
        let (status, _, closed) = send_raw(lb.http(), req);
        assert_eq!(status, 400, "{what}");
        assert!(closed, "{what}: connection left open");
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        raw.accepted(),
        0,
        "forwarded: {}",
        String::from_utf8_lossy(&raw.received())
    );
    // The backend was reachable all along: a clean request does arrive.
    let r = get(lb.http(), "/clean");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert!(String::from_utf8_lossy(&raw.received()).starts_with("GET /clean HTTP/1.1\r\n"));
}

#[test]
fn oversized_backend_head_gets_502() {
    let mut reply = b"HTTP/1.1 200 OK\r\nX-Huge: ".to_vec();
    reply.extend(std::iter::repeat_n(b'h', 40_000));
    reply.extend_from_slice(b"\r\nContent-Length: 2\r\n\r\nok");
    let reply: &'static [u8] = Box::leak(reply.into_boxed_slice());
    let raw = RawBackend::start(reply);
    let url = raw.url();
    let lb = serve(&[], &["--backend", &url]);
    let r = get(lb.http(), "/");
    assert_eq!(
        r.status,
        502,
        "{}",
        r.header("x-huge").map(str::len).unwrap_or(0)
    );
}
