//! `wslb bench sse` against the real SSE fallback: `wslb serve --fallback
//! sse` with two workers (so a session's POSTs often land on another worker
//! than its stream) in front of `wslb echo`. Every echo must come back with
//! the next event id and the bytes sent, and every session must end with a
//! 204 to its DELETE and a `close` event.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::proc::{echo, serve};

/// Runs `wslb bench sse --url URL --json ARGS` as a child process (bounded
/// by its --duration and --timeout).
fn run_bench(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wslb"))
        .args([
            "--log-level",
            "error",
            "bench",
            "sse",
            "--url",
            url,
            "--json",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run bench")
}

/// Runs the bench (3 s --timeout) and returns its JSON summary, checking it
/// succeeded and reported no problem.
fn bench(url: &str, args: &[&str]) -> serde_json::Value {
    let out = run_bench(url, &[&["--timeout", "3"], args].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("bench sse:"))
        .collect();
    assert!(out.status.success(), "bench failed: {stderr}");
    assert!(problems.is_empty(), "{problems:#?}");
    serde_json::from_slice(&out.stdout).expect("JSON summary")
}

#[test]
fn echoes_through_the_fallback_on_two_workers() {
    let e = echo("e1");
    let lb = serve(&[&e], &["--fallback", "sse", "--workers", "2"]);
    let url = format!("http://{}/chat", lb.http());
    for (size, conns) in [("64", "8"), ("20000", "4")] {
        let s = bench(&url, &["-c", conns, "-d", "1", "--size", size]);
        assert_eq!(s["mode"], "sse-echo");
        assert_eq!(s["errors_total"], 0, "size {size}: {}", s["errors"]);
        assert_eq!(s["connects"].as_u64(), conns.parse().ok(), "size {size}");
        let ops = s["ops"].as_u64().unwrap_or(0);
        assert!(ops >= 50, "size {size}: only {ops} echoes");
    }
    // The balancer still serves after every session was deleted.
    std::thread::sleep(Duration::from_millis(100));
    let s = bench(&url, &["-c", "2", "-d", "0.3"]);
    assert_eq!(s["errors_total"], 0, "{}", s["errors"]);
}

#[test]
fn without_the_fallback_the_stream_is_refused() {
    let e = echo("e1");
    let lb = serve(&[&e], &[]);
    let url = format!("http://{}/", lb.http());
    let out = run_bench(&url, &["-c", "1", "-d", "0.3", "--timeout", "2"]);
    assert!(out.status.success());
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(s["ops"], 0);
    assert!(
        s["errors_total"].as_u64().unwrap_or(0) >= 1,
        "{}",
        s["errors"]
    );
}

/// A session whose stream goes away without a DELETE (a bench killed
/// hard, a closed browser tab) is closed with 1001 after
/// --fallback-resume-timeout; the balancer must live on (the adapter once
/// polled its finished stream watch: a worker panic, an abort in release).
#[test]
fn an_abandoned_session_does_not_take_the_balancer_down() {
    let e = echo("e1");
    let mut lb = serve(
        &[&e],
        &["--fallback", "sse", "--fallback-resume-timeout", "500ms"],
    );
    let mut s = common::sse::open(lb.http(), "/", None, &[])
        .unwrap_or_else(|r| panic!("no event stream: {} {}", r.status, r.text()));
    assert_eq!(s.event().event.as_deref(), Some("open"));
    drop(s);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        lb.child.try_wait().expect("try_wait").is_none(),
        "the balancer exited after the abandoned session's resume timeout"
    );
    let url = format!("http://{}/", lb.http());
    let s = bench(&url, &["-c", "1", "-d", "0.3"]);
    assert_eq!(s["errors_total"], 0, "{}", s["errors"]);
}
