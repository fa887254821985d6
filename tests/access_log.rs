//! The access log through the real binary: one line per HTTP request (its
//! fields, JSON that parses, hostile bytes in a path escaped), one per
//! WebSocket session at its end, lines for requests refused before any
//! backend, SIGUSR1 reopening a renamed file, stderr by default and nothing
//! with `--access-log off`, and a stderr nobody reads costing lines (counted),
//! never requests.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::client::{get, raw_status, HttpConn};
use common::proc::{echo, serve};
use common::ws_client::WsConn;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wslb-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Waits (5 s at most) until `path` holds `n` lines matching `keep`, and
/// returns them.
fn lines(path: &Path, n: usize, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let got: Vec<String> = text.lines().filter(|l| keep(l)).map(String::from).collect();
        if got.len() >= n || Instant::now() > deadline {
            assert_eq!(got.len(), n, "lines in {}:\n{text}", path.display());
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn json_lines(path: &Path, n: usize, kind: &str) -> Vec<serde_json::Value> {
    let want = format!("\"kind\":\"{kind}\"");
    lines(path, n, |l| l.contains(&want))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn http_requests_are_logged_in_json_with_hostile_bytes_escaped() {
    let dir = temp_dir("al-json");
    let path = dir.join("access.log");
    let e = echo("e1");
    let p = path.to_str().unwrap();
    let lb = serve(&[&e], &["--access-log", p, "--access-log-format", "json"]);
    let mut c = HttpConn::connect(lb.http());
    for _ in 0..3 {
        assert_eq!(c.get("/hello?x=1").status, 200);
    }
    let hostile = b"GET /q\"u\\o\xc3\xa9 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(lb.http(), hostile), 200);
    let all = json_lines(&path, 4, "http");
    let backend = format!("http://{}", e.http());
    let mut plain = all.iter().filter(|v| v["path"] == "/hello?x=1");
    let first = plain.next().expect("a /hello line");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["status"], 200);
    assert_eq!(first["backend"], backend.as_str());
    assert_eq!(first["retries"], 0);
    assert!(first["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    let bytes_in = first["bytes_in"].as_u64().unwrap();
    let bytes_out = first["bytes_out"].as_u64().unwrap();
    assert!(bytes_in > 20 && bytes_out > 20, "{first}");
    let backend_ms = first["backend_ms"].as_f64().unwrap();
    let total_ms = first["total_ms"].as_f64().unwrap();
    assert!(backend_ms > 0.0 && backend_ms <= total_ms, "{first}");
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(plain.count(), 2);
    let odd = all.iter().find(|v| v["path"] != "/hello?x=1").unwrap();
    assert_eq!(odd["path"], "/q\"u\\o\u{e9}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn text_lines_escape_and_refusals_are_logged_without_a_backend() {
    let dir = temp_dir("al-text");
    let path = dir.join("access.log");
    let p = path.to_str().unwrap();
    // No backend at all: every proxied request is refused with 503.
    // One worker: connections are counted against the address in the
    // order they arrive.
    let lb = serve(
        &[],
        &[
            "--access-log",
            p,
            "--max-connections-per-ip",
            "2",
            "--workers",
            "1",
        ],
    );
    assert_eq!(get(lb.http(), "/nothing").status, 503);
    assert_eq!(get(lb.http(), "/_lb/nope").status, 404);
    assert_eq!(
        raw_status(lb.http(), b"GET /a\x01b HTTP/1.1\r\nHost: t\r\n\r\n"),
        400
    );
    assert_eq!(
        raw_status(
            lb.http(),
            b"GET /q\"\\\xc3\xa9 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        ),
        503
    );
    // Two connections held open: the third from the address gets a 429.
    let _held = [
        TcpStream::connect(lb.http()).unwrap(),
        TcpStream::connect(lb.http()).unwrap(),
    ];
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        raw_status(lb.http(), b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"),
        429
    );
    let got = lines(&path, 5, |l| l.contains(" kind=http "));
    for l in &got {
        assert!(l.is_ascii() && !l.contains('\r'), "{l:?}");
        assert!(l.contains(" backend=\"-\" backend_ms=- "), "{l}");
    }
    let find = |status: &str| {
        got.iter()
            .find(|l| l.contains(&format!(" status={status} ")))
            .unwrap_or_else(|| panic!("no {status} line in {got:?}"))
            .clone()
    };
    assert!(find("404").contains(" method=\"GET\" path=\"/_lb/nope\" "));
    assert!(find("400").contains(" method=\"-\" path=\"-\" "));
    assert!(find("429").contains(" method=\"-\" path=\"-\" "));
    let hostile = got
        .iter()
        .find(|l| l.contains("path=\"/q"))
        .expect("hostile line");
    assert!(
        hostile.contains(r#" path="/q\"\\\xc3\xa9" status=503 "#),
        "{hostile}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_websocket_session_gets_a_line_at_its_end() {
    let dir = temp_dir("al-ws");
    let path = dir.join("access.log");
    let e = echo("e1");
    let p = path.to_str().unwrap();
    let lb = serve(&[&e], &["--access-log", p, "--access-log-format", "json"]);
    let mut ws = WsConn::connect(lb.http());
    for i in 0..3 {
        assert!(ws.send_text(&format!("hello {i}")));
        let m = ws.recv_msg();
        assert_eq!(m.payload, format!("hello {i}").as_bytes());
    }
    assert!(ws.send_close(1000, "bye"));
    assert_eq!(ws.recv_close().map(|c| c.0), Some(1000));
    let got = json_lines(&path, 1, "ws");
    let s = &got[0];
    assert_eq!(s["close_code"], 1000);
    assert_eq!(s["closed_by"], "client");
    assert_eq!(s["messages_in"], 3);
    assert_eq!(s["messages_out"], 3);
    assert_eq!(s["backend"], format!("http://{}", e.http()).as_str());
    assert!(s["bytes_in"].as_u64().unwrap() > 3 * 7);
    assert!(s["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(!s["id"].as_str().unwrap().is_empty());
    // The upgrade itself is a request line with status 101.
    let up = json_lines(&path, 1, "http");
    assert_eq!(up[0]["status"], 101);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigusr1_reopens_a_renamed_file() {
    let dir = temp_dir("al-rotate");
    let path = dir.join("access.log");
    let e = echo("e1");
    let lb = serve(&[&e], &["--access-log", path.to_str().unwrap()]);
    assert_eq!(get(lb.http(), "/before").status, 200);
    lines(&path, 1, |l| l.contains("path=\"/before\""));
    let rotated = dir.join("access.log.1");
    std::fs::rename(&path, &rotated).expect("rename");
    lb.signal(libc::SIGUSR1);
    // The writer looks at the request within a fraction of a second.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(get(lb.http(), "/after").status, 200);
    lines(&path, 1, |l| l.contains("path=\"/after\""));
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("/before") && !old.contains("/after"), "{old}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts `wslb serve` (one worker, an admin listener) with its stderr
/// going to `err`, waits for "ready" and returns the child, its address
/// and its admin address.
fn serve_with_stderr(
    backend: SocketAddr,
    extra: &[&str],
    err: Stdio,
) -> (std::process::Child, SocketAddr, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wslb"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-pin",
            "--workers",
            "1",
        ])
        .args(["--admin-listen", "127.0.0.1:0"])
        .args(["--backend", &format!("http://{backend}")])
        .args(extra)
        .env("RUST_LOG", "error")
        .env_remove("WSLB_ACCESS_LOG")
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()
        .expect("spawn");
    let out = BufReader::new(child.stdout.take().unwrap());
    let (mut addr, mut admin) = (None, None);
    for line in out.lines() {
        let line = line.expect("stdout");
        if let Some(a) = line.strip_prefix("listening http ") {
            addr = a.parse().ok();
        }
        if let Some(a) = line.strip_prefix("listening admin ") {
            admin = a.parse().ok();
        }
        if line == "ready" {
            break;
        }
    }
    (
        child,
        addr.expect("listening line"),
        admin.expect("admin line"),
    )
}

#[test]
fn a_stderr_nobody_reads_drops_lines_and_never_stalls_requests() {
    let e = echo("e1");
    // stderr is a pipe this test never reads: it fills after 64 KiB.
    let (mut child, addr, admin) = serve_with_stderr(e.http(), &[], Stdio::piped());
    let long = format!("/{}", "p".repeat(2000));
    let started = Instant::now();
    let mut c = HttpConn::connect(addr);
    for _ in 0..1500 {
        assert_eq!(c.get(&long).status, 200);
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(60), "requests took {took:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let dropped = loop {
        let text = get(admin, "/metrics").text();
        let n: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("wslb_access_log_dropped_total "))
            .and_then(|v| v.trim().parse().ok())
            .expect("the dropped series");
        if n > 0 || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(dropped > 0, "nothing dropped although nobody reads stderr");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn stderr_by_default_and_nothing_when_off() {
    let dir = temp_dir("al-stderr");
    let e = echo("e1");
    for (extra, want) in [(&[][..], 2), (&["--access-log", "off"][..], 0)] {
        let err = dir.join("stderr");
        let file = std::fs::File::create(&err).expect("stderr file");
        let (mut child, addr, _) = serve_with_stderr(e.http(), extra, Stdio::from(file));
        for _ in 0..2 {
            assert_eq!(get(addr, "/x").status, 200);
        }
        // Lines are handed over within a few tenths of a second.
        std::thread::sleep(Duration::from_millis(800));
        let _ = child.kill();
        let _ = child.wait();
        let text = std::fs::read_to_string(&err).unwrap();
        let n = text.lines().filter(|l| l.contains(" kind=http ")).count();
        assert_eq!(n, want, "{extra:?}: {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn log_file_takes_the_log_and_not_the_access_log() {
    let dir = temp_dir("al-logfile");
    let log = dir.join("wslb.log");
    let access = dir.join("access.log");
    // A backend nobody listens on: its connect failure is a warning.
    let lb = serve(
        &[],
        &[
            "--backend",
            "http://127.0.0.1:1",
            "--max-retries",
            "0",
            "--log-file",
            log.to_str().unwrap(),
            "--access-log",
            access.to_str().unwrap(),
        ],
    );
    assert_eq!(get(lb.http(), "/x").status, 502);
    lines(&access, 1, |l| l.contains("path=\"/x\" status=502"));
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("backend connect failed") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(text.contains("backend connect failed"), "{text}");
    assert!(
        !text.contains("kind=http") && !text.contains('\x1b'),
        "{text}"
    );
    drop(lb);
    let _ = std::fs::remove_dir_all(&dir);
}
