//! Tests for the inspect relay's client liveness: pings, pong timeouts,
//! and writers toward the client that stall or crawl.

use std::cell::RefCell;
use std::rc::Rc;

use super::super::outbound::At;
use super::super::test_io::{close_code, run, Sink, Slow, Stuck};
use super::*;

#[test]
fn a_ping_stuck_in_its_own_write_still_ends_the_session_at_the_pong_timeout() {
    // The forwarder is idle (the writer is free), but the client's
    // socket takes nothing: the ping write itself never completes.
    let (took, end, backend) = run(async {
        let ping = PingState::new(Some(Duration::from_millis(50)), Duration::from_millis(200));
        let to_client = Outbound::new(Stuck, false);
        let to_backend = Outbound::new(Sink::default(), true);
        let start = std::time::Instant::now();
        let end = monoio::time::timeout(
            Duration::from_secs(10),
            pinger(&ping, &to_client, &to_backend),
        )
        .await;
        let w = to_backend.w.try_lock().map(|w| w.0.clone());
        (start.elapsed(), end, w)
    });
    assert_eq!(end, Ok(End::Aborted), "the pinger never gave up");
    // Due at 50 ms, bounded 200 ms later; the client's close is not
    // even tried on a cut stream.
    assert!(took < Duration::from_millis(900), "took {took:?}");
    let backend = backend.expect("backend writer free");
    assert_eq!(
        close_code(&backend),
        Some(1001),
        "to the backend: {backend:?}"
    );
}

/// Stamps the client's activity every 20 ms for a second.
async fn chatty(ping: &PingState) {
    for _ in 0..50 {
        monoio::time::sleep(Duration::from_millis(20)).await;
        ping.last_rx.set(Instant::now());
    }
}

#[test]
fn a_client_that_sends_but_never_reads_is_closed() {
    // The forwarder toward the client is stuck in a write; the ping
    // waits behind it; the client keeps sending.
    let end = run(async {
        let ping = PingState::new(Some(Duration::from_millis(10)), Duration::from_millis(200));
        let to_client = Outbound::new(Stuck, false);
        let to_backend = Outbound::new(Sink::default(), true);
        let forward = to_client.forward(vec![0x82, 0x00], 0, 2, At::Between);
        monoio::select! {
            e = pinger(&ping, &to_client, &to_backend) => Some(e),
            _ = forward => None,
            _ = chatty(&ping) => None,
        }
    });
    assert_eq!(end, Some(End::Aborted));
}

#[test]
fn a_chatty_client_waiting_on_a_backend_mid_frame_stays() {
    // The ping cannot go out mid-frame, but the writer is idle (the
    // backend is slow, not the client): the client's own frames count.
    let end = run(async {
        let ping = PingState::new(Some(Duration::from_millis(10)), Duration::from_millis(200));
        let to_client = Outbound::new(Sink::default(), false);
        to_client.at_boundary.set(false);
        let to_backend = Outbound::new(Sink::default(), true);
        monoio::select! {
            e = pinger(&ping, &to_client, &to_backend) => Some(e),
            _ = chatty(&ping) => None,
        }
    });
    assert_eq!(end, None, "a client that kept sending was closed");
}

#[test]
fn a_close_to_a_client_that_does_not_read_gives_up() {
    let (took, ok) = run(async {
        let to_client = Outbound::new(Stuck, false);
        let start = std::time::Instant::now();
        let ok = to_client.close(1001, "bye").await;
        (start.elapsed(), ok)
    });
    assert!(!ok);
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn an_answered_ping_keeps_the_session() {
    let end = run(async {
        let ping = PingState::new(Some(Duration::from_millis(20)), Duration::from_millis(100));
        let to_client = Outbound::new(Sink::default(), false);
        let to_backend = Outbound::new(Sink::default(), true);
        let answer = async {
            // Answers every ping as the reader would (pong seen).
            for _ in 0..20 {
                monoio::time::sleep(Duration::from_millis(10)).await;
                ping.outstanding.set(None);
            }
        };
        monoio::select! {
            e = pinger(&ping, &to_client, &to_backend) => Some(e),
            _ = answer => None,
        }
    });
    assert_eq!(end, None, "an answering client was closed");
}

const SLOW_TIMEOUT: Duration = Duration::from_millis(300);

/// The backend's side of one large binary frame of `chunks` KiB toward
/// the client: the header, then the payload a KiB per write, the frame
/// boundary only at the end. Then nothing more.
async fn one_large_frame<W: AsyncWriteRent>(to_client: &Outbound<W>, chunks: u16) {
    let mut head = vec![0x82, 126];
    head.extend_from_slice(&(chunks * 1024).to_be_bytes());
    assert!(to_client.forward(head, 0, 4, At::MidFrame).await.0);
    for i in 0..chunks {
        let last = i + 1 == chunks;
        assert!(
            to_client
                .forward(
                    vec![0; 1024],
                    0,
                    1024,
                    if last { At::Between } else { At::MidFrame }
                )
                .await
                .0
        );
    }
    std::future::pending::<()>().await;
}

/// A receive-only client: sends nothing but pongs, each as soon as
/// its ping has arrived whole in `got` (stamping its activity, as the
/// relay's reader does). Counts the pongs.
async fn answers_pings(ping: &PingState, got: &RefCell<Vec<u8>>, pongs: &Cell<u32>) {
    loop {
        monoio::time::sleep(Duration::from_millis(10)).await;
        let Some(p) = ping.outstanding.get() else {
            continue;
        };
        let mut frame = vec![0x89, 8];
        frame.extend_from_slice(&p);
        if got.borrow().windows(frame.len()).any(|w| w == frame) {
            ping.outstanding.set(None);
            ping.last_rx.set(Instant::now());
            pongs.set(pongs.get() + 1);
        }
    }
}

#[test]
fn a_receive_only_client_on_a_slow_link_mid_frame_stays_and_answers_the_ping() {
    // The ping is due at 50 ms, mid-frame; each write toward the client
    // takes a third of the pong timeout, so the frame takes 1.3 s, far
    // past interval + timeout, and the ping goes out only at its end.
    let (end, pongs, got) = run(async {
        let ping = PingState::new(Some(Duration::from_millis(50)), SLOW_TIMEOUT);
        let got = Rc::new(RefCell::new(Vec::new()));
        let slow = Slow {
            delay: SLOW_TIMEOUT / 3,
            writes: usize::MAX,
            got: got.clone(),
        };
        let to_client = Outbound::new(slow, false);
        let to_backend = Outbound::new(Sink::default(), true);
        let pongs = Cell::new(0);
        let end = monoio::select! {
            e = pinger(&ping, &to_client, &to_backend) => Some(e),
            _ = one_large_frame(&to_client, 12) => None,
            _ = answers_pings(&ping, &got, &pongs) => None,
            _ = monoio::time::sleep(Duration::from_millis(2300)) => None,
        };
        let got = got.borrow().clone();
        (end, pongs.get(), got)
    });
    assert_eq!(end, None, "a client reading slowly was closed");
    // The frame arrived whole, the ping after it, and no close.
    let frame_len = 4 + 12 * 1024;
    assert!(got.len() > frame_len, "only {} bytes arrived", got.len());
    assert_eq!(&got[..4], &[0x82, 126, 0x30, 0x00]);
    assert!(got[4..frame_len].iter().all(|&b| b == 0), "frame cut");
    assert_eq!(got[frame_len], 0x89, "no ping after the frame");
    assert!(!got[frame_len..].contains(&0x88), "a close was sent");
    // The ping queued mid-frame, then those sent on idle afterwards.
    assert!(pongs >= 2, "pongs: {pongs}");
}

#[test]
fn a_client_that_stops_reading_mid_frame_is_closed_a_pong_timeout_later() {
    // Four writes go through (the last done at 400 ms), then the client
    // stops reading: the queued ping never goes out.
    let (took, end, backend) = run(async {
        let ping = PingState::new(Some(Duration::from_millis(50)), SLOW_TIMEOUT);
        let got = Rc::new(RefCell::new(Vec::new()));
        let slow = Slow {
            delay: Duration::from_millis(100),
            writes: 4,
            got: got.clone(),
        };
        let to_client = Outbound::new(slow, false);
        let to_backend = Outbound::new(Sink::default(), true);
        let pongs = Cell::new(0);
        let start = std::time::Instant::now();
        let end = monoio::select! {
            e = pinger(&ping, &to_client, &to_backend) => Some(e),
            _ = one_large_frame(&to_client, 12) => None,
            _ = answers_pings(&ping, &got, &pongs) => None,
            _ = monoio::time::sleep(Duration::from_secs(10)) => None,
        };
        let w = to_backend.w.try_lock().map(|w| w.0.clone());
        (start.elapsed(), end, w)
    });
    assert_eq!(end, Some(End::Aborted), "the pinger never gave up");
    // Not at the first deadline (350 ms: the client was reading), but
    // within a pong timeout (and a quarter) of the last write.
    assert!(took >= Duration::from_millis(400), "took {took:?}");
    assert!(
        took < Duration::from_millis(400 + 375 + 300),
        "took {took:?}"
    );
    let backend = backend.expect("backend writer free");
    assert_eq!(close_code(&backend), Some(1001), "{backend:?}");
}

/// Stamps the client's activity every `period`, forever.
async fn sends_every(ping: &PingState, period: Duration) {
    loop {
        monoio::time::sleep(period).await;
        ping.last_rx.set(Instant::now());
    }
}

#[test]
fn a_client_too_chatty_to_be_pinged_that_never_reads_is_closed() {
    // It sends three times per interval, so no ping is ever due; the
    // forwarder toward it is stuck on one write.
    let interval = Duration::from_millis(60);
    let (took, end, backend) = run(async {
        let ping = PingState::new(Some(interval), Duration::from_millis(200));
        let to_client = Outbound::new(Stuck, false);
        let to_backend = Outbound::new(Sink::default(), true);
        let start = std::time::Instant::now();
        let end = monoio::select! {
            e = pinger(&ping, &to_client, &to_backend) => Some(e),
            _ = to_client.forward(vec![0x82, 0x00], 0, 2, At::Between) => None,
            _ = sends_every(&ping, interval / 3) => None,
            _ = monoio::time::sleep(Duration::from_secs(5)) => None,
        };
        let w = to_backend.w.try_lock().map(|w| w.0.clone());
        (start.elapsed(), end, w)
    });
    assert_eq!(end, Some(End::Aborted), "the stalled client was kept");
    // Seen stuck at the first wake (an interval), closed a pong timeout on.
    assert!(
        took < Duration::from_millis(60 + 200 + 200),
        "took {took:?}"
    );
    let backend = backend.expect("backend writer free");
    assert_eq!(close_code(&backend), Some(1001), "{backend:?}");
}

#[test]
fn a_chatty_client_on_a_slow_link_stays() {
    // Every write toward the client takes a third of the pong timeout, the
    // large frame four times the timeout in all; the client keeps sending.
    let end = run(async {
        let ping = PingState::new(Some(Duration::from_millis(50)), SLOW_TIMEOUT);
        let slow = Slow {
            delay: SLOW_TIMEOUT / 3,
            writes: usize::MAX,
            got: Rc::new(RefCell::new(Vec::new())),
        };
        let to_client = Outbound::new(slow, false);
        let to_backend = Outbound::new(Sink::default(), true);
        monoio::select! {
            e = pinger(&ping, &to_client, &to_backend) => Some(e),
            _ = one_large_frame(&to_client, 12) => None,
            _ = sends_every(&ping, Duration::from_millis(15)) => None,
            _ = monoio::time::sleep(Duration::from_millis(1500)) => None,
        }
    });
    assert_eq!(end, None, "a chatty client reading slowly was closed");
}
