//! What the SSE client tests share: the page scripts, the messages of an
//! exchange and their expected echoes, page preparation, and small admin
//! API and request-line helpers.

use std::net::SocketAddr;

use serde_json::{json, Value};

use crate::common::cdp::Browser;

/// The page helper defining `window.__exchange`.
pub const EXCHANGE_JS: &str = include_str!("exchange.js");

/// Loads `/_lb/client.js` into the page with a script tag (same origin).
pub const LOAD_CLIENT: &str = "new Promise((resolve, reject) => { \
    const s = document.createElement('script'); \
    s.src = '/_lb/client.js'; \
    s.onload = () => resolve(typeof window.WslbSocket); \
    s.onerror = () => reject(new Error('/_lb/client.js did not load')); \
    (document.head || document.documentElement).appendChild(s); })";

/// A WebSocket stand-in that never opens nor fails (the open timeout must
/// end the attempt).
pub const STALLED_WEBSOCKET: &str = "window.WebSocket = class { \
    constructor(url) { this.url = url; this.readyState = 0; window.__stalled = (window.__stalled || 0) + 1; } \
    close() { this.readyState = 3; window.__stalledClosed = true; } \
    send() { throw new Error('stalled socket used'); } }; true";

/// The messages of one exchange: text ones (an empty, a multi-line and a
/// non-ASCII one among them) and binary ones in each form `send` takes
/// (an empty one too).
pub fn messages() -> Vec<Value> {
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    vec![
        json!({"t": "text", "v": "hello"}),
        json!({"t": "text", "v": ""}),
        json!({"t": "text", "v": "a\nb\nc"}),
        json!({"t": "text", "v": "héllo ✓ \u{1F600} data: id: event:"}),
        json!({"t": "bin", "v": all_bytes, "as": "view"}),
        json!({"t": "bin", "v": [0, 1, 2, 3, 0xff], "as": "buffer"}),
        json!({"t": "bin", "v": [b'x', b'y', b'z'], "as": "blob"}),
        json!({"t": "bin", "v": Vec::<u8>::new(), "as": "buffer"}),
    ]
}

/// The echoes expected for `sent`, binary ones received as `kind`.
pub fn expected_echoes(sent: &[Value], kind: &str) -> Vec<Value> {
    sent.iter()
        .map(|m| {
            if m["t"] == "text" {
                json!({"t": "text", "v": m["v"]})
            } else {
                json!({"t": "bin", "v": m["v"], "kind": kind})
            }
        })
        .collect()
}

/// Bytes the messages make on the wire (UTF-8 text, raw binary).
pub fn payload_bytes(sent: &[Value]) -> u64 {
    sent.iter()
        .map(|m| match &m["v"] {
            Value::String(s) => s.len() as u64,
            Value::Array(a) => a.len() as u64,
            _ => 0,
        })
        .sum()
}

/// Opens a fresh page of `origin` (the echo backend answers `GET /`
/// through the balancer), loads the client and the page helpers, and runs
/// `setup` there.
pub fn prepare(page: &mut Browser, origin: SocketAddr, setup: &str) {
    page.navigate(&format!("http://{origin}/"));
    assert_eq!(page.eval(LOAD_CLIENT), "function", "WslbSocket defined");
    page.eval(EXCHANGE_JS);
    if !setup.is_empty() {
        page.eval(setup);
    }
}

/// The value of `line` if it is a header line named `name`.
pub fn header_value(line: &str, name: &str) -> Option<String> {
    let (n, v) = line.split_once(':')?;
    n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
}

pub use crate::common::admin::{connection_ids as listed, post_json as admin_post};
