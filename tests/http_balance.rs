//! Integration tests of how `wslb serve` spreads HTTP requests: each pick
//! algorithm, weights, keep-alive reuse on the client and backend sides, and
//! a backend killed mid-test. Real binaries over loopback sockets.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::client::{get, HttpConn};
use common::proc::{echo, serve};

/// Backend name of each response ("alpha\n" -> "alpha").
fn names(conn: &mut HttpConn, n: usize, path: &str) -> Vec<String> {
    (0..n)
        .map(|_| {
            let r = conn.get(path);
            assert_eq!(r.status, 200, "{}", r.text());
            r.text().trim().to_string()
        })
        .collect()
}

fn counts(seen: &[String]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for s in seen {
        *m.entry(s.clone()).or_insert(0) += 1;
    }
    m
}

#[test]
fn random_spreads_over_three_backends() {
    let (a, b, c) = (echo("alpha"), echo("beta"), echo("gamma"));
    let lb = serve(&[&a, &b, &c], &["--algorithm", "random"]);
    let mut conn = HttpConn::connect(lb.http());
    let seen = names(&mut conn, 90, "/");
    let m = counts(&seen);
    assert_eq!(m.len(), 3, "{m:?}");
    for name in ["alpha", "beta", "gamma"] {
        // Expected 30 each; below 10 has a probability far under 1e-6.
        assert!(m[name] >= 10, "{name} got too few: {m:?}");
    }
}

#[test]
fn round_robin_cycles_in_order() {
    let (a, b, c) = (echo("alpha"), echo("beta"), echo("gamma"));
    let lb = serve(
        &[&a, &b, &c],
        &["--algorithm", "round-robin", "--workers", "1"],
    );
    let mut conn = HttpConn::connect(lb.http());
    let seen = names(&mut conn, 12, "/");
    let first: Vec<&String> = seen[..3].iter().collect();
    assert!(
        first[0] != first[1] && first[1] != first[2] && first[0] != first[2],
        "{seen:?}"
    );
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s, &seen[i % 3], "not a cycle: {seen:?}");
    }
}

#[test]
fn round_robin_honours_weights_one_to_three() {
    let (a, b) = (echo("light"), echo("heavy"));
    let heavy = format!("http://{},weight=3", b.http());
    let lb = serve(
        &[&a],
        &[
            "--algorithm",
            "round-robin",
            "--workers",
            "1",
            "--backend",
            &heavy,
        ],
    );
    let mut conn = HttpConn::connect(lb.http());
    let seen = names(&mut conn, 40, "/");
    let m = counts(&seen);
    assert_eq!(m.get("light"), Some(&10), "{m:?}");
    assert_eq!(m.get("heavy"), Some(&30), "{m:?}");
    // Smooth: every window of 4 picks holds exactly one "light".
    for w in seen.chunks(4) {
        assert_eq!(w.iter().filter(|s| *s == "light").count(), 1, "{seen:?}");
    }
}

#[test]
fn fewest_connections_avoids_busy_backends() {
    let (a, b, c) = (echo("alpha"), echo("beta"), echo("gamma"));
    let lb = serve(&[&a, &b, &c], &["--algorithm", "fewest-connections"]);
    // Two slow requests hold two backends busy.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut s = HttpConn::connect(lb.http());
        s.send(b"GET /delay/2000 HTTP/1.1\r\nHost: test\r\n\r\n");
        slow.push(s);
        std::thread::sleep(Duration::from_millis(150));
    }
    let started = std::time::Instant::now();
    let mut quick = HttpConn::connect(lb.http());
    let seen = names(&mut quick, 20, "/");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "quick requests too slow to prove anything: {:?}",
        started.elapsed()
    );
    let busy: Vec<String> = slow
        .iter_mut()
        .map(|s| {
            let r = s.read_response(false).expect("slow response");
            assert_eq!(r.status, 200);
            r.text()
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_ne!(
        busy[0], busy[1],
        "the second slow request joined a busy backend"
    );
    let m = counts(&seen);
    assert_eq!(
        m.len(),
        1,
        "quick requests went to busy backends too: {m:?} busy={busy:?}"
    );
    assert!(!busy.contains(&seen[0]), "{m:?} busy={busy:?}");
}

#[test]
fn keep_alive_reused_on_client_and_backend_sides() {
    let a = echo("alpha");
    let lb = serve(&[&a], &["--workers", "1"]);
    let mut conn = HttpConn::connect(lb.http());
    let local = conn.stream.local_addr().expect("local addr");
    for i in 1..=20u32 {
        let r = conn.get("/");
        assert_eq!(r.status, 200);
        assert_ne!(r.header("connection"), Some("close"));
        // The echo counts the requests served on its side of the connection:
        // one pooled backend connection carries them all.
        assert_eq!(
            r.header("x-conn-requests"),
            Some(i.to_string().as_str()),
            "request {i}"
        );
    }
    assert_eq!(conn.stream.local_addr().expect("local addr"), local);
    drop(conn);
    // A new client connection gets the parked backend connection.
    let r = get(lb.http(), "/");
    assert_eq!(r.header("x-conn-requests"), Some("21"));
}

#[test]
fn killed_backend_is_avoided_without_errors() {
    let (a, mut b, c) = (echo("alpha"), echo("beta"), echo("gamma"));
    let lb = serve(&[&a, &b, &c], &["--algorithm", "round-robin"]);
    // Warm up: every backend has parked keep-alive connections.
    let mut conn = HttpConn::connect(lb.http());
    let warm = counts(&names(&mut conn, 30, "/"));
    assert_eq!(warm.len(), 3, "{warm:?}");
    b.kill();
    let mut statuses = Vec::new();
    let mut seen = Vec::new();
    for i in 0..60 {
        // Mix reused and fresh client connections.
        let r = if i % 2 == 0 {
            conn.get("/")
        } else {
            get(lb.http(), "/")
        };
        statuses.push(r.status);
        seen.push(r.text().trim().to_string());
    }
    assert!(
        statuses.iter().all(|s| *s == 200),
        "errors after a backend died: {statuses:?}"
    );
    assert!(!seen.iter().any(|s| s == "beta"), "{seen:?}");
    let m = counts(&seen);
    assert!(m.get("alpha").is_some_and(|n| *n >= 15), "{m:?}");
    assert!(m.get("gamma").is_some_and(|n| *n >= 15), "{m:?}");
}
