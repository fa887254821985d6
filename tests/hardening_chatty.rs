//! Hardening against a client that keeps sending but never reads: it is
//! never silent, so neither pings (inspect mode) nor the tunnel's idle
//! timeout notice it; the write toward it that gets nowhere must end the
//! session in either relay mode.

mod common;

use std::time::{Duration, Instant};

use common::proc::{echo, serve};
use common::sockets::{open_connections, small_buffer_socket};
use common::ws_client::WsConn;
use wslb::proto::ws::frame::OpCode;

/// How long the stalled session may live at most before the test fails.
const BOUND: Duration = Duration::from_secs(10);

/// Through a balancer started with `mode_flags` in front of the echo
/// backend: a burst of echoes the client never reads (enough to stall the
/// balancer's writer toward it, not enough to fill every buffer on the
/// way), then a small message every 200 ms, never reading. The balancer
/// must end the session within [`BOUND`].
fn chatty_client_that_never_reads_is_let_go(mode_flags: &[&str]) {
    let e = echo("chatty-stall");
    let mut flags = vec!["--workers", "1", "--admin-listen", "127.0.0.1:0"];
    flags.extend_from_slice(mode_flags);
    let lb = serve(&[&e], &flags);
    let admin = lb.addr("admin");
    let mut ws = WsConn::connect_on(small_buffer_socket(lb.http()));
    ws.echo_text("hello");
    assert_eq!(open_connections(admin), 1);
    ws.set_write_timeout(Duration::from_secs(1));
    let chunk = vec![0x5au8; 16 * 1024];
    for _ in 0..512 {
        assert!(
            ws.send_frame(true, OpCode::Binary, &chunk),
            "the burst filled every buffer"
        );
    }
    let start = Instant::now();
    let mut sends = 0u32;
    while start.elapsed() < BOUND {
        // A failed send is the session ending under us: counted below.
        if ws.send_frame(true, OpCode::Text, b"still here") {
            sends += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
        if open_connections(admin) == 0 {
            eprintln!("closed after {:?} ({sends} sends)", start.elapsed());
            return;
        }
    }
    panic!("the balancer kept a client that never reads for {BOUND:?} ({sends} sends)");
}

#[test]
fn inspect_mode_ends_a_chatty_session_whose_client_never_reads() {
    chatty_client_that_never_reads_is_let_go(&[
        "--ws-mode",
        "inspect",
        "--ws-ping-interval",
        "1s",
        "--ws-pong-timeout",
        "1s",
    ]);
}

#[test]
fn tunnel_mode_ends_a_chatty_session_whose_client_never_reads() {
    chatty_client_that_never_reads_is_let_go(&["--ws-mode", "tunnel", "--idle-timeout", "1s"]);
}
