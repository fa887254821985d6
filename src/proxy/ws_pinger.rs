//! The inspect relay's client liveness: a ping when the client has been
//! silent for the ping interval, and the session ended when no pong comes
//! back within the pong timeout. The timeout counts from the moment the
//! ping is due, so that a ping stuck behind a client that stopped reading
//! ends the session just the same; but a ping queued mid-frame behind
//! writes that keep going out has its timeout counted from when it goes
//! out (the client is reading, it just has not reached the ping yet).

use std::cell::Cell;
use std::time::Duration;

use monoio::io::AsyncWriteRent;
use monoio::time::Instant;

use super::outbound::Outbound;
use super::ws_relay::End;
use crate::ws::frame::OpCode;

/// The client's liveness: pings sent on idle, pongs expected back. The
/// reader only stamps `last_rx`; the pinger task owns the timers, so the
/// per-message path sets no timer at all.
pub(super) struct PingState {
    pub(super) interval: Option<Duration>,
    pub(super) timeout: Duration,
    pub(super) outstanding: Cell<Option<[u8; 8]>>,
    pub(super) counter: Cell<u64>,
    pub(super) last_rx: Cell<Instant>,
}

impl PingState {
    pub(super) fn new(interval: Option<Duration>, timeout: Duration) -> Self {
        Self {
            interval,
            timeout,
            outstanding: Cell::new(None),
            counter: Cell::new(0),
            last_rx: Cell::new(Instant::now()),
        }
    }
}

/// How often, per pong timeout, a ping queued mid-frame looks at the
/// writer's progress: a client that stops reading is closed at most a
/// pong timeout and this fraction of one after its last write completed.
const QUEUED_CHECKS: u32 = 4;

/// Pings the client when it has been silent for the ping interval, and
/// closes the session (1001 both ways, each close bounded in time) when
/// no pong came back within the pong timeout and either the client sent
/// nothing or the writer toward it was stuck the whole time (the ping
/// itself, or the write it waits behind, on a client that does not read).
/// The timeout counts from the moment the ping was due, restarted while
/// the ping waits for a frame boundary behind writes that keep completing,
/// and restarted once more when it goes out. Never ends when pings are off.
pub(super) async fn pinger<CW, BW>(
    ping: &PingState,
    to_client: &Outbound<CW>,
    to_backend: &Outbound<BW>,
) -> End
where
    CW: AsyncWriteRent,
    BW: AsyncWriteRent,
{
    let Some(interval) = ping.interval else {
        return std::future::pending().await;
    };
    loop {
        let due = ping.last_rx.get() + interval;
        let now = Instant::now();
        if now < due {
            // Boxed: a timer entry is large and cache-aligned.
            Box::pin(monoio::time::sleep_until(due)).await;
            continue;
        }
        let n = ping.counter.get().wrapping_add(1);
        ping.counter.set(n);
        let payload = n.to_be_bytes();
        ping.outstanding.set(Some(payload));
        // Where the pong timeout counts from, and the writer's state then.
        let mut clock = now;
        let mut seen = to_client.write_state();
        let (made_before, _) = to_client.made_out();
        let write = to_client.inject(OpCode::Ping, &payload);
        // Written, queued behind the forwarder, or still stuck at the
        // deadline (then abandoned: the client direction is cut).
        let sent = Box::pin(monoio::time::timeout_at(now + ping.timeout, write)).await;
        if sent == Ok(false) {
            return End::Vanished;
        }
        // Queued for the next frame boundary: not on the wire yet.
        let mut queued = sent.is_ok() && to_client.made_out().0 == made_before;
        loop {
            let deadline = clock + ping.timeout;
            let wake = if queued {
                deadline.min(Instant::now() + ping.timeout / QUEUED_CHECKS)
            } else {
                deadline
            };
            Box::pin(monoio::time::sleep_until(wake)).await;
            if ping.outstanding.get() != Some(payload) {
                break; // answered
            }
            let state = to_client.write_state();
            if queued {
                let (made, at) = to_client.made_out();
                if made != made_before {
                    // Out now: the client gets the whole timeout to answer.
                    queued = false;
                    clock = clock.max(at);
                    seen = state;
                    continue;
                }
                if state.2 != seen.2 {
                    // The frame ahead of the ping is still going out: the
                    // client reads, it has just not reached the ping.
                    clock = Instant::now();
                    seen = state;
                    continue;
                }
            }
            if Instant::now() < deadline {
                continue;
            }
            let heard = ping.last_rx.get() > now;
            // The ping's own write, or the forwarder's write it queued
            // behind, got nowhere in the whole timeout. (A forwarder idle
            // mid-frame, waiting on its backend, is not stalled.)
            let stalled = sent.is_err() || (seen.0 && state == seen);
            if !heard || stalled {
                tracing::debug!(heard, stalled, "client did not answer ping: closing");
                to_backend.close(1001, "client ping timeout").await;
                to_client.close(1001, "ping timeout").await;
                return End::Aborted;
            }
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

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
            let forward = to_client.forward(vec![0x82, 0x00], 0, 2, true);
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
        assert!(to_client.forward(head, 0, 4, false).await.0);
        for i in 0..chunks {
            let last = i + 1 == chunks;
            assert!(to_client.forward(vec![0; 1024], 0, 1024, last).await.0);
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
}
