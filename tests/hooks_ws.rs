//! The WebSocket session hooks through the library, in process: sessions
//! reported once each way with their path, backend and close code (inspect
//! and tunnel mode), `on_message` in `Whole` mode (fragments reassembled,
//! both ways), `Handled` and `Reply` verdicts, `Fragments` mode (each frame
//! seen, the first frame's verdict kept), a reply never interleaved inside
//! a fragmented message, and no change at all without message hooks.

mod common;

use std::io::Read;
use std::time::Duration;

use common::hooks::{
    client, disconnected, fake, frames, send_three, start, stop, text_of, Ev, Rec,
};
use common::proc::echo;
use wslb::proto::ws::frame::OpCode;
use wslb::{Direction, MessageMode, Reply, Verdict, WsMode};

#[test]
fn sessions_are_reported_once_with_path_backend_and_close_code() {
    let e = echo("e");
    let url = format!("http://{}", e.http());
    for (mode, code) in [(WsMode::Inspect, 1000), (WsMode::Tunnel, 1005)] {
        let rec = Rec::new(MessageMode::Off, |_| Verdict::Handled);
        let lb = start(&url, mode, Some(&rec));
        let mut ws = client(&lb, "/chat/room?user=1");
        let me = ws.stream.local_addr().expect("addr");
        ws.echo_text("hi");
        assert!(ws.send_close(1000, "done"));
        assert!(ws.recv_close().is_some(), "{mode:?}: close answered");
        drop(ws);
        let evs = rec.wait(disconnected);
        let [Ev::Connect(s), Ev::Disconnect(s2, end)] = &evs[..] else {
            panic!("{mode:?}: {evs:?}");
        };
        assert_eq!(
            (s.path.as_str(), s.backend.as_str(), s.peer),
            ("/chat/room", url.as_str(), me)
        );
        assert_eq!((s2.id, s2.worker), (s.id, s.worker));
        assert_eq!(end.code, code, "{mode:?}");
        assert!(end.bytes_in > 0 && end.bytes_out > 0, "{mode:?}: {end:?}");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            rec.events.lock().expect("lock").len(),
            2,
            "{mode:?}: once each"
        );
        stop(lb);
    }
}

#[test]
fn a_backend_that_goes_away_is_reported_as_the_relay_sees_it() {
    // Inspect: a close frame the backend sends (1011), and a backend gone
    // without one (1006); tunnel: a reset (1006).
    let cases: [(WsMode, u16); 3] = [
        (WsMode::Inspect, 1011),
        (WsMode::Inspect, 1006),
        (WsMode::Tunnel, 1006),
    ];
    for (mode, code) in cases {
        let rec = Rec::new(MessageMode::Off, |_| Verdict::Forward);
        let (url, t) = fake(move |mut b| {
            assert_eq!(b.recv_msg().payload, b"go");
            if code == 1011 {
                b.send_close(1011, "broken");
                b.recv_close();
            } else {
                // Dropped with a zero linger: a reset, no close frame.
                socket2::SockRef::from(&b.stream)
                    .set_linger(Some(Duration::ZERO))
                    .ok();
            }
        });
        let lb = start(&url, mode, Some(&rec));
        let mut ws = client(&lb, "/x");
        assert!(ws.send_text("go"));
        // The client answers whatever close it gets (1011 forwarded, or
        // the balancer's 1012); a tunnel just ends.
        if let Some((c, _)) = ws.recv_close() {
            ws.send_close(c, "");
        }
        assert!(ws.closes_within(Duration::from_secs(5)), "{mode:?}: closed");
        drop(ws);
        let evs = rec.wait(disconnected);
        let Some(Ev::Disconnect(s, end)) = evs.last() else {
            panic!("{evs:?}")
        };
        assert_eq!(
            (s.path.as_str(), end.code),
            ("/x", code),
            "{mode:?}: {end:?}"
        );
        t.join().expect("backend");
        stop(lb);
    }
}

#[test]
fn whole_mode_shows_reassembled_messages_both_ways_and_forwards_them() {
    let rec = Rec::new(MessageMode::Whole, |_| Verdict::Forward);
    let (url, t) = fake(|mut b| {
        let m = b.recv_msg();
        assert_eq!(
            (m.opcode, m.payload.as_slice()),
            (OpCode::Text, &b"abcdefghi"[..])
        );
        assert!(b.send_frame(false, OpCode::Binary, b"12"));
        assert!(b.send_frame(true, OpCode::Ping, b"p"));
        assert!(b.send_frame(false, OpCode::Continuation, b"34"));
        assert!(b.send_frame(true, OpCode::Continuation, b"56"));
        b.recv_close();
    });
    let lb = start(&url, WsMode::Inspect, Some(&rec));
    let mut ws = client(&lb, "/");
    send_three(&mut ws, ["abc", "def", "ghi"]);
    // The ping passes at once; the message follows as one frame.
    let got = frames(&mut ws.stream, 2);
    assert_eq!(got[0], (true, OpCode::Ping, b"p".to_vec()));
    assert_eq!(got[1], (true, OpCode::Binary, b"123456".to_vec()));
    assert_eq!(
        rec.msgs(),
        [
            (
                Direction::ClientToBackend,
                true,
                b"abcdefghi".to_vec(),
                true,
                true
            ),
            (
                Direction::BackendToClient,
                false,
                b"123456".to_vec(),
                true,
                true
            ),
        ]
    );
    ws.send_close(1000, "");
    t.join().expect("backend");
    stop(lb);
}

#[test]
fn handled_drops_and_reply_answers_the_sender_either_way() {
    let rec = Rec::new(MessageMode::Whole, |m| match m.payload {
        b"drop me" => Verdict::Handled,
        b"who?" => Verdict::Reply(Reply::Text("balancer".into())),
        b"ask" => Verdict::Reply(Reply::Binary(vec![1, 2, 3])),
        _ => Verdict::Forward,
    });
    let (url, t) = fake(|mut b| {
        // "drop me" and "who?" never come: the first message is "keep".
        assert_eq!(b.recv_msg().payload, b"keep");
        assert!(b.send_text("ask"));
        // The reply to the backend comes masked (the codec checks).
        let m = b.recv_msg();
        assert_eq!((m.opcode, m.payload), (OpCode::Binary, vec![1, 2, 3]));
        assert!(b.send_text("kept"));
        b.recv_close();
    });
    let lb = start(&url, WsMode::Inspect, Some(&rec));
    let mut ws = client(&lb, "/");
    assert!(ws.send_text("drop me"));
    assert!(ws.send_text("who?"));
    assert_eq!(text_of(&mut ws), "balancer");
    assert!(ws.send_text("keep"));
    // "ask" was answered by the hook: the client gets only "kept".
    assert_eq!(text_of(&mut ws), "kept");
    ws.send_close(1000, "");
    t.join().expect("backend");
    stop(lb);
}

#[test]
fn fragments_mode_shows_each_frame_and_keeps_the_first_verdict() {
    let rec = Rec::new(MessageMode::Fragments, |m| {
        if m.payload.starts_with(b"DROP") {
            Verdict::Handled
        } else {
            Verdict::Forward
        }
    });
    let e = echo("e");
    let lb = start(&format!("http://{}", e.http()), WsMode::Inspect, Some(&rec));
    let mut ws = client(&lb, "/");
    send_three(&mut ws, ["abc", "def", "ghi"]);
    assert_eq!(text_of(&mut ws), "abcdefghi");
    // Later frames that would be forwarded alone follow the first's verdict.
    send_three(&mut ws, ["DROP", "x", "y"]);
    ws.echo_text("after");
    let up: Vec<_> = rec
        .msgs()
        .into_iter()
        .filter(|m| m.0 == Direction::ClientToBackend)
        .map(|(_, _, p, first, fin)| (String::from_utf8(p).expect("utf-8"), first, fin))
        .collect();
    let want = [
        ("abc", true, false),
        ("def", false, false),
        ("ghi", false, true),
        ("DROP", true, false),
        ("x", false, false),
        ("y", false, true),
        ("after", true, true),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|(p, a, b)| (p.to_string(), *a, *b))
        .collect();
    assert_eq!(up, want);
    ws.send_close(1000, "");
    stop(lb);
}

#[test]
fn a_reply_waits_for_the_end_of_a_fragmented_message_going_the_same_way() {
    let rec = Rec::new(MessageMode::Fragments, |m| match m.payload {
        b"q" => Verdict::Reply(Reply::Text("R".into())),
        _ => Verdict::Forward,
    });
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (url, t) = fake(move |mut b| {
        assert_eq!(b.recv_msg().payload, b"start");
        assert!(b.send_frame(false, OpCode::Text, b"one-"));
        go_rx.recv().expect("go");
        assert!(b.send_frame(true, OpCode::Continuation, b"two"));
        b.recv_close();
    });
    let lb = start(&url, WsMode::Inspect, Some(&rec));
    let mut ws = client(&lb, "/");
    // (The backend speaks first only once the 101 has been read.)
    assert!(ws.send_text("start"));
    assert_eq!(
        frames(&mut ws.stream, 1),
        [(false, OpCode::Text, b"one-".to_vec())]
    );
    assert!(ws.send_text("q"));
    rec.wait(|evs| {
        evs.iter()
            .any(|e| matches!(e, Ev::Msg(_, _, p, ..) if p == b"q"))
    });
    // The reply is held while the backend's message is open.
    ws.set_read_timeout(Duration::from_millis(300));
    let mut one = [0u8; 1];
    assert!(
        ws.stream.read(&mut one).is_err(),
        "a frame came mid-message"
    );
    ws.set_read_timeout(Duration::from_secs(10));
    go_tx.send(()).expect("go");
    assert_eq!(
        frames(&mut ws.stream, 2),
        [
            (true, OpCode::Continuation, b"two".to_vec()),
            (true, OpCode::Text, b"R".to_vec()),
        ]
    );
    ws.send_close(1000, "");
    t.join().expect("backend");
    stop(lb);
}

#[test]
fn without_message_hooks_frames_pass_as_they_came() {
    // No hooks at all, and hooks whose message mode is Off (whose
    // on_message would drop everything): the backend's three frames reach
    // the client as three frames, and on_message is never called.
    let off = Rec::new(MessageMode::Off, |_| Verdict::Handled);
    for hooks in [None, Some(&off)] {
        let (url, t) = fake(|mut b| {
            assert_eq!(b.recv_msg().payload, b"abcdefghi");
            assert!(b.send_frame(false, OpCode::Text, b"ab"));
            assert!(b.send_frame(false, OpCode::Continuation, b"cd"));
            assert!(b.send_frame(true, OpCode::Continuation, b"ef"));
            b.recv_close();
        });
        let lb = start(&url, WsMode::Inspect, hooks);
        let mut ws = client(&lb, "/");
        send_three(&mut ws, ["abc", "def", "ghi"]);
        let got = frames(&mut ws.stream, 3);
        let ops: Vec<_> = got.iter().map(|f| (f.0, f.1)).collect();
        assert_eq!(
            ops,
            [
                (false, OpCode::Text),
                (false, OpCode::Continuation),
                (true, OpCode::Continuation)
            ]
        );
        ws.send_close(1000, "");
        t.join().expect("backend");
        stop(lb);
    }
    assert!(off.msgs().is_empty());
    assert_eq!(off.wait(disconnected).len(), 2, "sessions still reported");
}
