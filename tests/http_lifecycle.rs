//! Integration tests of `wslb serve` over time: the slowloris guard, the
//! graceful drain on SIGTERM, a backend dying under POST traffic, and the
//! `--help` text listing every flag with its default.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::client::{get, HttpConn};
use common::proc::{echo, serve};

#[test]
fn slowloris_header_is_cut_off_in_time() {
    let a = echo("alpha");
    let lb = serve(&[&a], &["--client-header-timeout", "500ms"]);
    let mut stream = TcpStream::connect(lb.http()).expect("connect");
    stream.set_nodelay(true).ok();
    let mut reader = stream.try_clone().expect("clone");
    reader.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let started = Instant::now();
    let read = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut tmp = [0u8; 1024];
        loop {
            match reader.read(&mut tmp) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&tmp[..n]),
            }
        }
        (got, started.elapsed())
    });
    // One byte every 100 ms: the head would take 4+ seconds to finish.
    let head = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Slow: {}\r\n\r\n",
        "s".repeat(40)
    );
    for b in head.bytes() {
        if stream.write_all(&[b]).is_err() || started.elapsed() > Duration::from_secs(3) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (got, closed_after) = read.join().expect("reader");
    let text = String::from_utf8_lossy(&got);
    assert!(
        closed_after < Duration::from_millis(1500),
        "closed only after {closed_after:?}"
    );
    assert!(
        got.is_empty() || text.starts_with("HTTP/1.1 408 "),
        "{text}"
    );
    assert!(
        !text.contains("alpha"),
        "the slow request was served: {text}"
    );
}

#[test]
fn an_unfinished_head_gets_408_after_the_header_timeout() {
    let a = echo("alpha");
    let lb = serve(&[&a], &["--client-header-timeout", "500ms"]);
    let mut stream = TcpStream::connect(lb.http()).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let started = Instant::now();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n")
        .expect("write");
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(2000),
        "answered after {took:?}"
    );
}

#[test]
fn sigterm_drains_in_flight_request_and_exits_zero() {
    let a = echo("alpha");
    let mut lb = serve(&[&a], &["--drain-timeout", "5s"]);
    let addr = lb.http();
    let mut busy = HttpConn::connect(addr);
    busy.send(b"GET /delay/1500 HTTP/1.1\r\nHost: t\r\n\r\n");
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    lb.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused (or closed without an answer).
    match TcpStream::connect(addr) {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}"),
        Ok(mut s) => {
            s.set_read_timeout(Some(Duration::from_secs(2))).ok();
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
            let mut tmp = [0u8; 64];
            let n = s.read(&mut tmp).unwrap_or(0);
            panic!(
                "accepted during drain: {:?}",
                String::from_utf8_lossy(&tmp[..n])
            );
        }
    }
    let r = busy.read_response(false).expect("in-flight response");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "alpha delayed 1500ms\n")
    );
    // The answer tells the client not to send another request on it.
    assert_eq!(r.header("connection"), Some("close"), "{:?}", r.headers);
    assert!(
        busy.is_closed(Duration::from_secs(2)),
        "kept alive during drain"
    );
    let code = lb.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(0), "exit after {:?}", signalled.elapsed());
    assert!(
        signalled.elapsed() < Duration::from_secs(4),
        "{:?}",
        signalled.elapsed()
    );
}

#[test]
fn sigterm_with_idle_keep_alive_client_exits_promptly() {
    let a = echo("alpha");
    let mut lb = serve(&[&a], &["--drain-timeout", "5s"]);
    let mut idle = HttpConn::connect(lb.http());
    assert_eq!(idle.get("/").status, 200);
    let signalled = Instant::now();
    lb.signal(libc::SIGTERM);
    assert!(
        idle.is_closed(Duration::from_secs(2)),
        "idle client kept open"
    );
    assert_eq!(lb.wait_exit(Duration::from_secs(3)), Some(0));
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "{:?}",
        signalled.elapsed()
    );
}

#[test]
fn killed_backend_under_post_traffic_gives_no_errors() {
    let (a, mut b) = (echo("alpha"), echo("beta"));
    let lb = serve(&[&a, &b], &["--algorithm", "round-robin", "--workers", "1"]);
    let body = vec![b'p'; 256 * 1024];
    let post = |conn: &mut HttpConn| {
        conn.send(
            format!(
                "POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        conn.send(&body);
        conn.read_response(false).expect("response")
    };
    let mut conn = HttpConn::connect(lb.http());
    for _ in 0..6 {
        assert_eq!(post(&mut conn).status, 200);
    }
    b.kill();
    std::thread::sleep(Duration::from_millis(100));
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let mut c = HttpConn::connect(lb.http());
        let r = post(&mut c);
        statuses.push(r.status);
        if r.status == 200 {
            assert_eq!(r.body.len(), body.len());
        }
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(get(lb.http(), "/").text(), "alpha\n");
}

#[test]
fn help_lists_every_serve_flag_with_its_default() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wslb"))
        .args(["serve", "--help"])
        .output()
        .expect("run wslb serve --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    // (flag, default shown in help; None for flags that have none).
    let flags: &[(&str, Option<&str>)] = &[
        ("--listen", None),
        ("--tls-listen", None),
        ("--tls-cert", None),
        ("--tls-key", None),
        ("--tls-sni", None),
        ("--workers", Some("number of cores")),
        ("--no-pin", None),
        ("--backend", None),
        ("--algorithm", Some("random")),
        ("--sticky", Some("none")),
        ("--max-header-bytes", Some("16k")),
        ("--max-connections", Some("9000")),
        ("--client-header-timeout", Some("10s")),
        ("--backend-connect-timeout", Some("2s")),
        ("--backend-timeout", Some("60s")),
        ("--idle-timeout", Some("60s")),
        ("--drain-timeout", Some("10s")),
        ("--max-retries", Some("2")),
        ("--ws-mode", Some("inspect")),
        ("--max-message-size", Some("16m")),
        ("--ws-validate-utf8", None),
        ("--ws-ping-interval", Some("30s")),
        ("--ws-pong-timeout", Some("10s")),
        ("--ws-tunnel-idle-timeout", Some("1h")),
        ("--ws-handshake-timeout", Some("10s")),
        ("--allowed-origins", None),
        ("--admin-listen", Some("127.0.0.1:9090")),
        ("--admin-token", None),
        ("--control-listen", None),
        ("--register-token", None),
        ("--heartbeat-timeout", Some("15s")),
        ("--balancer-id", Some("random")),
        ("--log-level", Some("info")),
        ("--allow-backend-cidr", None),
        ("--max-backends", Some("1000")),
        ("--backend-idle-timeout", Some("4s")),
        ("--client-body-timeout", Some("30s")),
        ("--client-body-min-rate", Some("8k")),
        ("--max-connections-per-ip", Some("1000")),
        ("--trusted-proxies", None),
        ("--admin-max-connections", Some("64")),
        ("--admin-request-timeout", Some("10s")),
        ("--ws-send-queue", Some("1m")),
        ("--conn-id-header", Some("X-Wslb-Conn")),
        ("--backend-publish", Some("all")),
        ("--health-check", None),
        ("--health-check-interval", Some("5s")),
        ("--health-check-timeout", Some("2s")),
        ("--health-check-rise", Some("2")),
        ("--health-check-fall", Some("3")),
        ("--config", None),
        ("--upgrade-socket", None),
        ("--upgrade", None),
        ("--backend-ca", Some("the system roots")),
        ("--throttle-bps", Some("0")),
        ("--access-log", Some("stderr")),
        ("--access-log-format", Some("text")),
        ("--fallback", Some("off")),
        ("--fallback-retry", Some("2s")),
        ("--fallback-resume-timeout", Some("30s")),
        ("--fallback-buffer", Some("1m")),
        ("--log-file", None),
    ];
    // Each flag's entry runs from its name to the next entry.
    let entry = |flag: &str| -> String {
        let start = help
            .find(&format!(" {flag} "))
            .or_else(|| help.find(&format!(" {flag}\n")))
            .or_else(|| help.find(&format!(" {flag} <")))
            .unwrap_or_else(|| panic!("{flag} missing from --help:\n{help}"));
        let rest = &help[start + flag.len() + 1..];
        let end = rest.find("\n  -").unwrap_or(rest.len());
        rest[..end].split_whitespace().collect::<Vec<_>>().join(" ")
    };
    for &(flag, default) in flags {
        let text = entry(flag);
        if let Some(d) = default {
            assert!(text.contains(&format!("[default: {d}]")), "{flag}: {text}");
        }
    }
    // Every flag the help shows is in the list above (or is --log-format
    // and --help, which have nothing to check), so a new flag needs an entry.
    for line in help
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
    {
        let name = line
            .split([' ', ','])
            .find(|t| t.starts_with("--"))
            .unwrap_or(line);
        assert!(
            flags.iter().any(|(f, _)| *f == name) || ["--log-format", "--help"].contains(&name),
            "{name} has no entry in this test"
        );
    }
}

#[test]
fn idle_keep_alive_client_closed_after_idle_timeout() {
    let a = echo("alpha");
    let lb = serve(&[&a], &["--idle-timeout", "400ms"]);
    let mut conn = HttpConn::connect(lb.http());
    assert_eq!(conn.get("/").status, 200);
    let started = Instant::now();
    assert!(
        conn.is_closed(Duration::from_secs(3)),
        "idle connection kept open"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "{took:?}"
    );
}
