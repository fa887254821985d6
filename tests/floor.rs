//! `wslb floor`, the perf measurement floor: bytes pass through unparsed,
//! HTTP keep-alive and WebSocket work through it, a backend connection a
//! client leaves clean serves the next client, and one left as a WebSocket
//! does not.

mod common;

use std::time::Duration;

use common::client::HttpConn;
use common::proc::{echo, Proc};
use common::ws_client::WsConn;

fn floor(backend: &Proc) -> Proc {
    let b = backend.http().to_string();
    Proc::start(&["floor", "--listen", "127.0.0.1:0", "--backend", &b])
}

#[test]
fn http_keep_alive_and_pooled_backend() {
    let e = echo("e1");
    let f = floor(&e);
    let mut c = HttpConn::connect(f.http());
    for n in 1..=2 {
        let r = c.get("/");
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "e1\n");
        assert_eq!(r.header("X-Backend"), Some("e1"));
        assert_eq!(r.header("X-Conn-Requests"), Some(n.to_string().as_str()));
    }
    drop(c);
    // The client left its backend connection clean: the next client gets it.
    std::thread::sleep(Duration::from_millis(200));
    let mut c = HttpConn::connect(f.http());
    let r = c.get("/");
    assert_eq!((r.status, r.text()), (200, "e1\n".to_string()));
    assert_eq!(r.header("X-Conn-Requests"), Some("3"));
}

#[test]
fn websocket_echo_and_no_reuse_after_upgrade() {
    let e = echo("e1");
    let f = floor(&e);
    let mut ws = WsConn::connect(f.http());
    ws.echo_text("hello");
    let big: String = "x".repeat(70_000);
    ws.echo_text(&big);
    ws.echo_text("bye");
    // Drop the TCP connection without a close handshake: the backend side is
    // still an open WebSocket and must not serve the next client.
    drop(ws);
    std::thread::sleep(Duration::from_millis(200));
    let mut c = HttpConn::connect(f.http());
    let r = c.get("/");
    assert_eq!((r.status, r.text()), (200, "e1\n".to_string()));
    assert_eq!(r.header("X-Conn-Requests"), Some("1"));
}
