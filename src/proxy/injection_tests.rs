//! Frame-safe injection, as a property: whatever fragmented traffic the
//! backend sends (control frames between fragments, any read boundaries)
//! and whenever messages are published into the session, the client's
//! stream parses cleanly with the codec, every backend message arrives
//! whole and in order, and every injected message arrives whole, in order,
//! and only between two whole backend messages.

use std::rc::Rc;
use std::sync::Arc;

use proptest::prelude::*;

use super::super::outbound::Outbound;
use super::super::session::WsSession;
use super::super::test_io::{run, Sink};
use super::*;
use crate::proto::ws::frame::write_frame;
use crate::proto::ws::message::MessageReader;

/// One backend message: text or binary, its fragments, and whether a ping
/// follows each fragment but the last.
#[derive(Debug, Clone)]
struct Msg {
    text: bool,
    fragments: Vec<Vec<u8>>,
    pings: Vec<bool>,
}

fn msg() -> impl Strategy<Value = Msg> {
    (
        any::<bool>(),
        prop::collection::vec(prop::collection::vec(b'a'..=b'z', 0..24), 1..5),
        prop::collection::vec(any::<bool>(), 5),
    )
        .prop_map(|(text, fragments, pings)| Msg {
            text,
            fragments,
            pings,
        })
}

/// The backend's bytes for `msgs` (unmasked frames).
fn encode(msgs: &[Msg]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in msgs {
        let n = m.fragments.len();
        for (i, f) in m.fragments.iter().enumerate() {
            let op = match (i, m.text) {
                (0, true) => OpCode::Text,
                (0, false) => OpCode::Binary,
                _ => OpCode::Continuation,
            };
            write_frame(&mut out, i + 1 == n, op, None, f);
            if i + 1 < n && m.pings[i] {
                write_frame(&mut out, true, OpCode::Ping, None, b"p");
            }
        }
    }
    out
}

/// A test session toward a sink.
fn session() -> Rc<WsSession> {
    Rc::new(WsSession::new(
        1,
        "127.0.0.1:1".parse().expect("addr"),
        Arc::from("b"),
        "/".into(),
        None,
        false,
    ))
}

/// Relays `stream` in reads of the given sizes, publishing injected
/// message `k` after read `at[k]`; returns what the client received.
fn relay(stream: &[u8], reads: &[usize], at: &[usize], idle_flush: &[bool]) -> Vec<u8> {
    run(async {
        let s = session();
        let to_client = Outbound::new(Sink::default(), false).with_outbox(s.clone());
        let mut scanner = FrameScanner::new(ScannerConfig {
            limits: FrameLimits {
                max_payload: 1 << 20,
                rsv_allowed: 0,
                expect_masked: Some(false),
            },
            max_message: 0,
            validate_utf8: false,
        });
        let notes = Notes {
            env: None,
            session: &s,
            up: false,
        };
        let mut buf = ReadBuf::with_capacity(64);
        let (mut off, mut step, mut injected) = (0, 0, 0);
        while off < stream.len() || injected < at.len() {
            let n = reads[step % reads.len()].min(stream.len() - off);
            buf.buf.extend_from_slice(&stream[off..off + n]);
            off += n;
            let (closed, ok) = forward_buffered(&mut buf, &mut scanner, &to_client, None, &notes)
                .await
                .expect("valid stream");
            assert!(ok && !closed);
            while injected < at.len() && (at[injected] <= step || off == stream.len()) {
                let mut frame = Vec::new();
                write_frame(
                    &mut frame,
                    true,
                    OpCode::Text,
                    None,
                    format!("INJ{injected}").as_bytes(),
                );
                assert_eq!(
                    s.enqueue(&frame, 1 << 20),
                    super::super::session::Enqueued::Queued
                );
                // Sometimes the session's injector runs at once (the idle
                // path), sometimes only the forwarder gets to flush.
                if idle_flush[injected % idle_flush.len()] {
                    assert!(to_client.inject_outbox().await);
                }
                injected += 1;
            }
            step += 1;
        }
        // The injector's last look, with the stream between messages.
        assert!(to_client.inject_outbox().await);
        assert_eq!(s.queued(), 0, "everything queued was written");
        let got = to_client.w.try_lock().map(|w| w.0.clone());
        got.expect("writer free")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn injections_land_only_between_whole_messages(
        msgs in prop::collection::vec(msg(), 1..8),
        reads in prop::collection::vec(1usize..40, 1..8),
        at in prop::collection::vec(0usize..30, 0..6),
        idle_flush in prop::collection::vec(any::<bool>(), 1..4),
    ) {
        let mut at = at;
        at.sort_unstable();
        let stream = encode(&msgs);
        let got = relay(&stream, &reads, &at, &idle_flush);
        // The client's codec takes the stream as it is: a frame injected
        // inside a fragmented message would be a protocol error here.
        let mut reader = MessageReader::new(ScannerConfig {
            limits: FrameLimits::client(1 << 20),
            max_message: 0,
            validate_utf8: false,
        });
        let mut data = Vec::new();
        let mut pings = 0;
        let mut rest = &got[..];
        loop {
            let (used, m) = reader.feed(rest).expect("the client's stream parses");
            rest = &rest[used..];
            match m {
                Some(m) if m.opcode == OpCode::Ping => pings += 1,
                Some(m) => data.push((m.opcode, m.payload)),
                None if rest.is_empty() => break,
                None => prop_assert!(used > 0, "stuck on {rest:?}"),
            }
        }
        let expected_pings: usize = msgs
            .iter()
            .map(|m| (0..m.fragments.len() - 1).filter(|&i| m.pings[i]).count())
            .sum();
        prop_assert_eq!(pings, expected_pings);
        let (inj, orig): (Vec<_>, Vec<_>) =
            data.into_iter().partition(|(_, p)| p.starts_with(b"INJ"));
        let want_inj: Vec<Vec<u8>> = (0..at.len()).map(|k| format!("INJ{k}").into_bytes()).collect();
        prop_assert_eq!(inj.into_iter().map(|(_, p)| p).collect::<Vec<_>>(), want_inj);
        let want: Vec<(OpCode, Vec<u8>)> = msgs
            .iter()
            .map(|m| {
                let op = if m.text { OpCode::Text } else { OpCode::Binary };
                (op, m.fragments.concat())
            })
            .collect();
        prop_assert_eq!(orig, want);
    }
}
