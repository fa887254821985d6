//! What the SSE fallback tests share: a balancer with the fallback in
//! front of an echo (or a backend the test drives), opening and resuming
//! streams, the close at a stream's end, and the admin API's sessions and
//! events.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::common::client::Response;
use super::common::proc::{echo, serve, Proc};
use super::common::sse::{self, Next, SseStream};
use super::common::ws_client::WsConn;
use serde_json::Value;

/// An echo backend and a balancer in front of it with `--fallback sse`
/// and `extra` flags.
pub fn fallback(extra: &[&str]) -> (Proc, Proc) {
    let e = echo("e1");
    let mut flags = vec!["--fallback", "sse"];
    flags.extend_from_slice(extra);
    let lb = serve(&[&e], &flags);
    (e, lb)
}

/// Opens a fresh stream on `/chat` (panics on any other answer).
pub fn stream(addr: SocketAddr) -> SseStream {
    sse::open(addr, "/chat", None, &[])
        .unwrap_or_else(|r| panic!("no event stream: {} {}", r.status, r.text()))
}

/// Resumes after `last_id` on `/chat`.
pub fn resume(addr: SocketAddr, last_id: &str) -> Result<SseStream, Response> {
    sse::open(addr, "/chat", Some(last_id), &[])
}

pub fn assert_status(r: &Response, status: u16, what: &str) {
    assert_eq!(
        r.status,
        status,
        "{what}: answered {} {}",
        r.status,
        r.text()
    );
}

/// Reads the `close` event that must come next, then the end of the
/// stream; its `{code, reason}`.
pub fn expect_close(s: &mut SseStream, token: &str) -> (u64, String) {
    let ev = s.event();
    assert_eq!(ev.event.as_deref(), Some("close"), "{ev:?}");
    assert_eq!(ev.token(), Some(token), "{ev:?}");
    let v = ev.json();
    let code = v["code"].as_u64().unwrap_or_else(|| panic!("no code: {v}"));
    let reason = v["reason"].as_str().unwrap_or_default().to_string();
    if let Err(extra) = s.ends_within(Duration::from_secs(5)) {
        panic!("the stream went on after close: {extra:?}");
    }
    (code, reason)
}

pub use super::common::admin::{connection_ids as listed, post_json as admin_post};

/// Polls until `cond` holds on the listed ids (the time it took) or
/// `within` passes (None).
pub fn until_listed(
    admin: SocketAddr,
    within: Duration,
    cond: impl Fn(&[String]) -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if cond(&listed(admin)) {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    None
}

/// The admin event stream (`GET /api/events`).
pub fn events(admin: SocketAddr) -> SseStream {
    sse::open(admin, "/api/events", None, &[])
        .unwrap_or_else(|r| panic!("no events stream: {} {}", r.status, r.text()))
}

/// Reads admin events until one of type `kind` about session `id` (5 s).
pub fn admin_event(es: &mut SseStream, kind: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match es.next(left) {
            Next::Event(ev) => {
                let v = ev.json();
                if v["type"] == kind && v["id"] == id {
                    return v;
                }
                seen.push(v);
            }
            other => panic!("no {kind} about {id} ({other:?}); saw {seen:?}"),
        }
    }
}

/// A backend whose sessions the test drives: each upgrade it takes comes
/// out of the receiver as a server-side WebSocket.
pub fn scripted_backend() -> (SocketAddr, mpsc::Receiver<WsConn<TcpStream>>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming().take(8) {
            let Ok(s) = s else { continue };
            let ws = WsConn::accept(s);
            ws.set_read_timeout(Duration::from_secs(5));
            if tx.send(ws).is_err() {
                break;
            }
        }
    });
    (addr, rx)
}
