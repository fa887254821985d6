//! A tiny fake balancer control channel for the agent tests: a std
//! TcpListener doing the WebSocket upgrade with `wslb::proto::ws`, checking the
//! bearer token, answering `register` (as a v2 balancer, or as a v1 one that
//! refuses `"v": 2`), answering operations with a set `result` or
//! `op_error` (echoing their `ref`), and recording everything it hears.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use wslb::proto::ws::frame::{write_frame, FrameLimits, OpCode};
use wslb::proto::ws::handshake::{accept_key, httparse};
use wslb::proto::ws::message::MessageReader;
use wslb::proto::ws::scanner::ScannerConfig;
use wslb::proto::ws::{parse_close_payload, write_close_frame};

/// Something the fake saw, tagged with the connection number (1, 2, ...).
#[derive(Clone, Debug)]
pub enum Event {
    Request {
        conn: u64,
        path: String,
        auth: Option<String>,
    },
    Text {
        conn: u64,
        json: Value,
    },
    Pong {
        conn: u64,
        payload: Vec<u8>,
    },
    Ping {
        conn: u64,
    },
    Close {
        conn: u64,
        code: Option<u16>,
    },
    Eof {
        conn: u64,
    },
}

/// How the fake answers `register`.
#[derive(Clone, Debug)]
pub enum Answer {
    Registered,
    /// `error {message}` then close 1008.
    Refuse(String),
    /// As a balancer from before protocol v2: `"v": 1` only (anything else
    /// refused as such a balancer refuses it), no `v` in `registered`.
    V1Only,
}

/// How the fake answers an operation (publish, send, ...).
#[derive(Clone, Debug)]
pub enum OpAnswer {
    /// `result` with these counts (and pongs for a ping).
    Result { matched: u64, delivered: u64 },
    /// `op_error` with this status.
    Error(u16),
    /// Nothing.
    Silent,
}

const OPS: [&str; 6] = [
    "publish",
    "send",
    "ping",
    "close",
    "subscribe",
    "unsubscribe",
];

struct State {
    events: Mutex<Vec<Event>>,
    cv: Condvar,
    token: Mutex<Option<String>>,
    answer: Mutex<Answer>,
    op_answer: Mutex<OpAnswer>,
    heartbeat_ms: u64,
    conns: AtomicU64,
    /// Connections opened before this generation are dropped.
    kill_gen: AtomicU64,
    stop: AtomicBool,
    outbox: Mutex<Vec<Vec<u8>>>,
}

pub struct Fake {
    pub addr: SocketAddr,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

impl Fake {
    /// Listens on `addr` (port 0 for any), expecting `token` if given.
    pub fn start(addr: &str, token: Option<&str>, heartbeat_ms: u64) -> Fake {
        let listener = TcpListener::bind(addr).expect("bind fake balancer");
        let addr = listener.local_addr().expect("addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let state = Arc::new(State {
            events: Mutex::new(Vec::new()),
            cv: Condvar::new(),
            token: Mutex::new(token.map(str::to_string)),
            answer: Mutex::new(Answer::Registered),
            op_answer: Mutex::new(OpAnswer::Result {
                matched: 0,
                delivered: 0,
            }),
            heartbeat_ms,
            conns: AtomicU64::new(0),
            kill_gen: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            outbox: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        let accept = std::thread::spawn(move || accept_loop(listener, st));
        Fake {
            addr,
            state,
            accept: Some(accept),
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn set_token(&self, token: Option<&str>) {
        *self.state.token.lock().unwrap() = token.map(str::to_string);
    }

    pub fn set_answer(&self, a: Answer) {
        *self.state.answer.lock().unwrap() = a;
    }

    pub fn set_op_answer(&self, a: OpAnswer) {
        *self.state.op_answer.lock().unwrap() = a;
    }

    /// Drops every open connection (abruptly, no close frame).
    pub fn drop_connections(&self) {
        self.state.kill_gen.fetch_add(1, Ordering::SeqCst);
    }

    /// Sends a frame (unmasked, server side) to every open connection.
    pub fn send_frame(&self, op: OpCode, payload: &[u8]) {
        let mut f = Vec::new();
        write_frame(&mut f, true, op, None, payload);
        self.state.outbox.lock().unwrap().push(f);
    }

    pub fn send_text(&self, text: &str) {
        self.send_frame(OpCode::Text, text.as_bytes());
    }

    pub fn events(&self) -> Vec<Event> {
        self.state.events.lock().unwrap().clone()
    }

    /// Messages of one `"type"`, with their connection numbers.
    pub fn messages(&self, kind: &str) -> Vec<(u64, Value)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Text { conn, json } if json["type"] == kind => Some((conn, json)),
                _ => None,
            })
            .collect()
    }

    /// Waits until `pred` finds what it wants in the events.
    pub fn wait<T>(&self, timeout: Duration, pred: impl Fn(&[Event]) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut ev = self.state.events.lock().unwrap();
        loop {
            if let Some(t) = pred(&ev) {
                return Some(t);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            ev = self.state.cv.wait_timeout(ev, left).unwrap().0;
        }
    }

    /// Waits until `n` messages of type `kind` were received.
    pub fn wait_messages(&self, kind: &str, n: usize, timeout: Duration) -> Vec<(u64, Value)> {
        let found = self.wait(timeout, |ev| {
            let m: Vec<(u64, Value)> = ev
                .iter()
                .filter_map(|e| match e {
                    Event::Text { conn, json } if json["type"] == kind => {
                        Some((*conn, json.clone()))
                    }
                    _ => None,
                })
                .collect();
            (m.len() >= n).then_some(m)
        });
        found.unwrap_or_else(|| {
            panic!(
                "fewer than {n} {kind:?} messages in time; events: {:#?}",
                self.events()
            )
        })
    }

    /// Stops listening and drops every connection.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.drop_connections();
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn record(st: &State, e: Event) {
    st.events.lock().unwrap().push(e);
    st.cv.notify_all();
}

fn accept_loop(listener: TcpListener, st: Arc<State>) {
    let mut threads = Vec::new();
    while !st.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((s, _)) => {
                let conn = st.conns.fetch_add(1, Ordering::SeqCst) + 1;
                let st2 = st.clone();
                threads.push(std::thread::spawn(move || serve(s, conn, st2)));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    drop(listener);
    for t in threads {
        let _ = t.join();
    }
}

fn serve(mut s: TcpStream, conn: u64, st: Arc<State>) {
    let gen = st.kill_gen.load(Ordering::SeqCst);
    s.set_nonblocking(false).ok();
    s.set_read_timeout(Some(Duration::from_millis(20))).ok();
    let alive =
        |st: &State| st.kill_gen.load(Ordering::SeqCst) == gen && !st.stop.load(Ordering::SeqCst);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // The upgrade request.
    let head_len = loop {
        if !alive(&st) {
            return;
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
            let get = |name: &str| {
                req.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).to_string())
            };
            let auth = get("authorization");
            let key = get("sec-websocket-key").unwrap_or_default();
            record(
                &st,
                Event::Request {
                    conn,
                    path: req.path.unwrap_or("").to_string(),
                    auth: auth.clone(),
                },
            );
            let want = st
                .token
                .lock()
                .unwrap()
                .clone()
                .map(|t| format!("Bearer {t}"));
            if want.is_some() && auth != want {
                let _ = s.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                return;
            }
            let resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                accept_key(key.as_bytes())
            );
            s.write_all(resp.as_bytes()).expect("write 101");
            break n;
        }
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
    };
    buf.drain(..head_len);
    let mut reader = MessageReader::new(ScannerConfig {
        limits: FrameLimits::server(1 << 20),
        max_message: 1 << 20,
        validate_utf8: true,
    });
    let mut sent = st.outbox.lock().unwrap().len();
    loop {
        if !alive(&st) {
            let _ = s.shutdown(Shutdown::Both);
            return;
        }
        let pending: Vec<Vec<u8>> = st.outbox.lock().unwrap()[sent..].to_vec();
        sent += pending.len();
        for f in pending {
            let _ = s.write_all(&f);
        }
        while !buf.is_empty() {
            let (used, msg) = match reader.feed(&buf) {
                Ok(r) => r,
                Err(e) => panic!("agent sent a bad frame: {e}"),
            };
            buf.drain(..used);
            let Some(m) = msg else { break };
            match m.opcode {
                OpCode::Text => {
                    let json: Value = serde_json::from_slice(&m.payload).expect("agent sends JSON");
                    let is_register = json["type"] == "register";
                    let is_op = OPS.iter().any(|o| json["type"] == *o);
                    let id = json["id"].clone();
                    let version = json["v"].clone();
                    let reference = json["ref"].clone();
                    let ping = json["type"] == "ping";
                    record(&st, Event::Text { conn, json });
                    if is_op {
                        let answer = st.op_answer.lock().unwrap().clone();
                        let reply = match answer {
                            OpAnswer::Result { matched, delivered } => {
                                let mut r = serde_json::json!({"type": "result", "ref": reference,
                                    "matched": matched, "delivered": delivered,
                                    "skipped": matched - delivered, "dropped": 0});
                                if ping {
                                    r["pongs"] = delivered.into();
                                }
                                Some(r)
                            }
                            OpAnswer::Error(status) => Some(serde_json::json!({"type": "op_error",
                                "ref": reference, "status": status, "message": format!("fake {status}")})),
                            OpAnswer::Silent => None,
                        };
                        if let Some(r) = reply {
                            let mut out = Vec::new();
                            write_frame(
                                &mut out,
                                true,
                                OpCode::Text,
                                None,
                                r.to_string().as_bytes(),
                            );
                            let _ = s.write_all(&out);
                        }
                    }
                    if is_register {
                        let mut answer = st.answer.lock().unwrap().clone();
                        if matches!(answer, Answer::V1Only) && version != 1 {
                            answer = Answer::Refuse(format!(
                                "unsupported protocol version {version} (this balancer speaks \"v\": 1)"
                            ));
                        }
                        let mut out = Vec::new();
                        match answer {
                            Answer::V1Only => {
                                let reply = serde_json::json!({"type": "registered", "balancer_id": "fake-v1",
                                    "id": id, "heartbeat_interval_ms": st.heartbeat_ms, "bindings": ["http://127.0.0.1:9001"]});
                                write_frame(
                                    &mut out,
                                    true,
                                    OpCode::Text,
                                    None,
                                    reply.to_string().as_bytes(),
                                );
                            }
                            Answer::Registered => {
                                let reply = serde_json::json!({"type": "registered", "v": 2, "balancer_id": "fake-lb",
                                    "id": id, "heartbeat_interval_ms": st.heartbeat_ms, "bindings": ["http://127.0.0.1:9001"]});
                                write_frame(
                                    &mut out,
                                    true,
                                    OpCode::Text,
                                    None,
                                    reply.to_string().as_bytes(),
                                );
                            }
                            Answer::Refuse(message) => {
                                let reply =
                                    serde_json::json!({"type": "error", "message": message});
                                write_frame(
                                    &mut out,
                                    true,
                                    OpCode::Text,
                                    None,
                                    reply.to_string().as_bytes(),
                                );
                                write_close_frame(&mut out, 1008, "refused", None);
                            }
                        }
                        let _ = s.write_all(&out);
                    }
                }
                OpCode::Ping => {
                    record(&st, Event::Ping { conn });
                    let mut out = Vec::new();
                    write_frame(&mut out, true, OpCode::Pong, None, &m.payload);
                    let _ = s.write_all(&out);
                }
                OpCode::Pong => record(
                    &st,
                    Event::Pong {
                        conn,
                        payload: m.payload,
                    },
                ),
                OpCode::Close => {
                    let code = parse_close_payload(&m.payload)
                        .ok()
                        .flatten()
                        .map(|(c, _)| c);
                    record(&st, Event::Close { conn, code });
                    let mut out = Vec::new();
                    write_close_frame(&mut out, 1000, "", None);
                    let _ = s.write_all(&out);
                    let _ = s.shutdown(Shutdown::Both);
                    return;
                }
                _ => {}
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => {
                record(&st, Event::Eof { conn });
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                record(&st, Event::Eof { conn });
                return;
            }
        }
    }
}
