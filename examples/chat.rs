//! A chat-room balancer: clients connect over WebSocket and their messages
//! go to the backend (which, with `wslb echo`, echoes them), except `/who`,
//! which the balancer answers itself with the sessions connected now.
//!
//! ```text
//! cargo run -- echo --listen 127.0.0.1:9001 &
//! cargo run --example chat -- --listen 127.0.0.1:8080 --backend http://127.0.0.1:9001
//! ```
//!
//! It prints `listening http ADDR` and `ready`, and drains on SIGTERM or
//! SIGINT.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Mutex;

use wslb::{Balancer, Direction, Hooks, Message, MessageMode, Reply, Session, SessionEnd, Verdict};

/// The room: who is connected, by session id. A lock is fine here: an
/// example, and sessions come and go far less often than messages pass.
#[derive(Default)]
struct Room {
    members: Mutex<BTreeMap<u64, (SocketAddr, String)>>,
}

impl Room {
    /// One line per session: `<id> <peer> <path> <backend>`.
    fn who(&self) -> String {
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = format!("{} connected", members.len());
        for (id, (peer, line)) in members.iter() {
            out.push_str(&format!("\n{id} {peer} {line}"));
        }
        out
    }
}

impl Hooks for Room {
    fn on_connect(&self, s: &Session) {
        let line = format!("{} {}", s.path, s.backend);
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        members.insert(s.id, (s.peer, line));
    }

    fn on_disconnect(&self, s: &Session, end: &SessionEnd) {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        members.remove(&s.id);
        eprintln!(
            "session {} from {} left: code {} after {:?}",
            s.id, s.peer, end.code, end.duration
        );
    }

    fn message_mode(&self) -> MessageMode {
        MessageMode::Whole
    }

    fn on_message(&self, _s: &Session, msg: &Message<'_>) -> Verdict {
        let asks_who = msg.direction == Direction::ClientToBackend
            && msg.text
            && msg.payload.trim_ascii() == b"/who";
        if asks_who {
            Verdict::Reply(Reply::Text(self.who()))
        } else {
            Verdict::Forward
        }
    }
}

/// `--listen ADDR --backend URL`, with defaults.
fn args() -> Result<(String, String), String> {
    let mut listen = "127.0.0.1:8080".to_string();
    let mut backend = "http://127.0.0.1:9001".to_string();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = value,
            "--backend" => backend = value,
            _ => {
                return Err(format!(
                    "unknown flag {flag} (use --listen ADDR --backend URL)"
                ))
            }
        }
    }
    Ok((listen, backend))
}

fn main() {
    if let Err(e) = run() {
        eprintln!("chat: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let (listen, backend) = args()?;
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(|e| format!("signal handlers: {e}"))?;
    let lb = Balancer::builder()
        .listen(listen.as_str())
        .backend(&backend)
        .hooks(Room::default())
        .start()
        .map_err(|e| e.to_string())?;
    {
        let mut out = std::io::stdout().lock();
        for (kind, addr) in lb.local_addrs() {
            let _ = writeln!(out, "listening {kind} {addr}");
        }
        let _ = writeln!(out, "ready");
        let _ = out.flush();
    }
    let handle = lb.handle();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            handle.drain();
        }
    });
    lb.wait();
    Ok(())
}
