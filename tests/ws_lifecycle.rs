//! How WebSocket sessions end: backend killed mid-session (1012 in inspect
//! mode, a plain close in tunnel mode), idle pings (a silent client is
//! closed, an answering one stays and its pongs are not forwarded), drain on
//! SIGTERM (1001, exit 0), and the backend's active count returning to zero
//! after every kind of ending (seen through fewest-connections picks).

mod common;

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use common::client::HttpConn;
use common::proc::{echo, serve};
use common::ws_client::{Event, WsConn};
use wslb::proto::ws::frame::OpCode;

#[test]
fn backend_killed_mid_session() {
    for mode in ["inspect", "tunnel"] {
        let mut e = echo("e");
        let l = serve(&[&e], &["--ws-mode", mode]);
        let mut ws = WsConn::connect(l.http());
        ws.echo_text("alive");
        e.kill();
        ws.set_read_timeout(Duration::from_secs(5));
        match (mode, ws.recv()) {
            ("inspect", Event::Msg(m)) if m.opcode == OpCode::Close => {
                assert_eq!(
                    &m.payload[..2],
                    &1012u16.to_be_bytes(),
                    "inspect: close 1012"
                );
                assert!(
                    ws.closes_within(Duration::from_secs(3)),
                    "inspect: closed after 1012"
                );
            }
            ("tunnel", Event::Eof) => {}
            (_, other) => panic!("{mode}: unexpected {other:?} after the backend died"),
        }
    }
}

/// Reads for `span`, counting pings; answers them when `answer`. Returns
/// (pings seen, close code if one came, whether EOF came).
fn watch(
    ws: &mut WsConn<std::net::TcpStream>,
    span: Duration,
    answer: bool,
) -> (usize, Option<u16>, bool) {
    let end = Instant::now() + span;
    let mut pings = 0;
    let mut close = None;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        ws.set_read_timeout(left.max(Duration::from_millis(1)));
        match ws.recv() {
            Event::Msg(m) if m.opcode == OpCode::Ping => {
                pings += 1;
                if answer {
                    assert!(ws.send_frame(true, OpCode::Pong, &m.payload));
                }
            }
            Event::Msg(m) if m.opcode == OpCode::Close => {
                assert!(close.is_none(), "a second close frame: {m:?}");
                close = Some(u16::from_be_bytes([m.payload[0], m.payload[1]]));
            }
            Event::Msg(m) => panic!("unexpected message {m:?}"),
            Event::Eof => return (pings, close, true),
            Event::Timeout => break,
            Event::Bad(e) => panic!("protocol error from the balancer: {e}"),
        }
    }
    (pings, close, false)
}

#[test]
fn idle_ping_closes_a_silent_client() {
    let e = echo("e");
    let l = serve(
        &[&e],
        &["--ws-ping-interval", "300ms", "--ws-pong-timeout", "300ms"],
    );
    let mut ws = WsConn::connect(l.http());
    ws.echo_text("then silence");
    let started = Instant::now();
    let (pings, close, eof) = watch(&mut ws, Duration::from_secs(3), false);
    assert_eq!(pings, 1, "one ping, then the close");
    assert_eq!(close, Some(1001), "closed for not answering");
    assert!(eof, "connection closed");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500),
        "closed too early: {took:?}"
    );
    assert!(
        took < Duration::from_millis(2500),
        "closed too late: {took:?}"
    );
}

#[test]
fn a_client_that_stops_reading_is_closed_by_the_ping_timeout() {
    // A backend that streams to its client without pause; the client never
    // reads nor sends. The relay's writer to the client stalls, and the
    // pings that would tell must not wait behind it.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let backend = std::thread::spawn(move || {
        let (s, _) = listener.accept().expect("accept");
        let mut ws = WsConn::accept(s);
        ws.stream
            .set_write_timeout(Some(Duration::from_secs(8)))
            .ok();
        let chunk = vec![7u8; 64 * 1024];
        let started = Instant::now();
        loop {
            if !ws.send_frame(true, OpCode::Binary, &chunk) {
                return started.elapsed();
            }
            if started.elapsed() > Duration::from_secs(20) {
                return started.elapsed();
            }
        }
    });
    let backend_url = format!("http://{addr}");
    let l = serve(
        &[],
        &[
            "--workers",
            "1",
            "--backend",
            &backend_url,
            "--ws-ping-interval",
            "300ms",
            "--ws-pong-timeout",
            "300ms",
        ],
    );
    let ws = WsConn::connect(l.http());
    // Never read, never send; just keep the socket open.
    let took = backend.join().expect("backend thread");
    assert!(
        took < Duration::from_secs(5),
        "the stalled session was not ended (backend kept writing for {took:?})"
    );
    drop(ws);
}

#[test]
fn tunnel_sessions_idle_past_the_timeout_are_closed() {
    let e = echo("quiet");
    let lb = serve(
        &[&e],
        &["--ws-mode", "tunnel", "--ws-tunnel-idle-timeout", "500ms"],
    );
    // Busy: a message every 200 ms keeps the session past several timeouts.
    let mut busy = WsConn::connect(lb.http());
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        busy.echo_text("still here");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Quiet: closed once nothing moved for the timeout.
    let mut quiet = WsConn::connect(lb.http());
    quiet.echo_text("once");
    let t0 = Instant::now();
    assert!(
        quiet.closes_within(Duration::from_secs(3)),
        "an idle tunnel session stayed open"
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "closed before the idle timeout: {took:?}"
    );
}

#[test]
fn answering_client_stays_and_its_pongs_are_not_forwarded() {
    // A recording backend: every message it receives until "done".
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let backend = std::thread::spawn(move || {
        let (s, _) = listener.accept().expect("accept");
        let mut ws = WsConn::accept(s);
        let mut seen = Vec::new();
        loop {
            let m = ws.recv_msg();
            let done = m.payload == b"done";
            seen.push((m.opcode, m.payload.clone()));
            if m.opcode == OpCode::Text {
                assert!(ws.send_frame(true, OpCode::Text, &m.payload));
            }
            if done {
                return seen;
            }
        }
    });
    let backend_url = format!("http://{addr}");
    let l = serve(
        &[],
        &[
            "--workers",
            "1",
            "--backend",
            &backend_url,
            "--ws-ping-interval",
            "300ms",
            "--ws-pong-timeout",
            "300ms",
        ],
    );
    let mut ws = WsConn::connect(l.http());
    ws.echo_text("hello");
    let (pings, close, eof) = watch(&mut ws, Duration::from_millis(1600), true);
    assert!(pings >= 3, "pinged every interval while idle: {pings}");
    assert_eq!(
        (close, eof),
        (None, false),
        "an answering client stays open"
    );
    // A pong of our own (not answering the balancer) is forwarded.
    assert!(ws.send_frame(true, OpCode::Pong, b"mine"));
    ws.echo_text("done");
    let seen = backend.join().expect("backend thread");
    let pongs: Vec<_> = seen.iter().filter(|(op, _)| *op == OpCode::Pong).collect();
    assert_eq!(
        pongs.len(),
        1,
        "only the unsolicited pong reaches the backend: {seen:?}"
    );
    assert_eq!(pongs[0].1, b"mine");
}

#[test]
fn drain_closes_sessions_with_1001_and_exits_0() {
    for mode in ["inspect", "tunnel"] {
        let e = echo("e");
        let mut l = serve(&[&e], &["--ws-mode", mode, "--drain-timeout", "500ms"]);
        let mut ws = WsConn::connect(l.http());
        ws.echo_text("before");
        let t0 = Instant::now();
        l.signal(libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(150));
        ws.echo_text("during the drain");
        ws.set_read_timeout(Duration::from_secs(5));
        match (mode, ws.recv()) {
            ("inspect", Event::Msg(m)) if m.opcode == OpCode::Close => {
                assert_eq!(&m.payload[..2], &1001u16.to_be_bytes(), "inspect: 1001");
                assert!(ws.send_close(1001, ""));
                assert!(
                    ws.closes_within(Duration::from_secs(3)),
                    "closed after 1001"
                );
            }
            ("tunnel", Event::Eof) => {}
            (_, other) => panic!("{mode}: unexpected {other:?} at the drain timeout"),
        }
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(400),
            "{mode}: closed before the drain timeout: {took:?}"
        );
        assert_eq!(
            l.wait_exit(Duration::from_secs(5)),
            Some(0),
            "{mode}: exit status"
        );
    }
}

/// Names answering `n` GETs, in order. One keep-alive connection: a
/// request's count is given back before the next request is read, whereas a
/// fresh connection per GET could be picked while the last one's count is
/// still held on another worker.
fn names(lb: SocketAddr, n: usize) -> Vec<String> {
    let mut c = HttpConn::connect(lb);
    (0..n)
        .map(|_| c.get("/").text().trim().to_string())
        .collect()
}

/// With no session open, fewest-connections ties spread GETs over both
/// backends; a leaked count sends them all to one. Waits up to 3 s.
fn assert_spread(lb: SocketAddr, after: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let seen: HashSet<String> = names(lb, 16).into_iter().collect();
        if seen.len() == 2 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {after}: picks stuck on {seen:?}: a count leaked"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Opens a session and checks it is counted: GETs avoid its backend.
fn counted_session(lb: SocketAddr) -> WsConn<std::net::TcpStream> {
    counted_session_n(lb, 6)
}

fn counted_session_n(lb: SocketAddr, gets: usize) -> WsConn<std::net::TcpStream> {
    // The last GET of a previous probe gives its count back when its worker
    // sees the response written, which on a loaded machine can come after
    // the client already has it: let that settle first.
    std::thread::sleep(Duration::from_millis(100));
    let mut ws = WsConn::connect(lb);
    ws.echo_text("counted");
    let seen = names(lb, gets);
    let distinct: HashSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), 1, "GETs avoid the busy backend: {seen:?}");
    ws
}

#[test]
fn counts_return_to_zero_after_every_ending() {
    let a = echo("alpha");
    let b = echo("beta");
    let flags = [
        "--algorithm",
        "fewest-connections",
        "--max-message-size",
        "1k",
    ];
    let mut lbs = Vec::new();
    for mode in ["inspect", "tunnel"] {
        let mut f = flags.to_vec();
        f.extend(["--ws-mode", mode]);
        lbs.push((mode, serve(&[&a, &b], &f)));
    }
    // Ping timeout: its own balancer, so that the other sessions are not
    // closed for not answering pings while the test does GETs.
    let mut f = flags.to_vec();
    f.extend(["--ws-ping-interval", "1s", "--ws-pong-timeout", "300ms"]);
    let pinging = serve(&[&a, &b], &f);
    assert_spread(pinging.http(), "start");
    let mut ws = counted_session_n(pinging.http(), 3);
    let (_, close, _) = watch(&mut ws, Duration::from_secs(3), false);
    assert_eq!(close, Some(1001), "ping timeout");
    drop(ws);
    assert_spread(pinging.http(), "inspect: ping timeout");

    for (mode, l) in &lbs {
        let lb = l.http();
        assert_spread(lb, "start");

        let mut ws = counted_session(lb);
        assert!(ws.send_close(1000, ""));
        assert_eq!(ws.recv_close().map(|c| c.0), Some(1000));
        assert!(
            ws.closes_within(Duration::from_secs(3)),
            "{mode}: closed after the handshake"
        );
        drop(ws);
        assert_spread(lb, &format!("{mode}: client close handshake"));

        counted_session(lb).drop_tcp();
        assert_spread(lb, &format!("{mode}: client dropped TCP"));

        let ws = counted_session(lb);
        ws.shutdown_write();
        assert_spread(lb, &format!("{mode}: client half-closed"));
        drop(ws);

        let mut ws = counted_session(lb);
        assert!(ws.send_frame(true, OpCode::Text, &[0xFF]));
        assert_eq!(
            ws.recv_close().map(|c| c.0),
            Some(1007),
            "{mode}: the echo refuses bad UTF-8"
        );
        assert!(ws.send_close(1007, ""));
        assert!(
            ws.closes_within(Duration::from_secs(3)),
            "{mode}: closed after the handshake"
        );
        drop(ws);
        assert_spread(lb, &format!("{mode}: backend-initiated close"));

        if *mode == "inspect" {
            let mut ws = counted_session(lb);
            let mut raw = Vec::new();
            wslb::proto::ws::frame::write_frame(&mut raw, true, OpCode::Text, None, b"unmasked");
            assert!(ws.send_raw(&raw));
            assert_eq!(ws.recv_close().map(|c| c.0), Some(1002));
            assert_spread(lb, "inspect: protocol error");

            let mut ws = counted_session(lb);
            assert!(ws.send_binary(&[0; 2000]));
            assert_eq!(ws.recv_close().map(|c| c.0), Some(1009));
            drop(ws);
            assert_spread(lb, "inspect: too big");
        }
    }
}
