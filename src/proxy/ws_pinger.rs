//! The inspect relay's client liveness: a ping when the client has been
//! silent for the ping interval, and the session ended when no pong comes
//! back within the pong timeout. The timeout counts from the moment the
//! ping is due, so that a ping stuck behind a client that stopped reading
//! ends the session just the same; but a ping queued mid-frame behind
//! writes that keep going out has its timeout counted from when it goes
//! out (the client is reading, it just has not reached the ping yet). A
//! client too chatty to be pinged is closed when one write toward it gets
//! nowhere for the pong timeout (it sends, but stopped reading).

use std::cell::Cell;
use std::time::Duration;

use monoio::io::AsyncWriteRent;
use monoio::time::Instant;

use crate::rt::alarm;

use super::outbound::{End, Outbound};
use crate::proto::ws::frame::{FrameHeader, OpCode};
use crate::proto::ws::scanner::control_payload;

/// The client's liveness: pings sent on idle, pongs expected back. The
/// reader only stamps `last_rx`; the pinger task owns the timers, so the
/// per-message path sets no timer at all.
pub(super) struct PingState {
    pub(super) interval: Option<Duration>,
    pub(super) timeout: Duration,
    pub(super) outstanding: Cell<Option<[u8; 8]>>,
    pub(super) counter: Cell<u64>,
    pub(super) last_rx: Cell<Instant>,
    /// The session, whose operator pings' pongs are counted and swallowed.
    pub(super) session: Option<std::rc::Rc<super::session::WsSession>>,
}

impl PingState {
    pub(super) fn new(interval: Option<Duration>, timeout: Duration) -> Self {
        Self {
            interval,
            timeout,
            outstanding: Cell::new(None),
            counter: Cell::new(0),
            last_rx: Cell::new(Instant::now()),
            session: None,
        }
    }

    /// Whether the whole pong `frame` answers our outstanding ping (if so,
    /// that ping counts as answered and the pong is not forwarded).
    pub(super) fn answered_by(&self, frame: &[u8], header: &FrameHeader) -> bool {
        let (payload, n) = control_payload(frame, header);
        let ours = self.outstanding.get().is_some_and(|o| payload[..n] == o);
        if ours {
            self.outstanding.set(None);
            return true;
        }
        self.session
            .as_ref()
            .is_some_and(|s| s.answers_op_ping(&payload[..n]))
    }
}

/// How often, per pong timeout, a ping queued mid-frame looks at the
/// writer's progress: a client that stops reading is closed at most a
/// pong timeout and this fraction of one after its last write completed.
const QUEUED_CHECKS: u32 = 4;

/// The write toward the client last seen under way (the writer's state
/// then) and since when: seen again with the same state, that one write
/// got nowhere in between.
#[derive(Default)]
struct StallWatch(Option<((bool, u64, u64), Instant)>);

impl StallWatch {
    /// Notes the writer's `state` at `now`; returns since when the write
    /// under way now has been seen stuck, if one is.
    fn observe(&mut self, state: (bool, u64, u64), now: Instant) -> Option<Instant> {
        self.0 = match self.0 {
            Some((seen, since)) if seen == state => Some((seen, since)),
            _ if state.0 => Some((state, now)),
            _ => None,
        };
        self.0.map(|(_, since)| since)
    }
}

/// Pings the client when it has been silent for the ping interval, and
/// closes the session (1001 both ways, each close bounded in time) when
/// no pong came back within the pong timeout and either the client sent
/// nothing or the writer toward it was stuck the whole time (the ping
/// itself, or the write it waits behind, on a client that does not read).
/// A client that sends too often to be pinged is closed the same way when
/// one write toward it gets nowhere for the whole pong timeout.
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
    let mut watch = StallWatch::default();
    loop {
        let due = ping.last_rx.get() + interval;
        let now = Instant::now();
        if now < due {
            // A chatty client is never pinged, so its writer is watched
            // here: the pinger wakes at least once per interval (`due` is
            // at most an interval away), and once more when a write seen
            // under way would have been stuck for the whole pong timeout.
            let wake = match watch.observe(to_client.write_state(), now) {
                Some(since) if now >= since + ping.timeout => {
                    tracing::debug!("write toward the client got nowhere: closing");
                    // Boxed: only an ending session holds the closes' state.
                    Box::pin(async {
                        to_backend.close(1001, "client not reading").await;
                        to_client.close(1001, "not reading").await;
                    })
                    .await;
                    return End::Aborted;
                }
                Some(since) => due.min(since + ping.timeout),
                None => due,
            };
            // The worker's shared timer: a runtime timer entry is large
            // and cache-aligned, and an idle session would keep one.
            alarm::sleep_until(wake).await;
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
            alarm::sleep_until(wake).await;
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
                Box::pin(async {
                    to_backend.close(1001, "client ping timeout").await;
                    to_client.close(1001, "ping timeout").await;
                })
                .await;
                return End::Aborted;
            }
            break;
        }
    }
}

#[cfg(test)]
#[path = "ws_pinger_tests.rs"]
mod tests;
