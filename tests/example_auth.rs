//! The auth example (examples/auth.rs) as a user runs it: a real process in
//! front of the echo backend, on loopback. Without a token a WebSocket
//! upgrade is refused 401 and no session opens; with the token it opens, a
//! message is echoed, and the backend saw the `X-User` the hook added.

mod common;

use std::time::Duration;

use common::proc::{echo, example, Proc};
use common::ws_client::WsConn;

const TOKEN: &str = "t0ken-for-tests";

fn start() -> (Proc, Proc) {
    let backend = echo("auth-backend");
    let url = format!("http://{}", backend.http());
    let lb = Proc::start_exe(
        &example("auth"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--backend",
            &url,
            "--token",
            TOKEN,
            "--user",
            "alice",
        ],
    );
    (backend, lb)
}

#[test]
fn an_upgrade_without_a_valid_token_is_refused_401_and_opens_no_session() {
    let (_backend, lb) = start();
    let addr = lb.http();
    for (path, extra) in [
        ("/", vec![]),
        ("/?token=wrong", vec![]),
        ("/", vec![("Authorization", "Bearer wrong")]),
        ("/", vec![("Authorization", TOKEN)]),
    ] {
        let refused = WsConn::try_connect(addr, path, &extra)
            .err()
            .unwrap_or_else(|| panic!("{path} {extra:?}: session opened"));
        assert_eq!(refused.status, 401, "{path} {extra:?}: {}", refused.head);
        assert!(
            refused.head.contains("Connection: close"),
            "{}",
            refused.head
        );
        let body = String::from_utf8_lossy(&refused.rest).into_owned();
        assert!(body.contains("token"), "reason body: {body:?}");
    }
}

#[test]
fn an_upgrade_with_the_token_opens_a_session_and_the_backend_sees_the_user() {
    let (_backend, lb) = start();
    let addr = lb.http();
    // In the query.
    let mut ws = WsConn::try_connect(addr, &format!("/headers?token={TOKEN}"), &[])
        .unwrap_or_else(|r| panic!("refused: {r:?}"));
    let hello = ws.recv_msg();
    let head = String::from_utf8_lossy(&hello.payload).into_owned();
    assert!(head.starts_with("auth-backend\n"), "{head}");
    assert!(head.contains("\r\nX-User: alice\r\n"), "{head}");
    ws.echo_text("hello through auth");
    // As a bearer token.
    let bearer = format!("Bearer {TOKEN}");
    let mut ws = WsConn::try_connect(addr, "/headers", &[("Authorization", &bearer)])
        .unwrap_or_else(|r| panic!("refused: {r:?}"));
    let head = String::from_utf8_lossy(&ws.recv_msg().payload).into_owned();
    assert!(head.contains("\r\nX-User: alice\r\n"), "{head}");
    ws.echo_text("again");
}

#[test]
fn the_example_drains_and_exits_on_sigterm() {
    let (_backend, mut lb) = start();
    lb.signal(libc::SIGTERM);
    assert_eq!(lb.wait_exit(Duration::from_secs(15)), Some(0));
}
