//! Hardening of the registry, end to end: bindings a backend may not register
//! (link-local, multicast, broadcast, outside --allow-backend-cidr, header
//! injection), the --max-backends cap, channels that end on a refused message
//! or a binary frame taking their registration with them, unregistered
//! channels that cannot linger, and HEAD /_lb/pick keeping keep-alive in step.
//!
//! Every accepted binding here is a loopback address; refused ones are never
//! connected to.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::admin::{backends, control, register, request, wait_for};
use common::client::{get, HttpConn};
use common::proc::{echo, Proc};
use common::sockets::connect_from;
use common::ws_client::{Event, WsConn};
use serde_json::json;
use wslb::proto::ws::frame::OpCode;

const TOKEN: &str = "t0ken";

fn balancer(extra: &[&str]) -> Proc {
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--no-pin",
        "--register-token",
        TOKEN,
    ];
    args.extend_from_slice(extra);
    Proc::start(&args)
}

fn channel(lb: &Proc) -> WsConn<TcpStream> {
    let ch = control(lb.http(), Some(TOKEN)).expect("control channel");
    ch.set_read_timeout(Duration::from_secs(5));
    ch
}

fn register_bindings(lb: &Proc, id: &str, bindings: &[&str]) -> serde_json::Value {
    let mut ch = channel(lb);
    request(
        &mut ch,
        &json!({"type": "register", "v": 1, "id": id, "bindings": bindings}),
    )
}

/// Reads the refusal a channel gets: the `error` text, then the close code.
fn refusal(ch: &mut WsConn<TcpStream>) -> (String, Option<u16>) {
    let mut message = String::new();
    loop {
        match ch.recv() {
            Event::Msg(m) if m.opcode == OpCode::Text => {
                let v: serde_json::Value = serde_json::from_slice(&m.payload).expect("json");
                assert_eq!(v["type"], "error", "{v}");
                message = v["message"].as_str().unwrap_or_default().to_string();
            }
            Event::Msg(m) if m.opcode == OpCode::Close => {
                let code = wslb::proto::ws::close::parse_close_payload(&m.payload)
                    .expect("close payload")
                    .map(|c| c.0);
                return (message, code);
            }
            other => panic!("expected an error and a close, got {other:?} (after {message:?})"),
        }
    }
}

#[test]
fn link_local_multicast_and_broadcast_bindings_are_refused() {
    let lb = balancer(&[]);
    let admin = lb.addr("admin");
    for (binding, why) in [
        ("http://169.254.169.254:80/latest/meta-data", "link-local"),
        ("http://[::ffff:169.254.169.254]:80", "link-local"),
        ("http://[fe80::1]:80", "link-local"),
        ("http://224.0.0.1:80", "multicast"),
        ("http://[ff02::1]:80", "multicast"),
        ("http://255.255.255.255:80", "broadcast"),
    ] {
        let reply = register_bindings(&lb, "x", &[binding]);
        assert_eq!(reply["type"], "error", "{binding}: {reply}");
        let message = reply["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{binding}: {message}");
        assert!(
            backends(admin).is_empty(),
            "{binding} stayed out of the pool"
        );
    }
}

#[test]
fn mapped_hosts_are_normalised_before_the_checks() {
    let e = echo("mapped");
    let port = e.http().port();
    let lb = balancer(&[]);
    // [::ffff:0.0.0.0] is the unspecified address: it takes the peer's.
    let mut ch = channel(&lb);
    let binding = format!("http://[::ffff:0.0.0.0]:{port}");
    let reply = request(
        &mut ch,
        &json!({"type": "register", "v": 1, "id": "m", "bindings": [binding]}),
    );
    assert_eq!(reply["type"], "registered", "{reply}");
    assert_eq!(reply["bindings"][0], format!("http://127.0.0.1:{port}"));
    // A loopback peer may register (mapped) loopback; it is written as IPv4.
    let mut ch2 = channel(&lb);
    let binding = format!("ws://[::ffff:127.0.0.1]:{port}/chat");
    let reply = request(
        &mut ch2,
        &json!({"type": "register", "v": 1, "id": "n", "bindings": [binding]}),
    );
    assert_eq!(reply["type"], "registered", "{reply}");
    assert_eq!(reply["bindings"][0], format!("ws://127.0.0.1:{port}/chat"));
    assert_eq!(get(lb.http(), "/").text().trim(), "mapped");
}

#[test]
fn the_allow_list_refuses_registered_bindings_outside_it() {
    // Everything stays on loopback: 127.0.0.2 is allowed, 127.0.0.1 is not.
    let inside = Proc::start(&["echo", "--listen", "127.0.0.2:0", "--name", "inside"]);
    let outside = echo("outside");
    let lb = balancer(&["--allow-backend-cidr", "127.0.0.2/32"]);
    let admin = lb.addr("admin");
    // The peer-filled address (127.0.0.1 here) is where traffic would go: it
    // is checked like any other.
    let mut ch = channel(&lb);
    let reply = register(&mut ch, "out", outside.http().port(), 1);
    assert_eq!(reply["type"], "error", "{reply}");
    let message = reply["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("--allow-backend-cidr 127.0.0.2/32") && message.contains("127.0.0.1"),
        "{message}"
    );
    let explicit = format!("http://{}", outside.http());
    let reply = register_bindings(&lb, "out", &[&explicit]);
    assert_eq!(reply["type"], "error", "{reply}");
    assert!(backends(admin).is_empty());

    let allowed = format!("http://{}", inside.http());
    let mut ch = channel(&lb);
    let reply = request(
        &mut ch,
        &json!({"type": "register", "v": 1, "id": "in", "bindings": [allowed]}),
    );
    assert_eq!(reply["type"], "registered", "{reply}");
    assert_eq!(get(lb.http(), "/").text().trim(), "inside");
    // Static backends are the operator's own: the allow-list does not apply.
    let lb2 = balancer(&[
        "--allow-backend-cidr",
        "127.0.0.2/32",
        "--backend",
        &explicit,
    ]);
    assert_eq!(get(lb2.http(), "/").text().trim(), "outside");
}

#[test]
fn a_binding_cannot_inject_headers_into_pick_redirects() {
    let lb = balancer(&[]);
    let admin = lb.addr("admin");
    for evil in [
        "http://127.0.0.1:9/x\r\nSet-Cookie: a=b",
        "http://127.0.0.1:9/x\nSet-Cookie: a=b",
        "http://127.0.0.1:9/x Set-Cookie",
        "http://127.0.0.1:9/x#\r\nSet-Cookie: a=b",
    ] {
        let reply = register_bindings(&lb, "evil", &[evil]);
        assert_eq!(reply["type"], "error", "{evil:?}: {reply}");
        assert!(
            backends(admin).is_empty(),
            "{evil:?} stayed out of the pool"
        );
        let r = get(lb.http(), "/_lb/pick?redirect=1");
        assert!(r.header("set-cookie").is_none(), "{evil:?}: {r:?}");
        assert_ne!(r.status, 307, "{evil:?}: {r:?}");
    }
    // A clean binding with a path redirects to exactly that URL.
    let e = echo("clean");
    let clean = format!("http://{}/a?b=c", e.http());
    let mut ch = channel(&lb);
    let reply = request(
        &mut ch,
        &json!({"type": "register", "v": 1, "id": "clean", "bindings": [clean]}),
    );
    assert_eq!(reply["type"], "registered", "{reply}");
    let r = get(lb.http(), "/_lb/pick?redirect=1");
    assert_eq!(r.status, 307);
    assert_eq!(r.header("location"), Some(clean.as_str()));
    assert!(r.header("set-cookie").is_none());
}

#[test]
fn head_pick_sends_no_body_and_keep_alive_stays_in_step() {
    let e = echo("head");
    let lb = balancer(&[]);
    let mut ch = channel(&lb);
    assert_eq!(
        register(&mut ch, "h", e.http().port(), 1)["type"],
        "registered"
    );
    let mut conn = HttpConn::connect(lb.http());
    conn.stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    for path in ["/_lb/pick", "/_lb/pick?redirect=1"] {
        conn.send(format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let head = conn.read_response(true).expect("HEAD response");
        let get_r = conn.get(path);
        let len: usize = head
            .header("content-length")
            .expect("HEAD carries Content-Length")
            .parse()
            .expect("length");
        assert_eq!(head.status, get_r.status, "{path}");
        assert_eq!(len, get_r.body.len(), "{path}: the length of the GET body");
        assert!(len > 0);
        assert_eq!(head.header("location"), get_r.header("location"), "{path}");
    }
    let r = conn.get("/_lb/pick");
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json after HEADs");
    assert_eq!(v["id"], "h");
}

#[test]
fn the_backend_cap_counts_static_backends_and_frees_slots() {
    let s = echo("static");
    let e = echo("reg");
    let static_url = format!("http://{}", s.http());
    let lb = balancer(&["--max-backends", "2", "--backend", &static_url]);
    let admin = lb.addr("admin");
    // Channels that never register hold no slot.
    let idle: Vec<WsConn<TcpStream>> = (0..4).map(|_| channel(&lb)).collect();
    let mut a = channel(&lb);
    assert_eq!(
        register(&mut a, "a", e.http().port(), 1)["type"],
        "registered"
    );
    let mut b = channel(&lb);
    assert!(b.send_text(
        &json!({"type": "register", "v": 1, "id": "b", "bindings": [format!(":{}", e.http().port())]})
            .to_string()
    ));
    let (message, code) = refusal(&mut b);
    assert!(message.contains("--max-backends"), "{message}");
    assert_eq!(code, Some(1013));
    assert_eq!(backends(admin).len(), 2);
    // Re-registering a member is fine when full; a freed slot is reusable.
    assert_eq!(
        register(&mut a, "a", e.http().port(), 2)["type"],
        "registered"
    );
    assert!(a.send_close(1000, "bye"));
    wait_for(admin, Duration::from_secs(3), "a to leave", |l| {
        l.len() == 1
    });
    let mut c = channel(&lb);
    assert_eq!(
        register(&mut c, "c", e.http().port(), 1)["type"],
        "registered"
    );
    drop(idle);
}

#[test]
fn a_refused_message_removes_the_channels_registration_at_once() {
    let e = echo("refused");
    let lb = balancer(&["--heartbeat-timeout", "60s"]);
    let admin = lb.addr("admin");
    for bad in [
        r#"{"type":"heartbeat"}"#.to_string(),
        "{broken".to_string(),
        json!({"type": "register", "v": 1, "id": "r", "bindings": ["http://169.254.169.254/"]})
            .to_string(),
    ] {
        let mut ch = channel(&lb);
        assert_eq!(
            register(&mut ch, "r", e.http().port(), 1)["type"],
            "registered"
        );
        assert_eq!(backends(admin).len(), 1);
        let start = Instant::now();
        assert!(ch.send_text(&bad));
        let (message, code) = refusal(&mut ch);
        assert!(!message.is_empty());
        assert_eq!(code, Some(1008), "{bad}");
        wait_for(
            admin,
            Duration::from_secs(2),
            "the registration to leave",
            |l| l.is_empty(),
        );
        assert!(start.elapsed() < Duration::from_secs(2), "{bad}");
    }
}

#[test]
fn a_binary_frame_closes_the_channel_with_1003_and_removes_it() {
    let e = echo("binary");
    let lb = balancer(&["--heartbeat-timeout", "60s"]);
    let admin = lb.addr("admin");
    let mut ch = channel(&lb);
    assert_eq!(
        register(&mut ch, "bin", e.http().port(), 1)["type"],
        "registered"
    );
    assert!(ch.send_binary(b"\x00\x01not json"));
    let (message, code) = refusal(&mut ch);
    assert!(message.contains("binary"), "{message}");
    assert_eq!(code, Some(1003));
    wait_for(
        admin,
        Duration::from_secs(2),
        "the registration to leave",
        |l| l.is_empty(),
    );
    // An unregistered channel gets the same answer.
    let mut fresh = channel(&lb);
    assert!(fresh.send_binary(b"x"));
    assert_eq!(refusal(&mut fresh).1, Some(1003));
}

#[test]
fn an_unregistered_channel_cannot_linger_on_pings() {
    let lb = balancer(&["--heartbeat-timeout", "600ms"]);
    let mut ch = channel(&lb);
    ch.set_read_timeout(Duration::from_millis(100));
    let start = Instant::now();
    let code = loop {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "still open after {:?}",
            start.elapsed()
        );
        if !ch.send_frame(true, OpCode::Ping, b"hi") {
            break None;
        }
        match ch.recv() {
            Event::Msg(m) if m.opcode == OpCode::Close => {
                break wslb::proto::ws::close::parse_close_payload(&m.payload)
                    .expect("close payload")
                    .map(|c| c.0);
            }
            Event::Eof => break None,
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert_eq!(code, Some(1008));
    assert!(start.elapsed() >= Duration::from_millis(500));
}

/// A control channel from a chosen loopback source address.
fn channel_from(lb: &Proc, local: &str) -> WsConn<TcpStream> {
    let auth = format!("Bearer {TOKEN}");
    let s = connect_from(local, lb.http());
    let ch = WsConn::try_connect_on(s, "/_lb/register", &[("Authorization", auth.as_str())])
        .expect("control channel");
    ch.set_read_timeout(Duration::from_secs(5));
    ch
}

#[test]
fn a_live_backend_id_cannot_be_taken_over_from_another_address() {
    let lb = balancer(&["--allow-backend-cidr", "127.0.0.0/8"]);
    let admin = lb.addr("admin");
    let mut owner = channel_from(&lb, "127.0.0.1");
    let reply = register(&mut owner, "shared", 9101, 1);
    assert_eq!(reply["type"], "registered", "{reply}");
    let mut thief = channel_from(&lb, "127.0.0.2");
    assert!(thief.send_text(
        &json!({"type": "register", "v": 1, "id": "shared", "bindings": [":9102"]}).to_string()
    ));
    let (message, code) = refusal(&mut thief);
    assert!(message.contains("another address"), "{message}");
    assert_eq!(code, Some(1008));
    let b = backends(admin)
        .into_iter()
        .find(|b| b["id"] == "shared")
        .expect("still registered");
    assert_eq!(b["bindings"][0], "http://127.0.0.1:9101", "{b}");
    // The backend itself reconnecting (same address) takes its id back.
    let mut again = channel_from(&lb, "127.0.0.1");
    let reply = register(&mut again, "shared", 9103, 1);
    assert_eq!(reply["type"], "registered", "{reply}");
    drop(owner);
}
