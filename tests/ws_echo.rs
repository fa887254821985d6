//! WebSocket relay, happy paths: upgrade through plain and TLS listeners in
//! both modes; text, binary, fragmented (with an interleaved ping) and 8 MiB
//! messages echoed; ping answered by the backend; close handshakes started
//! by either side.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use common::certs;
use common::proc::{echo, serve, Proc};
use common::ws_client::{Event, WsConn};
use wslb::proto::ws::frame::OpCode;

const MODES: [&str; 2] = ["inspect", "tunnel"];

fn lb(mode: &str, extra: &[&str]) -> (Proc, Proc) {
    let e = echo("e1");
    let mut args = vec!["--ws-mode", mode];
    args.extend_from_slice(extra);
    let l = serve(&[&e], &args);
    (e, l)
}

/// Text, binary and a fragmented message with a ping between fragments.
fn exercise<S: std::io::Read + std::io::Write>(ws: &mut WsConn<S>, mode: &str) {
    ws.echo_text("hello");
    ws.echo_text("");
    ws.echo_text("ünïcödé ✓ 𝄞");
    let bin: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    assert!(ws.send_binary(&bin));
    let m = ws.recv_msg();
    assert_eq!(
        (m.opcode, m.payload.len()),
        (OpCode::Binary, bin.len()),
        "{mode}"
    );
    assert!(m.payload == bin, "{mode}: binary payload differs");

    assert!(ws.send_frame(false, OpCode::Text, b"frag"));
    assert!(ws.send_frame(true, OpCode::Ping, b"between"));
    assert!(ws.send_frame(false, OpCode::Continuation, "mé".as_bytes()));
    assert!(ws.send_frame(true, OpCode::Continuation, b"nted"));
    let pong = ws.recv_msg();
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (OpCode::Pong, &b"between"[..]),
        "{mode}"
    );
    let m = ws.recv_msg();
    assert_eq!(
        (m.opcode, m.payload.as_slice()),
        (OpCode::Text, "fragménted".as_bytes()),
        "{mode}"
    );
}

fn close_cleanly<S: std::io::Read + std::io::Write>(mut ws: WsConn<S>, code: u16, mode: &str) {
    assert!(ws.send_close(code, "bye"));
    assert_eq!(
        ws.recv_close().map(|c| c.0),
        Some(code),
        "{mode}: close echoed with the same code"
    );
    assert!(
        ws.closes_within(Duration::from_secs(3)),
        "{mode}: TCP closed after the close handshake"
    );
}

#[test]
fn plain_listener_both_modes() {
    for mode in MODES {
        let (_e, l) = lb(mode, &[]);
        let mut ws = WsConn::connect(l.http());
        exercise(&mut ws, mode);
        close_cleanly(ws, 1000, mode);
    }
}

#[test]
fn tls_listener_both_modes() {
    let cert = certs::generate(&["localhost", "127.0.0.1"]);
    let (c, k) = (
        cert.cert.to_string_lossy().into_owned(),
        cert.key.to_string_lossy().into_owned(),
    );
    for mode in MODES {
        let (_e, l) = lb(
            mode,
            &[
                "--tls-listen",
                "127.0.0.1:0",
                "--tls-cert",
                &c,
                "--tls-key",
                &k,
            ],
        );
        let mut ws = WsConn::connect_tls(
            l.addr("https"),
            certs::client_config(&cert.cert_pem),
            "localhost",
        );
        exercise(&mut ws, mode);
        let big = vec![b'x'; 1 << 20];
        assert!(ws.send_binary(&big));
        assert_eq!(
            ws.recv_msg().payload.len(),
            big.len(),
            "{mode}: 1 MiB over TLS"
        );
        close_cleanly(ws, 4321, mode);
    }
    cert.cleanup();
}

#[test]
fn eight_mib_messages_both_ways() {
    for mode in MODES {
        let (_e, l) = lb(mode, &["--max-message-size", "16m"]);
        let mut ws = WsConn::connect(l.http());
        ws.set_read_timeout(Duration::from_secs(20));
        let payload: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
        // Write from a second thread so neither side's buffers deadlock.
        let mut writer = ws.stream.try_clone().expect("clone");
        let p2 = payload.clone();
        let t = std::thread::spawn(move || {
            let mut out = Vec::new();
            wslb::proto::ws::frame::write_frame(
                &mut out,
                true,
                OpCode::Binary,
                Some([9, 8, 7, 6]),
                &p2,
            );
            std::io::Write::write_all(&mut writer, &out).is_ok()
        });
        let m = ws.recv_msg();
        assert!(t.join().expect("writer"), "{mode}: write 8 MiB");
        assert_eq!(m.payload.len(), payload.len(), "{mode}");
        assert!(m.payload == payload, "{mode}: 8 MiB payload differs");
        // And fragmented in 1 MiB pieces.
        for (i, chunk) in payload.chunks(1 << 20).enumerate() {
            let op = if i == 0 {
                OpCode::Binary
            } else {
                OpCode::Continuation
            };
            assert!(ws.send_frame(i == 7, op, chunk));
        }
        let m = ws.recv_msg();
        assert!(m.payload == payload, "{mode}: fragmented 8 MiB differs");
        close_cleanly(ws, 1000, mode);
    }
}

#[test]
fn client_ping_gets_backend_pong() {
    for mode in MODES {
        let (_e, l) = lb(mode, &[]);
        let mut ws = WsConn::connect(l.http());
        for payload in [&b""[..], b"p1", &[7u8; 125]] {
            assert!(ws.send_frame(true, OpCode::Ping, payload));
            let m = ws.recv_msg();
            assert_eq!(
                (m.opcode, m.payload.as_slice()),
                (OpCode::Pong, payload),
                "{mode}"
            );
        }
        // An unsolicited pong is ignored by the echo: nothing comes back.
        assert!(ws.send_frame(true, OpCode::Pong, b"unsolicited"));
        ws.echo_text("still here");
        close_cleanly(ws, 1000, mode);
    }
}

#[test]
fn empty_close_is_echoed() {
    for mode in MODES {
        let (_e, l) = lb(mode, &[]);
        let mut ws = WsConn::connect(l.http());
        ws.echo_text("x");
        assert!(ws.send_frame(true, OpCode::Close, b""));
        assert_eq!(ws.recv_close(), Some((1005, String::new())), "{mode}");
        assert!(ws.closes_within(Duration::from_secs(3)), "{mode}");
    }
}

/// Backend-initiated close: the echo refuses invalid UTF-8 with 1007; with
/// validation off the balancer forwards the text, and the echo's close (and
/// the TCP close after our reply) must reach the client.
#[test]
fn backend_initiated_close_reaches_client() {
    for mode in MODES {
        let (_e, l) = lb(mode, &[]);
        let mut ws = WsConn::connect(l.http());
        ws.echo_text("before");
        assert!(ws.send_frame(true, OpCode::Text, &[0x68, 0xC3, 0x28]));
        assert_eq!(
            ws.recv_close().map(|c| c.0),
            Some(1007),
            "{mode}: echo's close code"
        );
        assert!(ws.send_close(1007, ""));
        assert!(ws.closes_within(Duration::from_secs(3)), "{mode}");
    }
}

/// A fake backend that starts the close itself with 4001 and waits for the
/// reply; the client must see 4001, and its reply must reach the backend.
#[test]
fn fake_backend_close_handshake() {
    for mode in MODES {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let backend = std::thread::spawn(move || {
            let (s, _) = listener.accept().expect("accept");
            let mut ws = WsConn::accept(s);
            let m = ws.recv_msg();
            assert_eq!(m.payload, b"hi");
            assert!(ws.send_close(4001, "server done"));
            let reply = ws.recv_close();
            ws.drop_tcp();
            reply
        });
        let backend_url = format!("http://{addr}");
        let l = serve(
            &[],
            &[
                "--workers",
                "1",
                "--backend",
                &backend_url,
                "--ws-mode",
                mode,
            ],
        );
        let mut ws = WsConn::connect(l.http());
        assert!(ws.send_text("hi"));
        assert_eq!(
            ws.recv_close(),
            Some((4001, "server done".into())),
            "{mode}"
        );
        assert!(ws.send_close(4001, ""));
        assert!(ws.closes_within(Duration::from_secs(3)), "{mode}");
        let reply = backend.join().expect("backend thread");
        assert_eq!(
            reply.map(|c| c.0),
            Some(4001),
            "{mode}: backend got the client's reply"
        );
        match ws.recv() {
            Event::Eof | Event::Timeout => {}
            other => panic!("{mode}: unexpected {other:?}"),
        }
    }
}
