//! In-process balancers with recording hooks, one-connection fake
//! WebSocket backends and a raw frame reader, for the hook tests.
#![allow(dead_code)]

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::ws_client::WsConn;
use wslb::proto::ws::frame::{parse_header, FrameLimits, OpCode};
use wslb::{
    Balancer, Direction, Hooks, Message, MessageMode, Session, SessionEnd, Verdict, WsMode,
};

pub type Ws = WsConn<TcpStream>;
pub type Decide = dyn Fn(&Message<'_>) -> Verdict + Send + Sync;

/// What the hooks heard.
#[derive(Debug, Clone)]
pub enum Ev {
    Connect(Session),
    Disconnect(Session, SessionEnd),
    Msg(Direction, bool, Vec<u8>, bool, bool),
}

/// Hooks that record every call and answer `on_message` with `decide`.
pub struct Rec {
    pub mode: MessageMode,
    pub decide: Box<Decide>,
    pub events: Mutex<Vec<Ev>>,
    pub changed: Condvar,
}

pub struct Hooked(pub Arc<Rec>);

impl Hooks for Hooked {
    fn on_connect(&self, s: &Session) {
        self.0.push(Ev::Connect(s.clone()));
    }
    fn on_disconnect(&self, s: &Session, end: &SessionEnd) {
        self.0.push(Ev::Disconnect(s.clone(), end.clone()));
    }
    fn message_mode(&self) -> MessageMode {
        self.0.mode
    }
    fn on_message(&self, _s: &Session, m: &Message<'_>) -> Verdict {
        let ev = Ev::Msg(m.direction, m.text, m.payload.to_vec(), m.first, m.fin);
        self.0.push(ev);
        (self.0.decide)(m)
    }
}

impl Rec {
    pub fn new(
        mode: MessageMode,
        decide: impl Fn(&Message<'_>) -> Verdict + Send + Sync + 'static,
    ) -> Arc<Rec> {
        Arc::new(Rec {
            mode,
            decide: Box::new(decide),
            events: Mutex::new(Vec::new()),
            changed: Condvar::new(),
        })
    }

    pub fn push(&self, ev: Ev) {
        self.events.lock().expect("lock").push(ev);
        self.changed.notify_all();
    }

    /// The events once `done` holds (panics after 10 s).
    pub fn wait(&self, done: impl Fn(&[Ev]) -> bool) -> Vec<Ev> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut evs = self.events.lock().expect("lock");
        while !done(&evs) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "hooks never got there: {:?}", *evs);
            evs = self.changed.wait_timeout(evs, left).expect("lock").0;
        }
        evs.clone()
    }

    /// The messages seen so far: (direction, text, payload, first, fin).
    pub fn msgs(&self) -> Vec<(Direction, bool, Vec<u8>, bool, bool)> {
        let evs = self.events.lock().expect("lock");
        evs.iter()
            .filter_map(|e| match e {
                Ev::Msg(d, t, p, first, fin) => Some((*d, *t, p.clone(), *first, *fin)),
                _ => None,
            })
            .collect()
    }
}

pub fn disconnected(evs: &[Ev]) -> bool {
    evs.iter().any(|e| matches!(e, Ev::Disconnect(..)))
}

pub fn start(backend: &str, mode: WsMode, hooks: Option<&Arc<Rec>>) -> Balancer {
    let mut b = Balancer::builder()
        .listen("127.0.0.1:0")
        .backend(backend)
        .workers(1)
        .configure(move |c| {
            c.pin = false;
            c.ws_mode = mode;
            c.drain_timeout = Duration::from_secs(1);
        });
    if let Some(rec) = hooks {
        b = b.hooks(Hooked(rec.clone()));
    }
    b.start().expect("balancer starts")
}

pub fn stop(lb: Balancer) {
    lb.handle().drain();
    lb.wait();
}

pub fn client(lb: &Balancer, path: &str) -> Ws {
    let addr = lb.local_addr().expect("listens");
    WsConn::try_connect(addr, path, &[]).expect("upgrade")
}

/// A one-connection fake backend running `script`; its URL and thread.
pub fn fake(script: impl FnOnce(Ws) + Send + 'static) -> (String, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr: SocketAddr = l.local_addr().expect("addr");
    let t = std::thread::spawn(move || {
        let (s, _) = l.accept().expect("accept");
        script(WsConn::accept(s));
    });
    (format!("http://{addr}"), t)
}

/// Reads `n` raw frames (fin, opcode, payload) from a client socket.
pub fn frames(s: &mut TcpStream, n: usize) -> Vec<(bool, OpCode, Vec<u8>)> {
    let (mut buf, mut out, mut tmp) = (Vec::new(), Vec::new(), [0u8; 4096]);
    while out.len() < n {
        if let Ok(Some(h)) = parse_header(&buf, &FrameLimits::client(1 << 20)) {
            let (hl, len) = (usize::from(h.header_len), h.payload_len as usize);
            if buf.len() >= hl + len {
                out.push((h.fin, h.opcode, buf[hl..hl + len].to_vec()));
                buf.drain(..hl + len);
                continue;
            }
        }
        let got = s.read(&mut tmp).expect("read frames");
        assert!(got > 0, "EOF after {out:?}");
        buf.extend_from_slice(&tmp[..got]);
    }
    assert!(buf.is_empty(), "more than {n} frames");
    out
}

pub fn send_three(ws: &mut Ws, parts: [&str; 3]) {
    assert!(ws.send_frame(false, OpCode::Text, parts[0].as_bytes()));
    assert!(ws.send_frame(false, OpCode::Continuation, parts[1].as_bytes()));
    assert!(ws.send_frame(true, OpCode::Continuation, parts[2].as_bytes()));
}

pub fn text_of(ws: &mut Ws) -> String {
    let m = ws.recv_msg();
    assert_eq!(m.opcode, OpCode::Text, "{m:?}");
    String::from_utf8(m.payload).expect("utf-8")
}
