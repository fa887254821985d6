//! The live events through the library's hooks, in process: `on_event`
//! hears the static backend join at start, a drain and a resume through the
//! admin API (after the matching `on_backend_*` call, which is unchanged),
//! and upgrades refused by a hook or for want of a backend; no message
//! metadata unless asked. An admin event stream ends when the balancer
//! stops.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::client::HttpConn;
use common::proc::echo;
use common::ws_client::WsConn;
use wslb::{BackendEvent, Balancer, Decision, Event, EventKind, Hooks, Request};

/// What the hooks heard: `on_backend_*` calls by name, events as they came.
#[derive(Default)]
struct Heard {
    calls: Mutex<Vec<(String, Option<Event>)>>,
    changed: Condvar,
}

impl Heard {
    fn push(&self, name: &str, event: Option<Event>) {
        let mut calls = self.calls.lock().expect("lock");
        calls.push((name.to_string(), event));
        self.changed.notify_all();
    }

    /// Waits (5 s at most) until `n` calls were heard; returns them all.
    fn wait(&self, n: usize) -> Vec<(String, Option<Event>)> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut calls = self.calls.lock().expect("lock");
        while calls.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "heard only {:?}", *calls);
            calls = self.changed.wait_timeout(calls, left).expect("lock").0;
        }
        calls.clone()
    }

    fn names(&self) -> Vec<String> {
        let calls = self.calls.lock().expect("lock");
        calls.iter().map(|(n, _)| n.clone()).collect()
    }
}

struct Listening(Arc<Heard>);

impl Hooks for Listening {
    fn on_handshake(&self, req: &Request<'_>) -> Decision {
        if req.path() == "/closed" {
            Decision::refuse(403, "closed room")
        } else {
            Decision::accept()
        }
    }
    fn on_backend_up(&self, _: &BackendEvent) {
        self.0.push("up", None);
    }
    fn on_backend_ready(&self, _: &BackendEvent) {
        self.0.push("ready", None);
    }
    fn on_backend_down(&self, _: &BackendEvent) {
        self.0.push("down", None);
    }
    fn on_event(&self, event: &Event) {
        self.0.push(event.kind.name(), Some(event.clone()));
    }
}

fn admin_post(lb: &Balancer, id: &str, action: &str) {
    let enc: String = id
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let mut c = HttpConn::connect(lb.admin_addr().expect("admin"));
    c.send(format!("POST /api/backends/{enc}/{action} HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
    let r = c.read_response(false).expect("admin answer");
    assert_eq!(r.status, 200, "{action}: {}", r.text());
}

#[test]
fn on_event_hears_backends_and_refused_handshakes() {
    let e = echo("e");
    let url = format!("http://{}", e.http());
    let heard = Arc::new(Heard::default());
    let lb = Balancer::builder()
        .listen("127.0.0.1:0")
        .backend(&url)
        .workers(1)
        .admin("127.0.0.1:0".parse().expect("addr"), None)
        .hooks(Listening(heard.clone()))
        .configure(|c| {
            c.pin = false;
            c.drain_timeout = Duration::from_secs(1);
        })
        .start()
        .expect("balancer starts");
    let addr = lb.local_addr().expect("listens");

    // The static backend joined at start.
    let calls = heard.wait(4);
    let names: Vec<&str> = calls.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["up", "backend_registered", "ready", "backend_ready"]
    );
    let Some(joined) = &calls[1].1 else {
        panic!("no event")
    };
    assert!(joined.ts_ms > 0);
    assert_eq!(
        joined.kind,
        EventKind::BackendRegistered {
            id: url.clone(),
            url: url.clone(),
            registered: false,
        }
    );

    // A drain and a resume through the admin API.
    admin_post(&lb, &url, "drain");
    admin_post(&lb, &url, "resume");
    let calls = heard.wait(8);
    let names: Vec<&str> = calls[4..].iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["down", "backend_drained", "ready", "backend_ready"]);

    // Refused by the hook, then for want of a backend.
    let refused = WsConn::try_connect(addr, "/closed?x=1", &[]).err();
    assert_eq!(refused.map(|r| r.status), Some(403));
    admin_post(&lb, &url, "drain");
    let refused = WsConn::try_connect(addr, "/open", &[]).err();
    assert_eq!(refused.map(|r| r.status), Some(503));
    let calls = heard.wait(12);
    let refusals: Vec<(String, u16, String)> = calls
        .iter()
        .filter_map(|(_, e)| match e.as_ref().map(|e| &e.kind) {
            Some(EventKind::HandshakeRefused {
                path,
                status,
                reason,
                client,
            }) => {
                assert!(client.starts_with("127.0.0.1:"), "{client}");
                Some((path.clone(), *status, reason.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        refusals,
        [
            ("/closed".to_string(), 403, "closed room".to_string()),
            ("/open".to_string(), 503, "no backend available".to_string())
        ]
    );

    // A session with messages: no message metadata without message_events.
    admin_post(&lb, &url, "resume");
    let mut ws = WsConn::try_connect(addr, "/open", &[]).expect("upgrade");
    ws.echo_text("hi");
    drop(ws);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !heard.names().iter().any(|n| n == "message"),
        "{:?}",
        heard.names()
    );
    lb.handle().drain();
    lb.wait();
}

#[test]
fn an_event_stream_ends_when_the_balancer_stops() {
    let e = echo("e");
    let lb = Balancer::builder()
        .listen("127.0.0.1:0")
        .backend(&format!("http://{}", e.http()))
        .workers(1)
        .admin("127.0.0.1:0".parse().expect("addr"), None)
        .configure(|c| {
            c.pin = false;
            c.drain_timeout = Duration::from_millis(200);
        })
        .start()
        .expect("balancer starts");
    let mut s = TcpStream::connect(lb.admin_addr().expect("admin")).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(b"GET /api/events HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("write");
    let mut got = Vec::new();
    let mut tmp = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut tmp).expect("head");
        assert!(n > 0, "closed before the head");
        got.extend_from_slice(&tmp[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200 "), "{got:?}");
    let started = Instant::now();
    lb.handle().drain();
    lb.wait();
    loop {
        match s.read(&mut tmp) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => panic!("the stream stayed open after the stop: {e}"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(4));
}
