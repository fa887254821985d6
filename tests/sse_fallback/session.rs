//! One fallback session's life: the open event and its headers, messages
//! both ways (text lines, binary, empty, on kept-alive posts), what the
//! backend sees and a refusal relayed, a backend that pushes, pings and
//! closes (also while the stream is away), no fallback without the flag,
//! and bad input with its status.

use std::time::Duration;

use base64::Engine;
use wslb::proto::ws::frame::OpCode;

use super::common::client::{HttpConn, RawBackend};
use super::common::proc::{echo, serve};
use super::common::sse::{self, expect_open};
use super::support::{assert_status, expect_close, fallback, resume, scripted_backend, stream};

#[test]
fn a_get_for_an_event_stream_opens_a_session_with_token_url_and_retry() {
    let (_e, lb) = fallback(&[]);
    let mut s = stream(lb.http());
    let ct = s
        .head
        .header("content-type")
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    assert_eq!(s.head.header("cache-control"), Some("no-store"));
    assert!(
        s.head.header("content-length").is_none() && s.head.header("transfer-encoding").is_none(),
        "the stream is close-delimited: {:?}",
        s.head.headers
    );
    let o = expect_open(&mut s);
    assert_eq!(s.retry, Some(2000), "retry: of the default 2s");
    assert!(s.unknown.is_empty(), "{:?}", s.unknown);
    // Every session gets its own token.
    let mut other = stream(lb.http());
    let o2 = expect_open(&mut other);
    assert_ne!(o.token, o2.token);
    assert_ne!(o.conn_id, o2.conn_id);
    // The client library is served by the balancer.
    let js = super::common::client::get(lb.http(), "/_lb/client.js");
    assert_status(&js, 200, "/_lb/client.js");
    let jt = js.header("content-type").unwrap_or_default();
    assert!(jt.starts_with("application/javascript"), "{jt}");
    assert!(!js.body.is_empty());
    drop((s, other, lb));

    let (_e, lb) = fallback(&["--fallback-retry", "500ms"]);
    let mut s = stream(lb.http());
    expect_open(&mut s);
    assert_eq!(s.retry, Some(500), "retry: of --fallback-retry 500ms");
}

#[test]
fn text_multiline_and_binary_messages_echo_as_events_with_increasing_ids() {
    let (_e, lb) = fallback(&[]);
    let addr = lb.http();
    let mut s = stream(addr);
    let o = expect_open(&mut s);
    let t = o.token.as_str();

    assert_status(&sse::post_text(addr, t, b"hello"), 204, "POST text");
    let ev = s.event();
    assert_eq!(
        (ev.event.as_deref(), ev.data.as_str()),
        (None, "hello"),
        "{ev:?}"
    );
    assert_eq!(ev.id, Some(format!("{t}.1")));

    // Each line its own data line (\n, \r\n and \r all split), joined back.
    let lines = "first\nsecond\r\nthird\rfourth é ✓";
    assert_status(
        &sse::post_text(addr, t, lines.as_bytes()),
        204,
        "POST lines",
    );
    let ev = s.event();
    assert_eq!(ev.event, None, "{ev:?}");
    assert_eq!(ev.data, "first\nsecond\nthird\nfourth é ✓");
    assert_eq!(ev.data_lines, 4, "{ev:?}");
    assert_eq!(ev.id, Some(format!("{t}.2")));

    let bytes: Vec<u8> = (0..=255u8).chain([0, 0, 13, 10, 10]).collect();
    assert_status(&sse::post_binary(addr, t, &bytes), 204, "POST binary");
    let ev = s.event();
    assert_eq!(ev.event.as_deref(), Some("binary"), "{ev:?}");
    let back = base64::engine::general_purpose::STANDARD
        .decode(&ev.data)
        .unwrap_or_else(|e| panic!("not standard padded base64 ({e}): {ev:?}"));
    assert_eq!(back, bytes);
    assert_eq!(ev.id, Some(format!("{t}.3")));

    // Ids go up by one, message after message.
    for i in 0..20u64 {
        let msg = format!("n{i}");
        assert_status(&sse::post_text(addr, t, msg.as_bytes()), 204, "POST");
        let ev = s.event();
        assert_eq!(ev.data, msg);
        assert_eq!(ev.seq(), Some(4 + i), "{ev:?}");
        assert_eq!(ev.token(), Some(t));
    }

    // An empty message is one empty data line (no data line: no event at
    // all in a browser); a last line break leaves an empty last line.
    for (sent, want, lines) in [("", "", 1), ("tail\n", "tail\n", 2)] {
        assert_status(&sse::post_text(addr, t, sent.as_bytes()), 204, "POST");
        let ev = s.event();
        assert_eq!((ev.data.as_str(), ev.data_lines), (want, lines), "{ev:?}");
    }
    assert_eq!(s.event_or_none(), None, "nothing more");

    // Posts on one kept-alive connection, as a browser sends them.
    let mut c = HttpConn::connect(addr);
    for i in 0..3 {
        let body = format!("kept {i}");
        let r = sse::post_text_on(&mut c, t, body.as_bytes());
        assert_status(&r, 204, "POST on a kept connection");
        assert_eq!(s.event().data, body);
    }
}

#[test]
fn the_backend_sees_an_upgrade_with_the_session_id_and_a_refusal_is_relayed() {
    let (_e, lb) = fallback(&[]);
    // The echo backend's /headers session first sends the head it got.
    let mut s = sse::open(lb.http(), "/headers", None, &[])
        .unwrap_or_else(|r| panic!("no event stream: {} {}", r.status, r.text()));
    let o = expect_open(&mut s);
    let ev = s.event();
    let head = ev.data.to_ascii_lowercase();
    assert!(head.starts_with("e1\nget /headers http/1.1"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    let conn = format!("x-wslb-conn: {}", o.conn_id.to_ascii_lowercase());
    assert!(head.contains(&conn), "no {conn} in {head}");

    // A backend that answers the upgrade with 403: the client gets it.
    let refuser = RawBackend::start(
        b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nnope",
    );
    let lb = super::common::proc::serve_urls(&[refuser.url()], &["--fallback", "sse"]);
    match sse::open(lb.http(), "/chat", None, &[]) {
        Ok(s) => panic!("an event stream from a refusing backend: {:?}", s.head),
        Err(r) => {
            assert_status(&r, 403, "refused upgrade");
            assert_eq!(r.text(), "nope");
        }
    }
    let got = String::from_utf8_lossy(&refuser.received()).to_ascii_lowercase();
    assert!(got.contains("upgrade: websocket"), "{got}");
}

#[test]
fn a_backend_pushes_pings_and_closes_and_a_close_while_away_waits_for_the_resume() {
    let (baddr, sessions) = scripted_backend();
    let lb = super::common::proc::serve_urls(&[format!("http://{baddr}")], &["--fallback", "sse"]);
    let addr = lb.http();
    let mut s = stream(addr);
    let o = expect_open(&mut s);
    let t = o.token.as_str();
    let mut b = sessions
        .recv_timeout(Duration::from_secs(5))
        .expect("the backend got a session");
    assert!(b.send_text("pushed"));
    let ev = s.event();
    assert_eq!((ev.seq(), ev.data.as_str()), (Some(1), "pushed"), "{ev:?}");
    assert_status(&sse::post_text(addr, t, b"up"), 204, "POST");
    let m = b.recv_msg();
    assert_eq!((m.opcode, m.payload.as_slice()), (OpCode::Text, &b"up"[..]));
    assert_status(&sse::post_binary(addr, t, &[1, 2, 3]), 204, "POST");
    let m = b.recv_msg();
    assert_eq!(
        (m.opcode, m.payload.as_slice()),
        (OpCode::Binary, &[1u8, 2, 3][..])
    );
    // The balancer answers the backend's pings for the client.
    assert!(b.send_frame(true, OpCode::Ping, b"p1"));
    let m = b.recv_msg();
    assert_eq!((m.opcode, m.payload.as_slice()), (OpCode::Pong, &b"p1"[..]));
    assert_eq!(s.event_or_none(), None, "a ping made an event");
    // The backend ends the session: the close event, and the close answered.
    assert!(b.send_close(4002, "done"));
    assert_eq!(expect_close(&mut s, t), (4002, "done".to_string()));
    assert_eq!(b.recv_close().map(|c| c.0), Some(4002));
    assert_status(
        &sse::post_text(addr, t, b"late"),
        404,
        "POST after the close",
    );

    // Pushed and closed while the stream is away: a resume still gets both.
    let mut s = stream(addr);
    let o = expect_open(&mut s);
    let t = o.token.as_str();
    let mut b = sessions
        .recv_timeout(Duration::from_secs(5))
        .expect("the backend got a second session");
    assert!(b.send_text("seen"));
    assert_eq!(s.event().data, "seen");
    drop(s);
    assert!(b.send_text("while away\nline 2"));
    assert!(b.send_close(4003, "gone"));
    assert_eq!(b.recv_close().map(|c| c.0), Some(4003));
    let mut r = resume(addr, &format!("{t}.1"))
        .unwrap_or_else(|r| panic!("resume after a close answered {} {}", r.status, r.text()));
    let ev = r.event();
    assert_eq!(
        (ev.seq(), ev.data.as_str()),
        (Some(2), "while away\nline 2"),
        "{ev:?}"
    );
    assert_eq!(expect_close(&mut r, t), (4003, "gone".to_string()));
    // Once the close went out there is nothing left to resume: 404 at
    // once, whether or not the session has left the table yet.
    match resume(addr, &format!("{t}.3")) {
        Err(r) => assert_status(&r, 404, "resume after the close went out"),
        Ok(s) => panic!("a resume after the close got a stream: {:?}", s.head),
    }
}

#[test]
fn without_the_fallback_an_event_stream_get_is_proxied_as_plain_http() {
    let e = echo("e1");
    for flags in [&[][..], &["--fallback", "off"][..]] {
        let lb = serve(&[&e], flags);
        let r = match sse::open(lb.http(), "/chat", None, &[]) {
            Ok(s) => panic!("{flags:?}: an event stream: {:?}", s.head),
            Err(r) => r,
        };
        assert_status(&r, 200, "plain GET");
        assert_eq!(r.text(), "e1\n", "{flags:?}: the backend's answer");
        assert_eq!(r.header("x-backend"), Some("e1"));
    }
    // With it, a GET that does not ask for a stream is proxied as before.
    let lb = serve(&[&e], &["--fallback", "sse"]);
    let r = super::common::client::get(lb.http(), "/chat");
    assert_status(&r, 200, "plain GET with the fallback on");
    assert_eq!(r.text(), "e1\n");
}

#[test]
fn bad_input_gets_404_413_400_and_delete_closes_with_1000() {
    let (_e, lb) = fallback(&["--max-message-size", "1k"]);
    let addr = lb.http();
    let unknown = "0123456789abcdef0123456789abcdef";
    assert_status(&sse::post_text(addr, unknown, b"x"), 404, "POST unknown");
    assert_status(&sse::delete(addr, unknown), 404, "DELETE unknown");
    match resume(addr, &format!("{unknown}.0")) {
        Ok(s) => panic!("resumed an unknown token: {:?}", s.head),
        Err(r) => assert_status(&r, 404, "resume unknown"),
    }

    let mut s = stream(addr);
    let o = expect_open(&mut s);
    let t = o.token.as_str();
    let big = vec![b'a'; 1025];
    assert_status(&sse::post_text(addr, t, &big), 413, "POST 1025 bytes");
    assert_status(
        &sse::post_binary(addr, t, &big),
        413,
        "POST 1025 bytes binary",
    );
    assert_status(
        &sse::post_text(addr, t, b"ok \xff\xfe"),
        400,
        "POST bad UTF-8",
    );
    let mut c = HttpConn::connect(addr);
    c.send(format!("POST /_lb/sse/{t} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nhi\r\n0\r\n\r\n").as_bytes());
    let r = c.read_response(false).expect("an answer to a chunked post");
    assert_status(&r, 411, "POST chunked");
    // The session goes on after refused posts; 1024 bytes is not over.
    assert_status(
        &sse::post_text(addr, t, &big[..1024]),
        204,
        "POST 1024 bytes",
    );
    let ev = s.event();
    assert_eq!(ev.data.len(), 1024, "{ev:?}");
    assert_eq!(ev.seq(), Some(1), "refused posts made no events");
    // The same bytes as binary are fine.
    assert_status(
        &sse::post_binary(addr, t, b"ok \xff\xfe"),
        204,
        "POST binary",
    );
    let ev = s.event();
    assert_eq!(ev.event.as_deref(), Some("binary"));

    assert_status(&sse::delete(addr, t), 204, "DELETE");
    assert_eq!(expect_close(&mut s, t).0, 1000);
    assert_status(&sse::post_text(addr, t, b"late"), 404, "POST after close");
    assert_status(&sse::delete(addr, t), 404, "DELETE after close");
}

#[test]
fn an_origin_refused_for_websockets_is_refused_for_the_fallback() {
    let e = echo("e1");
    let allowed = "https://app.example.com";
    let lb = serve(&[&e], &["--fallback", "sse", "--allowed-origins", allowed]);
    for origin in ["https://evil.example", "http://app.example.com"] {
        match sse::open(lb.http(), "/chat", None, &[("Origin", origin)]) {
            Ok(s) => panic!("{origin}: an event stream: {:?}", s.head),
            Err(r) => assert_status(&r, 403, origin),
        }
    }
    let mut s = sse::open(lb.http(), "/chat", None, &[("Origin", allowed)])
        .unwrap_or_else(|r| panic!("{allowed} refused: {} {}", r.status, r.text()));
    expect_open(&mut s);
    // A same-origin page's EventSource sends no Origin: it passes (a
    // WebSocket handshake without one is still refused).
    let mut s = sse::open(lb.http(), "/chat", None, &[])
        .unwrap_or_else(|r| panic!("no Origin refused: {} {}", r.status, r.text()));
    expect_open(&mut s);
}
