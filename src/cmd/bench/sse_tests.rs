//! End-to-end tests of `wslb bench sse` against a small blocking stand-in
//! for the balancer's SSE fallback on loopback: it speaks the wire protocol
//! (open event, POST -> 204 + echo event, DELETE -> 204 + close event),
//! writes events in small pieces with keep-alive comments between them, and
//! can be told to misbehave (send one echo twice) to show the checks work.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::{sse, CommonArgs, SseArgs};

/// What a session's stream writer is told to do.
enum Out {
    Message(Vec<u8>),
    Close,
}

#[derive(Default)]
struct Fake {
    sessions: Mutex<HashMap<String, Sender<Out>>>,
    next_token: AtomicU64,
    /// Echo message number `dup_at` of each session twice (0: never).
    dup_at: u64,
    deletes: AtomicU64,
}

/// Start the stand-in; returns its address and state.
fn fake(dup_at: u64) -> (SocketAddr, Arc<Fake>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = Arc::new(Fake {
        dup_at,
        ..Fake::default()
    });
    let st = Arc::clone(&state);
    thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { continue };
            let st = Arc::clone(&st);
            thread::spawn(move || serve(s, &st));
        }
    });
    (addr, state)
}

/// One request: method, path, body; `None` at EOF.
fn request(r: &mut BufReader<TcpStream>) -> Option<(String, String, Vec<u8>)> {
    let mut line = String::new();
    r.read_line(&mut line).ok().filter(|n| *n > 0)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok().filter(|n| *n > 0)?;
        if h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((method, path, body))
}

fn serve(s: TcpStream, st: &Fake) {
    let _ = s.set_nodelay(true);
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    while let Some((method, path, body)) = request(&mut r) {
        let token = path.strip_prefix("/_lb/sse/").map(str::to_string);
        let Some(token) = token else {
            return stream(w, st);
        };
        let tx = st.sessions.lock().expect("lock").get(&token).cloned();
        let status = match (tx, method.as_str()) {
            (None, _) => "404 Not Found",
            (Some(tx), "POST") => {
                let _ = tx.send(Out::Message(body));
                "204 No Content"
            }
            (Some(tx), "DELETE") => {
                st.deletes.fetch_add(1, Ordering::Relaxed);
                let _ = tx.send(Out::Close);
                "204 No Content"
            }
            _ => "405 Method Not Allowed",
        };
        if write!(w, "HTTP/1.1 {status}\r\n\r\n").is_err() {
            return;
        }
    }
}

/// The event stream of a new session.
fn stream(mut w: TcpStream, st: &Fake) {
    let n = st.next_token.fetch_add(1, Ordering::Relaxed);
    let token = format!("{n:032x}");
    let (tx, rx) = channel();
    st.sessions.lock().expect("lock").insert(token.clone(), tx);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n\
         retry: 2000\nevent: open\nid: {token}.0\n\
         data: {{\"session\":\"{token}\",\"url\":\"/_lb/sse/{token}\",\"id\":\"{n}\"}}\n\n"
    );
    if w.write_all(head.as_bytes()).is_err() {
        return;
    }
    let mut id = 0u64;
    while let Ok(out) = rx.recv_timeout(Duration::from_secs(10)) {
        id += 1;
        let ev = match out {
            Out::Message(m) => {
                let mut ev = format!(": keep-alive\r\n\r\nid: {token}.{id}\r\n").into_bytes();
                for line in m.split(|&b| b == b'\n') {
                    ev.extend_from_slice(b"data: ");
                    ev.extend_from_slice(line);
                    ev.extend_from_slice(b"\r\n");
                }
                ev.extend_from_slice(b"\r\n");
                ev
            }
            Out::Close => {
                let close = format!(
                    "event: close\nid: {token}.{id}\ndata: {{\"code\":1000,\"reason\":\"\"}}\n\n"
                );
                let _ = w.write_all(close.as_bytes());
                break;
            }
        };
        let copies = if id == st.dup_at { 2 } else { 1 };
        for _ in 0..copies {
            // In pieces, so the reader sees events cut at odd places.
            for piece in ev.chunks(7) {
                if w.write_all(piece).is_err() {
                    return;
                }
            }
        }
    }
    st.sessions.lock().expect("lock").remove(&token);
}

fn args(addr: SocketAddr, connections: usize) -> SseArgs {
    SseArgs {
        common: CommonArgs {
            url: format!("http://{addr}/chat"),
            connections,
            duration: Some(0.5),
            threads: 1,
            cpu: None,
            timeout: 2.0,
            json: true,
        },
        size: 100,
        rate: None,
        warmup: 0.0,
        open_rate: 1000.0,
        watch_pids: Vec::new(),
    }
}

#[test]
fn echo_round_trips_through_the_stand_in() {
    let (addr, st) = fake(0);
    let (s, _) = sse::run(args(addr, 3)).expect("run");
    assert_eq!(s.mode, "sse-echo");
    assert_eq!(s.errors_total, 0, "{:?}", s.errors);
    assert!(s.ops > 20, "only {} messages", s.ops);
    assert_eq!(s.connects, 3);
    assert_eq!(s.message_size, Some(100));
    assert!(s.bytes_sent >= s.ops * 100 && s.bytes_received >= s.ops * 100);
    // Every session ended with its DELETE.
    assert_eq!(st.deletes.load(Ordering::Relaxed), 3);
}

#[test]
fn a_duplicated_echo_is_a_mismatch() {
    let (addr, _) = fake(5);
    let (s, _) = sse::run(args(addr, 2)).expect("run");
    assert!(
        s.errors.get("mismatch").copied().unwrap_or(0) >= 2,
        "{:?}",
        s.errors
    );
    // The sessions are reopened after the mismatch and go on.
    assert!(s.connects >= 4, "{} sessions", s.connects);
    assert!(s.ops > 10, "only {} messages", s.ops);
}

#[test]
fn the_warmup_window_counts_only_after_every_session_is_up() {
    let (addr, _) = fake(0);
    let mut a = args(addr, 4);
    a.warmup = 3.0;
    a.open_rate = 100.0;
    a.rate = Some(200.0);
    a.watch_pids = vec![std::process::id()];
    a.common.duration = Some(0.5);
    let (s, _) = sse::run(a).expect("run");
    assert_eq!(s.errors_total, 0, "{:?}", s.errors);
    assert_eq!(s.open_at_window, Some(4));
    assert!(s.proxy_cpu_us_per_op.is_some());
    // 200/s over half a second.
    assert!((60..=140).contains(&s.ops), "{} messages", s.ops);
}

#[test]
fn a_refused_stream_counts_as_a_handshake_error() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let mut a = args(addr, 1);
    a.common.duration = Some(0.2);
    let (s, _) = sse::run(a).expect("run");
    assert_eq!(s.ops, 0);
    assert!(s.errors.get("handshake").copied().unwrap_or(0) >= 1);
}
