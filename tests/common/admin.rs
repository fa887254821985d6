//! Reading and driving a balancer's admin API and its control channel from
//! tests: backend lists, drain/resume, and a raw control-channel peer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::client::{HttpConn, Response};
use super::ws_client::{Refused, WsConn};
use wslb::proto::ws::frame::OpCode;

/// `POST path` with a JSON body (given as text) on the admin listener.
pub fn post_body(admin: SocketAddr, path: &str, body: &str) -> Response {
    let mut c = HttpConn::connect(admin);
    c.send(
        format!(
            "POST {path} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    c.read_response(false).expect("admin answer")
}

/// `POST path` with a JSON body on the admin listener: the status and the
/// JSON answer (null when it is not JSON).
pub fn post_json(
    admin: SocketAddr,
    path: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = post_body(admin, path, &body.to_string());
    let value = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
    (r.status, value)
}

/// The session ids `GET /api/connections` lists.
pub fn connection_ids(admin: SocketAddr) -> Vec<String> {
    let r = super::client::get(admin, "/api/connections");
    assert_eq!(r.status, 200, "/api/connections: {}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("connections JSON");
    v["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter_map(|s| s["id"].as_str().map(String::from))
        .collect()
}

/// `GET /api/backends` as JSON values.
pub fn backends(admin: SocketAddr) -> Vec<serde_json::Value> {
    let r = super::client::get(admin, "/api/backends");
    assert_eq!(r.status, 200, "admin answered {}: {}", r.status, r.text());
    serde_json::from_slice::<Vec<serde_json::Value>>(&r.body).expect("backends JSON")
}

/// The entry of backend `id`, if listed.
pub fn backend(admin: SocketAddr, id: &str) -> Option<serde_json::Value> {
    backends(admin).into_iter().find(|b| b["id"] == id)
}

/// Polls until `cond` holds on the backend list, or panics after `within`.
pub fn wait_for(
    admin: SocketAddr,
    within: Duration,
    what: &str,
    cond: impl Fn(&[serde_json::Value]) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        let list = backends(admin);
        if cond(&list) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; backends: {list:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `POST /api/backends/{id}/{action}`.
pub fn post(admin: SocketAddr, id: &str, action: &str) -> Response {
    let enc: String = id
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let mut c = HttpConn::connect(admin);
    c.send(format!("POST /api/backends/{enc}/{action} HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
    c.read_response(false).expect("admin response")
}

/// Opens a control channel with `token` (None: no Authorization header).
pub fn control(
    addr: SocketAddr,
    token: Option<&str>,
) -> Result<WsConn<std::net::TcpStream>, Refused> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    WsConn::try_connect(addr, "/_lb/register", &headers)
}

/// Sends a JSON text message and returns the next text reply as JSON.
pub fn request(ch: &mut WsConn<std::net::TcpStream>, msg: &serde_json::Value) -> serde_json::Value {
    assert!(ch.send_text(&msg.to_string()), "send control message");
    let m = ch.recv_msg();
    assert_eq!(m.opcode, OpCode::Text, "expected a text reply, got {m:?}");
    serde_json::from_slice(&m.payload).expect("reply JSON")
}

/// Registers `id` with a port-only binding for `port`.
pub fn register(
    ch: &mut WsConn<std::net::TcpStream>,
    id: &str,
    port: u16,
    weight: u32,
) -> serde_json::Value {
    request(
        ch,
        &serde_json::json!({"type": "register", "v": 1, "id": id, "bindings": [format!(":{port}")], "weight": weight}),
    )
}
