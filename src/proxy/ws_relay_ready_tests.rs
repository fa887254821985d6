//! The inspect relay over a reader with readiness: frames cut at every byte
//! across readiness rounds, a partial frame kept and completed, a
//! destination that does not read, and an end or reset while a partial
//! frame is held; what the session holds meanwhile.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};

use super::super::test_io::{close_code, run, Sink, Stuck};
use super::*;
use crate::rt::ready_read::tests::{split_at, Rounds, Step};
use crate::rt::ready_read::ReadPool;

pub(super) fn client_scanner() -> FrameScanner {
    FrameScanner::new(ScannerConfig {
        limits: FrameLimits {
            max_payload: 1 << 20,
            rsv_allowed: 0,
            expect_masked: Some(true),
        },
        max_message: 1 << 20,
        validate_utf8: true,
    })
}

pub(super) fn session() -> WsSession {
    WsSession::new(
        1,
        "127.0.0.1:1".parse().expect("addr"),
        std::sync::Arc::from("b"),
        "/".into(),
        None,
        false,
    )
}

pub(super) fn up_side(session: &WsSession) -> Side<'_> {
    Side {
        notes: Notes {
            env: None,
            session,
            up: true,
        },
        inspect: None,
        rate: None,
    }
}

/// Runs [`pump_up`] over `r` to its end, into sinks; returns how it ended
/// and what the backend got (None if its writer was still held).
fn pump_to_end(r: &mut Rounds, session: &WsSession) -> (End, Option<Vec<u8>>) {
    run(async {
        let pool = ReadPool::default();
        let mut buf = ReadBuf::with_capacity(512);
        let to_backend = Outbound::new(Sink::default(), true);
        let to_client = Outbound::new(Sink::default(), false);
        let end = pump_up(r, &mut buf, &pool, &to_backend, &to_client, session).await;
        (end, to_backend.w.try_lock().map(|w| w.0.clone()))
    })
}

/// The client-to-backend pump over `r`, with a client's scanner, no pings
/// and `session`'s notes: what every test here runs.
async fn pump_up<R, D, S>(
    r: &mut R,
    buf: &mut ReadBuf,
    pool: &ReadPool,
    to_backend: &Outbound<D>,
    to_client: &Outbound<S>,
    session: &WsSession,
) -> End
where
    R: AsyncReadRent + ReadReady,
    D: AsyncWriteRent,
    S: AsyncWriteRent,
{
    let side = up_side(session);
    pump(
        r,
        buf,
        pool,
        client_scanner(),
        to_backend,
        to_client,
        None,
        &UP,
        side,
    )
    .await
}

fn masked(op: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    crate::proto::ws::frame::write_frame(&mut f, true, op, Some([1, 2, 3, 4]), payload);
    f
}

/// A client's text and binary frames.
fn two_frames() -> Vec<u8> {
    let mut stream = masked(OpCode::Text, b"hello");
    stream.extend(masked(OpCode::Binary, &[9; 200]));
    stream
}

#[test]
fn frames_cut_at_every_byte_across_readiness_rounds_go_through_whole() {
    let stream = two_frames();
    for cut in 0..=stream.len() {
        let mut steps = split_at(&stream, cut);
        steps.push(Step::Eof);
        let mut r = Rounds::new(steps);
        let session = session();
        let (end, sent) = pump_to_end(&mut r, &session);
        assert_eq!(end, End::Vanished, "cut {cut}");
        let sent = sent.expect("backend writer free");
        assert_eq!(&sent[..stream.len()], &stream[..], "cut {cut}");
        assert_eq!(close_code(&sent[stream.len()..]), Some(1001), "cut {cut}");
    }
}

#[test]
fn a_partial_frame_is_kept_in_its_own_small_buffer_until_completed() {
    let frame = masked(OpCode::Text, b"hello");
    let mut r = Rounds::new([Step::Bytes(frame[..3].to_vec())]);
    let script = r.script.clone();
    let pool = ReadPool::default();
    let mut buf = ReadBuf::with_capacity(512);
    let session = session();
    let to_backend = Outbound::new(Sink::default(), true);
    let to_client = Outbound::new(Sink::default(), false);
    {
        let pumping = pump_up(&mut r, &mut buf, &pool, &to_backend, &to_client, &session);
        let mut pumping = pin!(pumping);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(pumping.as_mut().poll(&mut cx).is_pending());
        // The partial header moved into a buffer of its own size; the
        // pooled one is back for other sessions.
        assert_eq!(pool.free_len(), 1, "the pooled buffer went back");
        assert!(to_backend.w.try_lock().expect("free").0.is_empty());
        script
            .borrow_mut()
            .push_back(Step::Bytes(frame[3..].to_vec()));
        assert!(pumping.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            pool.free_len(),
            1,
            "drained: the pooled buffer is still there"
        );
    }
    assert_eq!(buf.buf.capacity(), 0, "an idle session holds no buffer");
    assert_eq!(to_backend.w.try_lock().expect("free").0, frame);
}

#[test]
fn a_destination_that_does_not_read_stops_the_reads() {
    let first = masked(OpCode::Binary, &[1; 300]);
    let second = masked(OpCode::Binary, &[2; 300]);
    let mut r = Rounds::new([
        Step::Bytes(first),
        Step::Spurious,
        Step::Bytes(second.clone()),
    ]);
    let script = r.script.clone();
    let pool = ReadPool::default();
    let mut buf = ReadBuf::with_capacity(512);
    let session = session();
    let to_backend = Outbound::new(Stuck, true);
    let to_client = Outbound::new(Sink::default(), false);
    let pumping = pump_up(&mut r, &mut buf, &pool, &to_backend, &to_client, &session);
    let mut pumping = pin!(pumping);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..3 {
        assert!(pumping.as_mut().poll(&mut cx).is_pending());
    }
    let left = script.borrow();
    assert!(
        matches!(left.back(), Some(Step::Bytes(b)) if *b == second),
        "nothing more is read while the write is stuck"
    );
    assert_eq!(pool.free_len(), 0, "the unsent bytes are the session's");
}

#[test]
fn an_end_or_a_reset_while_a_partial_frame_is_held_closes_the_other_side() {
    let frame = masked(OpCode::Text, b"hello");
    for last in [Step::Eof, Step::Fail(std::io::ErrorKind::ConnectionReset)] {
        let mut r = Rounds::new([Step::Bytes(frame[..4].to_vec()), last]);
        let session = session();
        let (end, sent) = pump_to_end(&mut r, &session);
        assert_eq!(end, End::Vanished);
        let sent = sent.expect("backend writer free");
        assert_eq!(close_code(&sent), Some(1001), "{sent:?}");
    }
}
