//! Active health checks of static backends (`--health-check`): a backend
//! whose check fails `fall` times in a row leaves the pick, one that passes
//! `rise` times comes back; refused and silent backends fail; the state
//! shows in `/api/backends`. Real binaries over loopback sockets, plus a
//! small backend in the test whose check answer can be switched.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::admin::{backends, wait_for};
use common::client::HttpConn;
use common::proc::{echo, serve_urls, Proc};

const CHECK_PATH: &str = "/status/200";

/// A backend answering the check path with a switchable status and every
/// other request with 200 "flip", counting those.
struct FlipBackend {
    addr: SocketAddr,
    check_status: Arc<AtomicU16>,
    served: Arc<AtomicUsize>,
    checks: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FlipBackend {
    fn start(check_status: u16) -> FlipBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let b = FlipBackend {
            addr,
            check_status: Arc::new(AtomicU16::new(check_status)),
            served: Arc::new(AtomicUsize::new(0)),
            checks: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (status, served, checks, stop) = (
            b.check_status.clone(),
            b.served.clone(),
            b.checks.clone(),
            b.stop.clone(),
        );
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((s, _)) => {
                        let (status, served, checks) =
                            (status.clone(), served.clone(), checks.clone());
                        std::thread::spawn(move || serve_conn(s, &status, &served, &checks));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        b
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FlipBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Answers requests on one connection until it closes (keep-alive).
fn serve_conn(mut s: TcpStream, status: &AtomicU16, served: &AtomicUsize, checks: &AtomicUsize) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let (code, body) = if head.starts_with(&format!("GET {CHECK_PATH} ")) {
            checks.fetch_add(1, Ordering::Relaxed);
            (status.load(Ordering::Relaxed), "check\n")
        } else {
            served.fetch_add(1, Ordering::Relaxed);
            (200, "flip\n")
        };
        let reply = format!(
            "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// `wslb serve` with the given backend URLs, fast checks and an admin API.
fn balancer(urls: &[String], extra: &[&str]) -> Proc {
    let mut flags = vec![
        "--admin-listen",
        "127.0.0.1:0",
        "--algorithm",
        "round-robin",
    ];
    flags.extend_from_slice(extra);
    serve_urls(urls, &flags)
}

const FAST_CHECKS: &[&str] = &[
    "--health-check",
    CHECK_PATH,
    "--health-check-interval",
    "100ms",
    "--health-check-timeout",
    "300ms",
    "--health-check-rise",
    "2",
    "--health-check-fall",
    "2",
];

fn entry<'a>(list: &'a [serde_json::Value], url: &str) -> &'a serde_json::Value {
    list.iter()
        .find(|b| b["id"] == url || b["bindings"][0] == url)
        .unwrap_or_else(|| panic!("{url} not listed: {list:?}"))
}

/// Bodies of `n` requests on one keep-alive connection.
fn bodies(lb: &Proc, n: usize) -> Vec<String> {
    let mut c = HttpConn::connect(lb.http());
    (0..n)
        .map(|_| {
            let r = c.get("/");
            assert_eq!(r.status, 200, "{}", r.text());
            r.text().trim().to_string()
        })
        .collect()
}

#[test]
fn failing_backend_leaves_the_pick_and_rises_back() {
    let steady = echo("steady");
    let flip = FlipBackend::start(503);
    let steady_url = format!("http://{}", steady.http());
    let lb = balancer(&[steady_url.clone(), flip.url()], FAST_CHECKS);
    let admin = lb.addr("admin");

    wait_for(admin, Duration::from_secs(10), "flip failing", |l| {
        entry(l, &flip.url())["health"] == "failing" && entry(l, &steady_url)["health"] == "passing"
    });
    let list = backends(admin);
    assert_eq!(entry(&list, &flip.url())["state"], "down", "{list:?}");
    assert_eq!(entry(&list, &steady_url)["state"], "up", "{list:?}");
    assert!(flip.checks.load(Ordering::Relaxed) >= 2);

    // Out of the pick: every request goes to the steady backend.
    let served_before = flip.served.load(Ordering::Relaxed);
    let seen = bodies(&lb, 20);
    assert!(seen.iter().all(|b| b == "steady"), "{seen:?}");
    assert_eq!(flip.served.load(Ordering::Relaxed), served_before);

    // Passing again: back after `rise` checks, and picked again.
    flip.check_status.store(200, Ordering::Relaxed);
    wait_for(admin, Duration::from_secs(10), "flip passing", |l| {
        entry(l, &flip.url())["health"] == "passing"
    });
    assert_eq!(entry(&backends(admin), &flip.url())["state"], "up");
    let seen = bodies(&lb, 20);
    let flips = seen.iter().filter(|b| *b == "flip").count();
    assert!((5..=15).contains(&flips), "round-robin over two: {seen:?}");
}

#[test]
fn refused_and_silent_backends_fail_their_checks() {
    let steady = echo("steady");
    let steady_url = format!("http://{}", steady.http());
    // A port nobody listens on.
    let refused_url = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    // A listener that accepts (the kernel does) but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_url = format!("http://{}", silent.local_addr().expect("addr"));
    let lb = balancer(
        &[steady_url.clone(), refused_url.clone(), silent_url.clone()],
        FAST_CHECKS,
    );
    let admin = lb.addr("admin");
    wait_for(admin, Duration::from_secs(10), "both failing", |l| {
        entry(l, &refused_url)["health"] == "failing"
            && entry(l, &silent_url)["health"] == "failing"
    });
    let list = backends(admin);
    assert_eq!(entry(&list, &steady_url)["health"], "passing", "{list:?}");
    let seen = bodies(&lb, 10);
    assert!(seen.iter().all(|b| b == "steady"), "{seen:?}");
    drop(silent);
}

#[test]
fn without_checks_backends_are_unchecked() {
    let steady = echo("steady");
    let steady_url = format!("http://{}", steady.http());
    let lb = balancer(std::slice::from_ref(&steady_url), &[]);
    std::thread::sleep(Duration::from_millis(300));
    let list = backends(lb.addr("admin"));
    assert_eq!(entry(&list, &steady_url)["health"], "unchecked", "{list:?}");
    assert_eq!(entry(&list, &steady_url)["state"], "up", "{list:?}");
}

#[test]
fn bad_check_settings_are_refused_at_start() {
    for (flags, needle) in [
        (vec!["--health-check", "health"], "must start with /"),
        (
            vec!["--health-check", "/h", "--health-check-rise", "0"],
            "--health-check-rise",
        ),
        (
            vec!["--health-check", "/h", "--health-check-fall", "101"],
            "--health-check-fall",
        ),
        (
            vec!["--health-check", "/h", "--health-check-timeout", "0s"],
            "--health-check-timeout",
        ),
    ] {
        let mut args = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--backend",
            "http://127.0.0.1:1",
        ];
        args.extend(flags.iter().copied());
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wslb"))
            .args(&args)
            .output()
            .expect("run wslb");
        assert!(!out.status.success(), "{args:?} started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// `POST /api/reload` on `admin`: the status and body.
fn reload(admin: SocketAddr) -> (u16, String) {
    let mut c = HttpConn::connect(admin);
    c.send(
        b"POST /api/reload HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    let r = c.read_response(false).expect("reload answer");
    (r.status, r.text())
}

#[test]
fn a_reload_turns_checks_on_and_off() {
    let steady = echo("steady");
    let flip = FlipBackend::start(503);
    let steady_url = format!("http://{}", steady.http());
    let dir = std::env::temp_dir().join(format!("wslb-hc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("wslb.toml");
    let base = format!(
        "listen = [\"127.0.0.1:0\"]\nadmin-listen = \"127.0.0.1:0\"\nno-pin = true\nworkers = 2\nalgorithm = \"round-robin\"\nbackend = [\"{steady_url}\", \"{}\"]\n",
        flip.url()
    );
    std::fs::write(&file, &base).expect("write config");
    let lb = Proc::start(&["serve", "--config", file.to_str().expect("utf-8 path")]);
    let admin = lb.addr("admin");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(entry(&backends(admin), &flip.url())["health"], "unchecked");

    let checks = "health-check = \"/status/200\"\nhealth-check-interval = \"100ms\"\nhealth-check-fall = 2\nhealth-check-rise = 2\n";
    std::fs::write(&file, format!("{base}{checks}")).expect("write config");
    let (status, body) = reload(admin);
    assert_eq!(status, 200, "{body}");
    wait_for(admin, Duration::from_secs(10), "flip failing", |l| {
        entry(l, &flip.url())["health"] == "failing"
    });
    assert!(bodies(&lb, 10).iter().all(|b| b == "steady"));

    std::fs::write(&file, &base).expect("write config");
    let (status, body) = reload(admin);
    assert_eq!(status, 200, "{body}");
    wait_for(
        admin,
        Duration::from_secs(10),
        "flip unchecked again",
        |l| {
            entry(l, &flip.url())["health"] == "unchecked" && entry(l, &flip.url())["state"] == "up"
        },
    );
    assert!(bodies(&lb, 10).iter().any(|b| b == "flip"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_backends_are_checked_over_verified_tls() {
    let cert = common::certs::generate(&["localhost"]);
    let other_ca = common::certs::generate(&["localhost"]);
    let e = echo("secure");
    let path = |p: &std::path::Path| p.to_str().expect("utf-8 path").to_string();
    // A TLS listener in front of the echo backend plays the TLS backend.
    let middle = common::proc::serve(
        &[&e],
        &[
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            &path(&cert.cert),
            "--tls-key",
            &path(&cert.key),
        ],
    );
    let url = format!("https://localhost:{}", middle.addr("https").port());
    for (ca, want) in [
        (path(&cert.cert), "passing"),
        (path(&other_ca.cert), "failing"),
    ] {
        let mut flags: Vec<&str> = FAST_CHECKS.to_vec();
        flags.extend(["--backend-ca", ca.as_str()]);
        let lb = balancer(std::slice::from_ref(&url), &flags);
        wait_for(lb.addr("admin"), Duration::from_secs(10), want, |l| {
            entry(l, &url)["health"] == want
        });
    }
    cert.cleanup();
    other_ca.cleanup();
}
