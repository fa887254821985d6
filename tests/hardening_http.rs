//! Hardening of the HTTP path against hostile clients and backends: early
//! answers do not eject backends, a started response is never followed by a
//! canned 502, idle pooled connections are swept, request bodies never
//! desynchronise a pooled connection, a 101 must answer a real upgrade with
//! the right accept key, slow clients are bounded, retries are bounded.

mod common;
#[path = "hardening/fakes.rs"]
mod fakes;

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::client::{get, HttpConn, RawBackend};
use common::proc::{echo, serve};
use fakes::{
    keepalive_backend, read_to_close, resetting_backend, sockets_toward, write_body_in_background,
};

#[test]
fn early_answer_to_a_large_body_does_not_eject_the_backend() {
    // Answers after the head, then closes with the body unread (a reset).
    let raw = RawBackend::start(
        b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large",
    );
    let url = raw.url();
    let lb = serve(&[], &["--backend", &url, "--workers", "1"]);
    for round in 0..4 {
        let mut conn = HttpConn::connect(lb.http());
        conn.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 8000000\r\n\r\n");
        let writer = write_body_in_background(&conn.stream, 8_000_000);
        let r = conn.read_response(false).expect("an answer");
        assert_eq!(
            (r.status, r.text().as_str()),
            (413, "too large"),
            "round {round}"
        );
        assert!(conn.is_closed(Duration::from_secs(5)), "round {round}");
        let _ = writer.join();
    }
    // Still in the pool: the next client reaches it.
    let r = get(lb.http(), "/");
    assert_eq!(r.status, 413, "{}", r.text());
}

#[test]
fn backend_reset_inside_a_started_response_only_closes() {
    let url = format!("http://{}", resetting_backend());
    let lb = serve(&[], &["--backend", &url, "--workers", "1"]);
    // One request: the reset rightly ejects the backend for a while.
    let mut conn = HttpConn::connect(lb.http());
    conn.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 50000000\r\n\r\n");
    let writer = write_body_in_background(&conn.stream, 50_000_000);
    // Raw bytes to the close: the head, part of the body, nothing else.
    let all = read_to_close(&mut conn);
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text:?}");
    assert_eq!(text.matches("HTTP/1.1").count(), 1, "{text:?}");
    assert!(text.ends_with("\r\n\r\npartial"), "{text:?}");
    let _ = writer.join();
}

#[test]
fn malformed_body_after_an_interim_response_only_closes() {
    let raw = RawBackend::start(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    );
    let url = raw.url();
    let lb = serve(&[], &["--backend", &url]);
    let mut conn = HttpConn::connect(lb.http());
    conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let interim = conn.read_response(false).expect("the 100");
    assert_eq!(interim.status, 100);
    // Nothing after the interim head: no final answer, just the close.
    let after = conn.read_response(false);
    assert!(after.is_none(), "{after:?}");
}

#[test]
fn idle_pooled_connections_are_swept() {
    let mut a = echo("alpha");
    let port = a.http().port();
    let lb = serve(&[&a], &["--workers", "1", "--backend-idle-timeout", "1s"]);
    // Three requests at once leave three pooled connections.
    let addr = lb.http();
    let threads: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || get(addr, "/delay/300").status))
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("join"), 200);
    }
    let pid = lb.child.id();
    assert!(sockets_toward(pid, port) >= 1, "nothing pooled");
    // The backend leaves: the pooled sockets go to CLOSE_WAIT.
    a.kill();
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut left = sockets_toward(pid, port);
    while left > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        left = sockets_toward(pid, port);
    }
    assert_eq!(left, 0, "sockets toward the gone backend still held");
}

#[test]
fn pooled_connections_to_a_departed_backend_are_closed() {
    let a = echo("reg-a");
    let port = a.http().port();
    let lb = serve(
        &[],
        &[
            "--workers",
            "1",
            "--register-token",
            "t0ken",
            "--backend-idle-timeout",
            "60s",
        ],
    );
    let mut ch = common::admin::control(lb.http(), Some("t0ken")).expect("control channel");
    let reply = common::admin::register(&mut ch, "a", port, 1);
    assert_eq!(reply["type"], "registered", "{reply}");
    let addr = lb.http();
    let threads: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || get(addr, "/delay/300").status))
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("join"), 200);
    }
    let pid = lb.child.id();
    assert!(sockets_toward(pid, port) >= 1, "nothing pooled");
    // Closing the channel takes the backend out of the pool at once; the
    // backend itself stays up, so only the balancer can close these.
    drop(ch);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut left = sockets_toward(pid, port);
    while left > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        left = sockets_toward(pid, port);
    }
    assert_eq!(left, 0, "pooled sockets to a departed backend still open");
}

fn smuggle_then_probe(lb: SocketAddr, probe_path: &str) -> (String, String) {
    let inner = "GET /headers HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer secret-of-a\r\n\r\n";
    let outer = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{inner}",
        inner.len()
    );
    let mut a = HttpConn::connect(lb);
    a.send(outer.as_bytes());
    let ra = a.read_response(false).expect("answer to a");
    // Let the balancer park a's backend connection before b asks.
    std::thread::sleep(Duration::from_millis(50));
    let mut b = HttpConn::connect(lb);
    b.send(format!("GET {probe_path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    let rb = b.read_response(false).expect("answer to b");
    (ra.text(), rb.text())
}

#[test]
fn body_on_a_get_is_not_smuggled_through_the_echo_backend() {
    let e = echo("alpha");
    let lb = serve(&[&e], &["--workers", "1"]);
    for _ in 0..3 {
        let (a, b) = smuggle_then_probe(lb.http(), "/probe");
        assert_eq!(a, "alpha\n");
        assert!(!b.contains("secret-of-a"), "b got a's request: {b:?}");
        assert_eq!(b, "alpha\n");
    }
}

#[test]
fn echo_backend_reads_and_drops_a_get_body() {
    // Straight to the echo, no balancer: the body is not a request.
    let e = echo("alpha");
    let inner = "GET /headers HTTP/1.1\r\nHost: t\r\nX-Smuggled: yes\r\n\r\n";
    let mut conn = HttpConn::connect(e.http());
    conn.send(
        format!(
            "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{inner}",
            inner.len()
        )
        .as_bytes(),
    );
    assert_eq!(conn.read_response(false).expect("first").text(), "alpha\n");
    let r = conn.get("/next");
    assert_eq!(r.text(), "alpha\n", "the body was served as a request");
}

#[test]
fn connection_of_a_backend_ignoring_a_get_body_is_not_reused() {
    let url = format!("http://{}", keepalive_backend(false));
    let lb = serve(&[], &["--backend", &url, "--workers", "1"]);
    for _ in 0..3 {
        let (a, b) = smuggle_then_probe(lb.http(), "/probe");
        assert_eq!(a, "GET / HTTP/1.1");
        assert_eq!(b, "GET /probe HTTP/1.1", "b got another request's answer");
    }
}

const WS_UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

#[test]
fn switching_protocols_to_a_plain_request_is_502() {
    let raw = RawBackend::start(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nraw bytes",
    );
    let url = raw.url();
    let lb = serve(&[], &["--backend", &url]);
    let r = get(lb.http(), "/plain");
    assert_eq!(r.status, 502, "{}", r.text());
}

#[test]
fn switching_protocols_with_a_wrong_accept_key_is_502() {
    let wrong = RawBackend::start(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
    );
    let right = RawBackend::start(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
    );
    for (raw, want) in [(&wrong, 502), (&right, 101)] {
        let url = raw.url();
        let lb = serve(&[], &["--backend", &url]);
        let mut conn = HttpConn::connect(lb.http());
        conn.send(WS_UPGRADE);
        let r = conn.read_response(false).expect("an answer");
        assert_eq!(r.status, want, "{}", r.text());
    }
}

#[test]
fn websocket_upgrade_expecting_100_continue_is_400() {
    // An upgrade has no body: `Expect` on one is refused, so the bytes the
    // client sends right after the head (a frame) are never lost.
    let e = echo("alpha");
    let lb = serve(&[&e], &["--workers", "1"]);
    let head =
        String::from_utf8_lossy(WS_UPGRADE).replace("\r\n\r\n", "\r\nExpect: 100-continue\r\n\r\n");
    let mut conn = HttpConn::connect(lb.http());
    // The head, then a masked text frame "hi" at once.
    conn.send(head.as_bytes());
    conn.send(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
    let r = conn.read_response(false).expect("an answer");
    assert_eq!(r.status, 400, "{}", r.text());
}

#[test]
fn silent_connection_is_closed_after_the_header_timeout() {
    let e = echo("alpha");
    let lb = serve(
        &[&e],
        &["--client-header-timeout", "1s", "--idle-timeout", "30s"],
    );
    let started = Instant::now();
    let mut conn = HttpConn::connect(lb.http());
    assert!(conn.is_closed(Duration::from_secs(5)), "still open");
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2500), "closed after {took:?}");
}

#[test]
fn trickled_body_gets_408_and_the_backend_stays_in() {
    let url = format!("http://{}", keepalive_backend(true));
    let lb = serve(
        &[],
        &[
            "--backend",
            &url,
            "--client-body-timeout",
            "1s",
            "--client-body-min-rate",
            "1k",
        ],
    );
    let mut conn = HttpConn::connect(lb.http());
    conn.send(b"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n");
    let mut w = conn.stream.try_clone().expect("clone");
    let trickle = std::thread::spawn(move || {
        for _ in 0..100 {
            if w.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let started = Instant::now();
    conn.stream
        .set_read_timeout(Some(Duration::from_secs(6)))
        .ok();
    let r = conn.read_response(false);
    let took = started.elapsed();
    let status = r.map(|r| r.status);
    assert_eq!(status, Some(408), "after {took:?}");
    assert!(took < Duration::from_secs(4), "408 after {took:?}");
    let _ = trickle.join();
    // The backend was not blamed.
    let r = get(lb.http(), "/after");
    assert_eq!((r.status, r.text().as_str()), (200, "GET /after HTTP/1.1"));
}

/// Attempts `wslb serve --max-retries retries` makes over `dead` refused
/// backends for one request (read from the admin API's failure counts), and
/// how long the answer took.
fn attempts_over_refused(dead: usize, retries: &str) -> (u16, u64, Duration) {
    // Sockets bound but not listening: connecting to them is refused, and
    // while they are held no other process (a parallel test's backend) can
    // be given their ports.
    let held: Vec<socket2::Socket> = (0..dead)
        .map(|_| {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
            s.bind(&any.into()).expect("bind");
            s
        })
        .collect();
    let ports: Vec<String> = held
        .iter()
        .map(|s| {
            let a = s
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .expect("addr");
            format!("http://{a}")
        })
        .collect();
    let mut args = vec!["--max-retries", retries, "--admin-listen", "127.0.0.1:0"];
    for p in &ports {
        args.push("--backend");
        args.push(p);
    }
    let lb = serve(&[], &args);
    let started = Instant::now();
    let r = get(lb.http(), "/");
    let took = started.elapsed();
    let failures: u64 = common::admin::backends(lb.addr("admin"))
        .iter()
        .map(|b| b["failures_total"].as_u64().unwrap_or(0))
        .sum();
    (r.status, failures, took)
}

#[test]
fn retries_are_bounded_by_the_flag_and_the_pool() {
    for (dead, retries, want) in [
        (3, "0", 1),
        (3, "1", 2),
        (3, "20", 3),
        (12, "20", 12),
        // More than the 8 a fixed record held: the flag still bounds.
        (12, "10", 11),
    ] {
        let (status, attempts, took) = attempts_over_refused(dead, retries);
        assert_eq!(status, 502, "{dead} backends, --max-retries {retries}");
        assert_eq!(attempts, want, "{dead} backends, --max-retries {retries}");
        assert!(took < Duration::from_secs(3), "took {took:?}");
    }
}
