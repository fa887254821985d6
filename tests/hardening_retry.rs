//! Hardening of retries and of the exchange timing: a stale pooled
//! connection earns one uncounted retry on a fresh connection (so a request
//! that makes the backend close is not replayed once per pooled one), a
//! backend that gives up on a slow client's body is not blamed, the
//! backend timeout runs from the end of the request body, a backend
//! that takes none of a body is timed out, and interim responses are
//! bounded (and never sent to an HTTP/1.0 client).

mod common;
#[path = "hardening/fakes.rs"]
mod fakes;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::client::{HttpConn, RawBackend};
use common::proc::serve;
use fakes::{
    body_timeout_backend, keepalive_backend, killed_by_backend, silent_backend,
    write_body_in_background,
};

/// `n` concurrent GETs of `path`, each answered 200: they leave up to `n`
/// pooled backend connections.
fn fill_pool(lb: std::net::SocketAddr, n: usize, path: &'static str) {
    let threads: Vec<_> = (0..n)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = HttpConn::connect(lb);
                c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
                c.read_response(false).map(|r| r.status)
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("join"), Some(200));
    }
}

#[test]
fn a_request_that_kills_the_backend_is_not_replayed_per_pooled_connection() {
    let kills = Arc::new(AtomicUsize::new(0));
    let url = format!("http://{}", killed_by_backend(kills.clone()));
    let lb = serve(
        &[],
        &["--backend", &url, "--workers", "1", "--max-retries", "0"],
    );
    // 20 concurrent requests leave 20 pooled connections.
    fill_pool(lb.http(), 20, "/ok");
    let mut c = HttpConn::connect(lb.http());
    c.send(b"POST /kill HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    let status = c.read_response(false).map(|r| r.status);
    assert_eq!(status, Some(502));
    std::thread::sleep(Duration::from_millis(300));
    let n = kills.load(Ordering::SeqCst);
    // The pooled attempt, then one on a fresh connection, and no more.
    assert!(
        n <= 2,
        "one POST reached the backend {n} times (--max-retries 0)"
    );
}

#[test]
fn a_get_on_stale_pooled_connections_is_retried_without_a_502() {
    // Closes each connection after its answer, without saying so: every
    // pooled connection goes stale at once.
    let raw = RawBackend::start(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let url = raw.url();
    let lb = serve(
        &[],
        &["--backend", &url, "--workers", "1", "--max-retries", "0"],
    );
    for round in 0..5 {
        fill_pool(lb.http(), 4, "/fill");
        // Let the backend's closes arrive; well under the 1 s after which
        // even a GET peeks a pooled connection before reuse.
        std::thread::sleep(Duration::from_millis(50));
        let mut c = HttpConn::connect(lb.http());
        let r = c.get("/after");
        assert_eq!((r.status, r.text().as_str()), (200, "ok"), "round {round}");
    }
}

#[test]
fn a_slow_body_the_backend_gives_up_on_does_not_blame_it() {
    let url = format!(
        "http://{}",
        body_timeout_backend(Duration::from_millis(300))
    );
    let lb = serve(
        &[],
        &[
            "--backend",
            &url,
            "--workers",
            "1",
            "--admin-listen",
            "127.0.0.1:0",
        ],
    );
    for round in 0..3 {
        let mut c = HttpConn::connect(lb.http());
        c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nx");
        let status = c.read_response(false).map(|r| r.status);
        assert_eq!(status, Some(502), "round {round}");
        assert!(c.is_closed(Duration::from_secs(5)), "round {round}");
    }
    let b = &common::admin::backends(lb.addr("admin"))[0];
    assert_eq!(
        b["failures_total"].as_u64(),
        Some(0),
        "slow clients got the backend blamed: {b}"
    );
    // Still in the pool: a client that sends its body gets through.
    let mut c = HttpConn::connect(lb.http());
    c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    let r = c.read_response(false).expect("an answer");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
}

#[test]
fn an_upload_longer_than_the_backend_timeout_succeeds() {
    // The backend answers only after the whole body.
    let url = format!("http://{}", keepalive_backend(true));
    let lb = serve(
        &[],
        &[
            "--backend",
            &url,
            "--backend-timeout",
            "1s",
            "--client-body-timeout",
            "10s",
        ],
    );
    let mut c = HttpConn::connect(lb.http());
    c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 20000\r\n\r\n");
    let mut w = c.stream.try_clone().expect("clone");
    // 20 KB over 2 s: 10 KB/s, above the 8 KiB/s minimum rate.
    let writer = std::thread::spawn(move || {
        for _ in 0..20 {
            if w.write_all(&[b'x'; 1000]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let r = c.read_response(false).expect("an answer");
    let _ = writer.join();
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "POST /up HTTP/1.1"),
        "an upload within every client limit"
    );
}

#[test]
fn a_backend_that_takes_no_body_and_never_answers_is_504() {
    let url = format!("http://{}", silent_backend());
    let lb = serve(
        &[],
        &[
            "--backend",
            &url,
            "--backend-timeout",
            "1s",
            "--client-body-timeout",
            "60s",
            "--admin-listen",
            "127.0.0.1:0",
        ],
    );
    let started = Instant::now();
    let mut c = HttpConn::connect(lb.http());
    c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n");
    // Far more than the socket buffers toward the backend hold.
    let writer = write_body_in_background(&c.stream, 100_000_000);
    c.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok();
    let status = c.read_response(false).map(|r| r.status);
    let took = started.elapsed();
    assert_eq!(status, Some(504), "after {took:?}");
    assert!(took < Duration::from_secs(5), "504 after {took:?}");
    let _ = writer.join();
    // A timeout does not eject.
    let b = &common::admin::backends(lb.addr("admin"))[0];
    assert_eq!(b["failures_total"].as_u64(), Some(0), "{b}");
}

#[test]
fn endless_interim_responses_end_the_exchange() {
    // A backend that answers only with 1xx heads, many of them.
    let mut reply = Vec::new();
    for _ in 0..50 {
        reply.extend_from_slice(b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n");
    }
    let raw = RawBackend::start(Box::leak(reply.into_boxed_slice()));
    let url = raw.url();
    let lb = serve(&[], &["--backend", &url, "--backend-timeout", "30s"]);
    let started = Instant::now();
    let mut conn = HttpConn::connect(lb.http());
    conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut interim = 0;
    while let Some(r) = conn.read_response(false) {
        assert_eq!(r.status, 103, "only interim heads, then the close");
        interim += 1;
    }
    assert!(interim <= 8, "{interim} interim responses relayed");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn no_interim_responses_to_an_http_1_0_client() {
    let raw = RawBackend::start(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n\
          HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    );
    let url = raw.url();
    let lb = serve(&[], &["--backend", &url]);
    let mut conn = HttpConn::connect(lb.http());
    conn.send(b"GET / HTTP/1.0\r\nHost: t\r\n\r\n");
    let r = conn.read_response(false).expect("an answer");
    assert_eq!(r.status, 200, "the 1xx is not for HTTP/1.0");
}
