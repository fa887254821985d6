//! The message hub end to end on the real binary: connection ids reach the
//! backend (`X-Wslb-Conn`) and the admin API; channels come from the
//! backend's 101 (`X-Wslb-Channels`, never shown to the client) or
//! `/api/subscribe`; publish, send, ping and close reach exactly the
//! sessions their filters pick, with `{matched, delivered, skipped,
//! dropped}`; bad requests get 400/404 with a reason.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::client::HttpConn;
use common::proc::{serve_urls, Proc};
use common::ws_client::{Event, WsConn};
use serde_json::{json, Value};
use wslb::proto::ws::frame::OpCode;
use wslb::proto::ws::handshake::accept_key;

/// A backend that accepts every upgrade, puts the session in the channels
/// named by the request's `ch` query parameter (in its 101), records each
/// request head, answers pings and ignores everything else.
struct ChannelBackend {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl ChannelBackend {
    fn start() -> ChannelBackend {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let theirs = heads.clone();
        std::thread::spawn(move || {
            for s in l.incoming().take(64) {
                let Ok(s) = s else { continue };
                let heads = theirs.clone();
                std::thread::spawn(move || serve_one(s, heads));
            }
        });
        ChannelBackend { addr, heads }
    }

    /// The `X-Wslb-Conn` value of each upgrade seen.
    fn conn_ids(&self) -> Vec<String> {
        self.heads
            .lock()
            .unwrap()
            .iter()
            .filter_map(|h| header(h, "x-wslb-conn"))
            .collect()
    }
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

fn serve_one(mut s: TcpStream, heads: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut tmp) {
            Ok(n) if n > 0 => buf.extend_from_slice(&tmp[..n]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let key = header(&head, "sec-websocket-key").unwrap_or_default();
    let channels = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|t| t.split_once("?ch="))
        .map(|(_, c)| c.replace("%2C", ","));
    heads.lock().unwrap().push(head);
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        accept_key(key.as_bytes())
    );
    if let Some(c) = channels {
        out.push_str(&format!("X-Wslb-Channels: {c}\r\n"));
    }
    out.push_str("\r\n");
    if s.write_all(out.as_bytes()).is_err() {
        return;
    }
    // Frames from the balancer are read and dropped until it closes.
    while matches!(s.read(&mut tmp), Ok(n) if n > 0) {}
}

fn lb(backend: &ChannelBackend, extra: &[&str]) -> Proc {
    let mut flags = vec!["--admin-listen", "127.0.0.1:0"];
    flags.extend_from_slice(extra);
    serve_urls(&[format!("http://{}", backend.addr)], &flags)
}

/// POSTs a JSON body to the admin API; status and JSON answer.
fn post(admin: SocketAddr, path: &str, body: &str) -> (u16, Value) {
    let mut c = HttpConn::connect(admin);
    c.send(
        format!(
            "POST {path} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let r = c.read_response(false).expect("admin answer");
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

fn get(admin: SocketAddr, path: &str) -> Value {
    let r = common::client::get(admin, path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    serde_json::from_slice(&r.body).expect("JSON")
}

fn counts(v: &Value) -> (u64, u64, u64, u64) {
    let n = |k: &str| v[k].as_u64().unwrap_or(u64::MAX);
    (n("matched"), n("delivered"), n("skipped"), n("dropped"))
}

fn client(lb: &Proc, path: &str) -> WsConn<TcpStream> {
    let ws = WsConn::try_connect(lb.http(), path, &[("X-Wslb-Conn", "spoofed-0-1")])
        .unwrap_or_else(|r| panic!("upgrade refused: {r:?}"));
    ws.set_read_timeout(Duration::from_secs(5));
    ws
}

fn text(ws: &mut WsConn<TcpStream>) -> String {
    let m = ws.recv_msg();
    assert_eq!(m.opcode, OpCode::Text, "{m:?}");
    String::from_utf8(m.payload).expect("utf-8")
}

fn nothing(ws: &mut WsConn<TcpStream>) {
    ws.set_read_timeout(Duration::from_millis(200));
    assert_eq!(ws.recv(), Event::Timeout);
    ws.set_read_timeout(Duration::from_secs(5));
}

/// Waits until the admin API lists `n` sessions.
fn sessions(admin: SocketAddr, n: u64) -> Vec<Value> {
    for _ in 0..100 {
        let v = get(admin, "/api/connections");
        if v["total"] == n {
            return v["sessions"].as_array().cloned().unwrap_or_default();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("never saw {n} sessions: {}", get(admin, "/api/connections"));
}

#[test]
fn ids_channels_and_every_operation_reach_the_right_sessions() {
    let backend = ChannelBackend::start();
    let p = lb(&backend, &[]);
    let admin = p.addr("admin");

    // The channel header never reaches the client.
    let mut raw = TcpStream::connect(p.http()).expect("connect");
    raw.write_all(b"GET /raw?ch=room:1 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && raw.read(&mut b).unwrap_or(0) == 1 {
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(!head.contains("x-wslb-channels"), "{head}");
    drop(raw);

    let mut a1 = client(&p, "/chat?ch=room:1");
    let mut a2 = client(&p, "/chat?ch=room:1%2Croom:2");
    let mut b1 = client(&p, "/feed?ch=room:2");
    let mut c1 = client(&p, "/feed");
    let list = sessions(admin, 4);
    // The backend learned each session's id; a client cannot name one.
    let seen = backend.conn_ids();
    assert!(!seen.iter().any(|id| id == "spoofed-0-1"), "{seen:?}");
    for s in &list {
        let id = s["id"].as_str().unwrap();
        assert!(seen.iter().any(|x| x == id), "{id} not in {seen:?}");
        assert_eq!(s["mode"], "inspect");
        assert!(s["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    }
    let id_of = |path: &str, channels: &[&str]| -> String {
        list.iter()
            .find(|s| {
                s["path"] == path
                    && s["channels"].as_array().unwrap().len() == channels.len()
                    && channels
                        .iter()
                        .all(|c| s["channels"].as_array().unwrap().iter().any(|x| x == c))
            })
            .map(|s| s["id"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no session on {path} in {channels:?}: {list:?}"))
    };
    let (a1_id, _a2_id) = (
        id_of("/chat", &["room:1"]),
        id_of("/chat", &["room:1", "room:2"]),
    );
    let (b1_id, c1_id) = (id_of("/feed", &["room:2"]), id_of("/feed", &[]));
    let room2 = get(admin, "/api/connections?channel=room%3A2");
    assert_eq!(room2["total"], 2);
    let page = get(admin, "/api/connections?limit=3");
    assert_eq!(page["sessions"].as_array().unwrap().len(), 3);
    assert_eq!(page["next_offset"], 3);
    let feed = get(admin, "/api/connections?path_prefix=/feed");
    assert_eq!(feed["total"], 2);

    // Publish to a channel: its members only.
    let (st, v) = post(
        admin,
        "/api/publish",
        r#"{"text":"to room 1","channel":"room:1"}"#,
    );
    assert_eq!((st, counts(&v)), (200, (2, 2, 0, 0)), "{v}");
    assert_eq!(text(&mut a1), "to room 1");
    assert_eq!(text(&mut a2), "to room 1");
    nothing(&mut b1);
    nothing(&mut c1);

    // Everyone, binary, but one excluded.
    let body = json!({"binary": "AAEC", "exclude": [c1_id]}).to_string();
    let (st, v) = post(admin, "/api/publish", &body);
    assert_eq!((st, counts(&v)), (200, (3, 3, 0, 0)), "{v}");
    for ws in [&mut a1, &mut a2, &mut b1] {
        let m = ws.recv_msg();
        assert_eq!((m.opcode, m.payload), (OpCode::Binary, vec![0, 1, 2]));
    }
    nothing(&mut c1);

    // Send to one; an unknown id is a 404.
    let (st, v) = post(
        admin,
        "/api/send",
        &json!({"id": c1_id, "text": "just you"}).to_string(),
    );
    assert_eq!((st, counts(&v)), (200, (1, 1, 0, 0)), "{v}");
    assert_eq!(text(&mut c1), "just you");
    nothing(&mut a1);
    let gone = format!("{}-9", &c1_id[..c1_id.rfind('-').unwrap()]);
    let (st, v) = post(
        admin,
        "/api/send",
        &json!({"id": gone, "text": "x"}).to_string(),
    );
    assert_eq!(st, 404, "{v}");
    assert!(v["error"].as_str().unwrap().contains("no such connection"));

    // Subscribe later; a channel with no members matches nobody.
    let sub = json!({"id": c1_id, "channels": ["room:2"]}).to_string();
    let (st, v) = post(admin, "/api/subscribe", &sub);
    assert_eq!((st, counts(&v)), (200, (1, 1, 0, 0)), "{v}");
    let (st, v) = post(
        admin,
        "/api/publish",
        r#"{"text":"two","channel":"room:2"}"#,
    );
    assert_eq!((st, counts(&v)), (200, (3, 3, 0, 0)), "{v}");
    for ws in [&mut a2, &mut b1, &mut c1] {
        assert_eq!(text(ws), "two");
    }
    nothing(&mut a1);
    let (st, v) = post(admin, "/api/publish", r#"{"text":"x","channel":"empty"}"#);
    assert_eq!((st, counts(&v)), (200, (0, 0, 0, 0)), "{v}");
    let unsub = json!({"id": c1_id, "channels": ["room:2"]}).to_string();
    assert_eq!(post(admin, "/api/unsubscribe", &unsub).0, 200);
    let (_, v) = post(
        admin,
        "/api/publish",
        r#"{"text":"x","channel":"room:2","backend":"nope"}"#,
    );
    assert_eq!(counts(&v).0, 0, "{v}");

    // Bad requests: 400 with a reason.
    for (path, body) in [
        ("/api/publish", "not json"),
        ("/api/publish", r#"{"text":"x","channel":""}"#),
        ("/api/publish", r#"{"channel":"a"}"#),
        ("/api/close", r#"{}"#),
        ("/api/ping", r#"{"timeout_ms":0}"#),
    ] {
        let (st, v) = post(admin, path, body);
        assert_eq!(st, 400, "{path} {body}: {v}");
        assert!(v["error"].is_string(), "{v}");
    }

    // Ping: the clients answer (the test reads while the ping waits).
    let pinger = std::thread::spawn(move || {
        post(
            admin,
            "/api/ping",
            r#"{"path_prefix":"/chat","timeout_ms":3000}"#,
        )
    });
    for ws in [&mut a1, &mut a2] {
        let m = ws.recv_msg();
        assert_eq!(m.opcode, OpCode::Ping, "{m:?}");
        assert!(ws.send_frame(true, OpCode::Pong, &m.payload));
    }
    let (st, v) = pinger.join().unwrap();
    assert_eq!((st, counts(&v)), (200, (2, 2, 0, 0)), "{v}");
    assert_eq!(v["pongs"], 2, "{v}");
    nothing(&mut b1);

    // Close by filter, with a code and reason.
    let (st, v) = post(
        admin,
        "/api/close",
        r#"{"channel":"room:2","code":4001,"reason":"bye"}"#,
    );
    assert_eq!((st, counts(&v)), (200, (2, 2, 0, 0)), "{v}");
    assert_eq!(a2.recv_close(), Some((4001, "bye".to_string())));
    assert_eq!(b1.recv_close(), Some((4001, "bye".to_string())));
    sessions(admin, 2);
    let (st, v) = post(admin, "/api/close", r#"{"all":true}"#);
    assert_eq!((st, counts(&v)), (200, (2, 2, 0, 0)), "{v}");
    assert_eq!(a1.recv_close().map(|c| c.0), Some(1000));
    assert_eq!(c1.recv_close().map(|c| c.0), Some(1000));
    sessions(admin, 0);
    let _ = (a1_id, b1_id);
}

#[test]
fn tunnel_sessions_are_skipped_and_a_slow_consumer_is_dropped_alone() {
    let backend = ChannelBackend::start();
    let tunnel = lb(&backend, &["--ws-mode", "tunnel"]);
    let mut t = client(&tunnel, "/?ch=news");
    sessions(tunnel.addr("admin"), 1);
    let (st, v) = post(
        tunnel.addr("admin"),
        "/api/publish",
        r#"{"text":"x","channel":"news"}"#,
    );
    assert_eq!((st, counts(&v)), (200, (1, 0, 1, 0)), "{v}");
    nothing(&mut t);
    drop(tunnel);

    let p = lb(&backend, &["--ws-send-queue", "256k"]);
    let admin = p.addr("admin");
    // The slow one never reads, with a small receive buffer.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&p.http().into()).unwrap();
    let slow_sock: TcpStream = sock.into();
    let mut slow = WsConn::try_connect_on(slow_sock, "/?ch=news", &[]).expect("upgrade");
    let mut fast = client(&p, "/?ch=news");
    sessions(admin, 2);
    let big = "y".repeat(60 * 1024);
    let body = json!({"text": big, "channel": "news"}).to_string();
    let mut dropped = 0;
    for i in 0..400 {
        let (st, v) = post(admin, "/api/publish", &body);
        assert_eq!(st, 200, "{v}");
        dropped += counts(&v).3;
        // The fast one keeps up.
        assert_eq!(text(&mut fast).len(), big.len(), "message {i}");
        if dropped > 0 {
            break;
        }
    }
    assert_eq!(dropped, 1, "the slow consumer is dropped once");
    // The others go on; the slow one is closed (1008 once it reads on).
    let (_, v) = post(
        admin,
        "/api/publish",
        r#"{"text":"after","channel":"news"}"#,
    );
    assert_eq!(counts(&v).1, 1, "{v}");
    assert_eq!(text(&mut fast), "after");
    slow.set_read_timeout(Duration::from_secs(5));
    let mut closed = None;
    for _ in 0..200 {
        match slow.recv() {
            Event::Msg(m) if m.opcode == OpCode::Close => {
                closed = Some(u16::from_be_bytes([m.payload[0], m.payload[1]]));
                break;
            }
            Event::Msg(_) => continue,
            _ => break,
        }
    }
    assert!(matches!(closed, Some(1008) | None), "{closed:?}");
    sessions(admin, 1);
}
