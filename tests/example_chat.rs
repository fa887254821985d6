//! The chat example (examples/chat.rs) as a user runs it: a real process
//! in front of the echo backend. `/who` is answered by the balancer itself
//! (listing every connected session, never reaching the backend); anything
//! else goes to the backend and comes back echoed; SIGTERM drains it.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::proc::{echo, Proc};
use common::ws_client::{Event, WsConn};
use wslb::proto::ws::frame::OpCode;

/// target/debug/deps/<this test> -> target/debug/examples/chat.
fn chat_exe() -> PathBuf {
    let me = std::env::current_exe().expect("current exe");
    let dir = me
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let exe = dir.join("examples").join("chat");
    assert!(
        exe.exists(),
        "{} missing: cargo test builds it",
        exe.display()
    );
    exe
}

fn text(ws: &mut WsConn<std::net::TcpStream>) -> String {
    let m = ws.recv_msg();
    assert_eq!(m.opcode, OpCode::Text, "{m:?}");
    String::from_utf8(m.payload).expect("utf-8")
}

#[test]
fn who_is_answered_by_the_balancer_and_the_rest_is_echoed() {
    let e = echo("e1");
    let backend = format!("http://{}", e.http());
    let mut chat = Proc::start_exe(
        &chat_exe(),
        &["--listen", "127.0.0.1:0", "--backend", &backend],
    );
    let mut a = WsConn::try_connect(chat.http(), "/room?x=1", &[]).expect("a upgrades");
    let mut b = WsConn::try_connect(chat.http(), "/room", &[]).expect("b upgrades");
    // Both sessions are established (the echo answers each).
    a.echo_text("a here");
    b.echo_text("b here");

    assert!(a.send_text("/who"));
    let who = text(&mut a);
    assert!(who.starts_with("2 connected"), "{who}");
    for ws in [&a, &b] {
        let peer = ws.stream.local_addr().expect("local addr").to_string();
        assert!(
            who.lines()
                .any(|l| l.contains(&peer) && l.contains("/room")),
            "{peer} missing from {who}"
        );
    }
    // The backend never saw `/who`: nothing else comes back for it, and
    // the next message is the next echo.
    assert!(a.send_text("hello"));
    assert_eq!(text(&mut a), "hello");
    a.set_read_timeout(Duration::from_millis(300));
    assert_eq!(a.recv(), Event::Timeout, "an echo of /who came back");

    // A session that leaves is no longer listed.
    assert!(b.send_close(1000, "bye"));
    assert!(b.recv_close().is_some());
    a.set_read_timeout(Duration::from_secs(10));
    let mut listed = String::new();
    for _ in 0..50 {
        assert!(a.send_text("/who"));
        listed = text(&mut a);
        if listed.starts_with("1 connected") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(listed.starts_with("1 connected"), "{listed}");

    assert!(a.send_close(1000, "bye"));
    assert!(a.recv_close().is_some());
    chat.signal(libc::SIGTERM);
    assert_eq!(
        chat.wait_exit(Duration::from_secs(10)),
        Some(0),
        "drains and exits"
    );
}
