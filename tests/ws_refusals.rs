//! WebSocket refusals, each with its HTTP status or close code: 403 origin
//! (before any backend is touched), 426 version, 400 key; 1009 too big, 1007
//! invalid UTF-8 with validation on, 1002 for unmasked frames, reserved bits
//! and reserved opcodes.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::client::HttpConn;
use common::proc::{echo, serve, Proc};
use common::ws_client::WsConn;
use wslb::proto::ws::frame::{write_frame, OpCode};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn upgrade_head(version: &str, key: &str, extra: &str) -> String {
    format!(
        "GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: {version}\r\nSec-WebSocket-Key: {key}\r\n{extra}\r\n"
    )
}

fn answer(addr: std::net::SocketAddr, head: &str) -> common::client::Response {
    let mut c = HttpConn::connect(addr);
    c.send(head.as_bytes());
    c.read_response(false).expect("a response")
}

#[test]
fn origin_refused_with_403_before_any_backend() {
    // A backend that must never see a connection for refused origins.
    let trap = TcpListener::bind("127.0.0.1:0").expect("bind");
    trap.set_nonblocking(true).expect("nonblocking");
    let trap_url = format!("http://{}", trap.local_addr().expect("addr"));
    let l = serve(
        &[],
        &[
            "--workers",
            "1",
            "--backend",
            &trap_url,
            "--allowed-origins",
            "http://localhost:*,https://app.example.com",
        ],
    );
    for origin in [
        "Origin: http://evil.example\r\n",
        "Origin: https://localhost:8080\r\n",
        "",
    ] {
        let r = answer(l.http(), &upgrade_head("13", KEY, origin));
        assert_eq!(r.status, 403, "origin {origin:?}");
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        trap.accept().is_err(),
        "a refused upgrade reached the backend"
    );

    // Allowed origins pass through to a real backend.
    let e = echo("e");
    let l = serve(
        &[&e],
        &[
            "--allowed-origins",
            "http://localhost:*,https://app.example.com",
        ],
    );
    for origin in ["http://localhost:3000", "https://app.example.com"] {
        let mut ws = WsConn::try_connect(l.http(), "/", &[("Origin", origin)])
            .unwrap_or_else(|r| panic!("{origin} refused: {}", r.status));
        ws.echo_text(origin);
    }
    let refused = WsConn::try_connect(l.http(), "/", &[("Origin", "http://localhost.evil")]);
    assert_eq!(refused.err().map(|r| r.status), Some(403));
}

#[test]
fn wrong_version_426_and_bad_key_400() {
    let e = echo("e");
    for mode in ["inspect", "tunnel"] {
        let l = serve(&[&e], &["--ws-mode", mode]);
        for v in ["8", "12", "14", ""] {
            let r = answer(l.http(), &upgrade_head(v, KEY, ""));
            assert_eq!(r.status, 426, "version {v:?}");
            assert_eq!(
                r.header("sec-websocket-version"),
                Some("13"),
                "426 names the version"
            );
        }
        let missing = "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Version: 13\r\n\r\n";
        assert_eq!(answer(l.http(), missing).status, 400, "missing key");
        for key in [
            "short",
            "dGhlIHNhbXBsZSBub25jZQ",
            "AAAAAAAAAAAAAAAAAAAAAAAA",
            "dGhlIHNhbXBsZSBub25jZQ=!",
        ] {
            assert_eq!(
                answer(l.http(), &upgrade_head("13", key, "")).status,
                400,
                "key {key:?}"
            );
        }
        // The same connection shape with a good key and version upgrades.
        let mut ws = WsConn::connect(l.http());
        ws.echo_text("ok");
    }
}

/// Sends `bytes` after a good echo and expects close `code` then EOF.
fn expect_close_after(l: &Proc, bytes: &[u8], code: u16, what: &str) -> String {
    let mut ws = WsConn::connect(l.http());
    ws.echo_text("warm-up");
    assert!(ws.send_raw(bytes), "{what}: send");
    let got = ws.recv_close();
    assert_eq!(got.as_ref().map(|c| c.0), Some(code), "{what}");
    assert!(
        ws.closes_within(Duration::from_secs(3)),
        "{what}: connection closed"
    );
    got.map(|c| c.1).unwrap_or_default()
}

fn frame(fin: bool, op: OpCode, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, fin, op, mask, payload);
    out
}

const M: Option<[u8; 4]> = Some([1, 2, 3, 4]);

#[test]
fn too_big_closes_1009() {
    let e = echo("e");
    let l = serve(&[&e], &["--ws-mode", "inspect", "--max-message-size", "4k"]);
    expect_close_after(
        &l,
        &frame(true, OpCode::Binary, M, &[0; 5000]),
        1009,
        "one big frame",
    );
    // Three fragments of 2 KiB: the message grows past the limit.
    let mut b = frame(false, OpCode::Text, M, &[b'a'; 2048]);
    b.extend(frame(false, OpCode::Continuation, M, &[b'a'; 2048]));
    b.extend(frame(true, OpCode::Continuation, M, &[b'a'; 2048]));
    expect_close_after(&l, &b, 1009, "fragmented message");
    // A header announcing a huge payload is refused before it arrives.
    let mut huge = vec![0x82, 0xFF];
    huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
    huge.extend_from_slice(&[1, 2, 3, 4]);
    expect_close_after(&l, &huge, 1009, "header with a 1 TiB length");
    // Right at the limit passes.
    let mut ws = WsConn::connect(l.http());
    assert!(ws.send_binary(&[5; 4096]));
    assert_eq!(ws.recv_msg().payload.len(), 4096);
}

#[test]
fn invalid_utf8_closes_1007_when_validating() {
    let e = echo("e");
    let l = serve(&[&e], &["--ws-mode", "inspect", "--ws-validate-utf8"]);
    let bad = frame(true, OpCode::Text, M, &[b'o', b'k', 0xED, 0xA0, 0x80]);
    let reason = expect_close_after(&l, &bad, 1007, "invalid text");
    // The echo closes with an empty reason; the balancer names its refusal.
    assert!(
        !reason.is_empty(),
        "1007 came from the backend, not the balancer"
    );
    // Invalid in a later fragment, and a truncated sequence at the end.
    let mut b = frame(false, OpCode::Text, M, "é".as_bytes());
    b.extend(frame(true, OpCode::Continuation, M, &[0xFF]));
    expect_close_after(&l, &b, 1007, "invalid continuation");
    let trunc = frame(true, OpCode::Text, M, &[b'a', 0xE2, 0x82]);
    expect_close_after(&l, &trunc, 1007, "truncated sequence");
    // Binary is never validated; a code point split across fragments is fine.
    let mut ws = WsConn::connect(l.http());
    assert!(ws.send_binary(&[0xFF, 0xFE]));
    assert_eq!(ws.recv_msg().payload, [0xFF, 0xFE]);
    assert!(ws.send_frame(false, OpCode::Text, &[0xE2, 0x82]));
    assert!(ws.send_frame(true, OpCode::Continuation, &[0xAC]));
    assert_eq!(ws.recv_msg().payload, "€".as_bytes());
}

#[test]
fn protocol_errors_close_1002_in_both_modes() {
    let e = echo("e");
    for mode in ["inspect", "tunnel"] {
        let l = serve(&[&e], &["--ws-mode", mode]);
        let unmasked = frame(true, OpCode::Text, None, b"no mask");
        expect_close_after(
            &l,
            &unmasked,
            1002,
            &format!("{mode}: unmasked client frame"),
        );
        for rsv in [0x40u8, 0x20, 0x10] {
            let mut b = frame(true, OpCode::Text, M, b"rsv");
            b[0] |= rsv;
            expect_close_after(&l, &b, 1002, &format!("{mode}: rsv bit {rsv:#x}"));
        }
        for op in [0x3u8, 0x7, 0xB, 0xF] {
            let mut b = frame(true, OpCode::Binary, M, b"op");
            b[0] = (b[0] & 0xF0) | op;
            expect_close_after(&l, &b, 1002, &format!("{mode}: opcode {op:#x}"));
        }
        let cont = frame(true, OpCode::Continuation, M, b"orphan");
        expect_close_after(
            &l,
            &cont,
            1002,
            &format!("{mode}: continuation without a message"),
        );
        let frag_ping = frame(false, OpCode::Ping, M, b"");
        expect_close_after(&l, &frag_ping, 1002, &format!("{mode}: fragmented ping"));
        let bad_code = frame(true, OpCode::Close, M, &1005u16.to_be_bytes());
        expect_close_after(
            &l,
            &bad_code,
            1002,
            &format!("{mode}: close code 1005 on the wire"),
        );
    }
}

/// A protocol error does not overtake what the backend already sent: the
/// echo of the valid message comes first, then exactly one close (1002),
/// then the end of the connection (no second close, no data after it).
#[test]
fn error_close_follows_what_the_backend_sent_first() {
    let e = echo("e");
    let l = serve(&[&e], &["--ws-mode", "inspect"]);
    for _ in 0..5 {
        let mut ws = WsConn::connect(l.http());
        let mut b = frame(true, OpCode::Text, M, b"hello");
        b.extend(frame(true, OpCode::Text, None, b"unmasked"));
        b.extend(frame(true, OpCode::Ping, M, b"never answered"));
        assert!(ws.send_raw(&b));
        let m = ws.recv_msg();
        assert_eq!(
            (m.opcode, m.payload.as_slice()),
            (OpCode::Text, &b"hello"[..])
        );
        let m = ws.recv_msg();
        assert_eq!(m.opcode, OpCode::Close);
        assert_eq!(&m.payload[..2], &1002u16.to_be_bytes());
        assert!(ws.send_close(1002, ""));
        ws.set_read_timeout(Duration::from_secs(3));
        match ws.recv() {
            common::ws_client::Event::Eof => {}
            other => panic!("expected the end after the close, got {other:?}"),
        }
    }
}

/// A backend that breaks the protocol (a masked frame toward the client):
/// the client gets 1001, the backend gets 1002 once the client has replied.
#[test]
fn backend_protocol_error_1002_to_backend_1001_to_client() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let backend = std::thread::spawn(move || {
        let (s, _) = listener.accept().expect("accept");
        let mut ws = WsConn::accept(s);
        assert_eq!(ws.recv_msg().payload, b"hi");
        assert!(ws.send_raw(&frame(true, OpCode::Text, M, b"masked by a server")));
        ws.recv_close()
    });
    let backend_url = format!("http://{addr}");
    let l = serve(&[], &["--workers", "1", "--backend", &backend_url]);
    let mut ws = WsConn::connect(l.http());
    assert!(ws.send_text("hi"));
    assert_eq!(ws.recv_close().map(|c| c.0), Some(1001), "client side");
    assert!(ws.send_close(1001, ""));
    let got = backend.join().expect("backend thread");
    assert_eq!(got.map(|c| c.0), Some(1002), "backend side");
    assert!(ws.closes_within(Duration::from_secs(3)));
}

/// Invalid UTF-8 in the middle of a frame still being received fails fast
/// (1007 at once), though the balancer's close to the backend cannot go out
/// mid-frame and so no close reply from the backend will come.
#[test]
fn invalid_utf8_mid_frame_fails_fast() {
    let e = echo("e");
    let l = serve(&[&e], &["--ws-mode", "inspect", "--ws-validate-utf8"]);
    let mut ws = WsConn::connect(l.http());
    let mut payload = vec![b'a'; 100];
    payload[40] = 0xFF;
    let whole = frame(true, OpCode::Text, M, &payload);
    // Header and 30 valid bytes, a pause, then the invalid byte onwards.
    let split = whole.len() - 70;
    assert!(ws.send_raw(&whole[..split]));
    std::thread::sleep(Duration::from_millis(100));
    assert!(ws.send_raw(&whole[split..split + 20]));
    ws.set_read_timeout(Duration::from_millis(700));
    let started = std::time::Instant::now();
    let m = ws.recv_msg();
    assert_eq!(m.opcode, OpCode::Close);
    assert_eq!(&m.payload[..2], &1007u16.to_be_bytes());
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "not fail-fast"
    );
}
