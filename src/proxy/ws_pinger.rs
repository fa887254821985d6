//! The inspect relay's client liveness: a ping when the client has been
//! silent for the ping interval, and the session ended when no pong comes
//! back within the pong timeout, counted from the moment the ping is due,
//! so that a ping stuck behind a client that stopped reading ends the
//! session just the same.

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

/// Pings the client when it has been silent for the ping interval, and
/// closes the session (1001 both ways, each close bounded in time) when,
/// within the pong timeout from the moment the ping was due, no pong came
/// back and either the client sent nothing or the writer toward it was
/// stuck the whole time (the ping itself, or the write it waits behind,
/// on a client that does not read). Never ends when pings are off.
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
        let deadline = now + ping.timeout;
        let n = ping.counter.get().wrapping_add(1);
        ping.counter.set(n);
        let payload = n.to_be_bytes();
        ping.outstanding.set(Some(payload));
        let before = to_client.write_state();
        let write = to_client.inject(OpCode::Ping, &payload);
        // Written, queued behind the forwarder, or still stuck at the
        // deadline (then abandoned: the client direction is cut).
        let sent = Box::pin(monoio::time::timeout_at(deadline, write)).await;
        if sent == Ok(false) {
            return End::Vanished;
        }
        Box::pin(monoio::time::sleep_until(deadline)).await;
        let answered = ping.outstanding.get() != Some(payload);
        let heard = ping.last_rx.get() > now;
        // The ping's own write, or the forwarder's write it queued behind,
        // got nowhere in the whole timeout. (A forwarder idle mid-frame,
        // waiting on its backend, is not stalled.)
        let stalled = sent.is_err() || (before.0 && to_client.write_state() == before);
        if !answered && (!heard || stalled) {
            tracing::debug!(heard, stalled, "client did not answer ping: closing");
            to_backend.close(1001, "client ping timeout").await;
            to_client.close(1001, "ping timeout").await;
            return End::Aborted;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_io::{close_code, run, Sink, Stuck};
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
}
