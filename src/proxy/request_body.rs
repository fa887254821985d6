//! The request-body half of an exchange: streams the client's body to the
//! backend under the body deadline (a grace time plus what the bytes
//! received so far buy at the minimum rate), and says which side stopped;
//! each write toward the backend sets the backend's due time.

use std::cell::Cell;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::time::Instant;

use crate::proto::http::BodyTracker;
use crate::rt::io::CHUNK;
use crate::rt::io::{write_range, ReadBuf};
use crate::rt::rate::RateLimit;

/// When a request body must be complete: `start + grace + received / rate`
/// (`rate` in bytes per second; 0 makes `grace` a total deadline).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyDeadline {
    pub grace: Duration,
    pub min_rate: u64,
}

impl BodyDeadline {
    /// The deadline of a body that started at `start` and has brought
    /// `received` bytes so far.
    pub(crate) fn at(&self, start: Instant, received: u64) -> Instant {
        let earned = received
            .saturating_mul(1000)
            .checked_div(self.min_rate)
            .map_or(Duration::ZERO, Duration::from_millis);
        let allowed = self.grace.saturating_add(earned);
        // A deadline past what the clock can hold: a year is as good.
        start
            .checked_add(allowed)
            .unwrap_or_else(|| start + Duration::from_secs(365 * 24 * 3600))
    }
}

/// Why the request body stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestStop {
    /// The client closed, failed or sent a malformed body.
    ClientGone,
    /// The client did not send the body in time (408).
    ClientTimeout,
    /// The backend stopped taking the body (it may have answered early):
    /// not a failure by itself; the response decides.
    BackendStopped,
}

/// Where the request stands, as the response side sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestState {
    /// The head or the body is still going to the backend.
    Sending,
    /// The head and the whole body went to the backend.
    Whole,
    /// It stopped before its end (see [`RequestStop`]).
    Stopped,
}

/// Where a streamed body stands and what bounds it.
pub(crate) struct BodyPump<'a> {
    pub tracker: &'a mut BodyTracker,
    /// What the tracker already saw of the body (sent with the head).
    pub received: u64,
    pub deadline: BodyDeadline,
    /// Longest wait for one read from the client.
    pub idle: Duration,
    /// Since when the backend owes progress: set when a write toward it
    /// starts (the exchange's timer ends a write the backend does not take
    /// within the backend timeout), `None` while waiting on the client.
    pub backend_due: &'a Cell<Option<Instant>>,
    /// The client sent `Expect: 100-continue`: until a 1xx went out
    /// (`continued`) or a body byte came, the backend owes that answer and
    /// its due time stands while the client is waited on.
    pub expect_continue: bool,
    pub continued: &'a Cell<bool>,
    /// The client's upload limit (`--throttle-bps`), if any.
    pub rate: Option<&'a RateLimit>,
}

/// Streams the rest of a request body from the client to the backend. Each
/// read waits at most until the body deadline and at most `idle` (a stall
/// after fast bytes earned a far deadline). Writes go in pieces of at most
/// [`CHUNK`] bytes, each re-arming the backend's due time.
pub(crate) async fn pump_request<CR, BW>(
    client_r: &mut CR,
    client_buf: &mut ReadBuf,
    backend_w: &mut BW,
    body: BodyPump<'_>,
) -> Result<(), RequestStop>
where
    CR: AsyncReadRent,
    BW: AsyncWriteRent,
{
    let BodyPump {
        tracker,
        mut received,
        deadline,
        idle,
        backend_due,
        expect_continue,
        continued,
        rate,
    } = body;
    let start = Instant::now();
    while !tracker.is_done() {
        if client_buf.is_empty() {
            if !(expect_continue && received == 0 && !continued.get()) {
                backend_due.set(None);
            }
            let now = Instant::now();
            let until = deadline.at(start, received).min(now + idle);
            let read = client_buf.read_from(client_r, CHUNK);
            match monoio::time::timeout_at(until, read).await {
                Ok(Ok(n)) if n > 0 => {
                    if let Some(rate) = rate {
                        rate.pace(n).await;
                    }
                }
                Ok(_) => return Err(RequestStop::ClientGone),
                Err(_) => return Err(RequestStop::ClientTimeout),
            }
        }
        let p = tracker
            .scan(client_buf.data())
            .map_err(|_| RequestStop::ClientGone)?;
        let mut left = p.consumed;
        while left > 0 {
            let n = left.min(CHUNK);
            backend_due.set(Some(Instant::now()));
            let buf = std::mem::take(&mut client_buf.buf);
            let pos = client_buf.pos;
            let (res, buf) = write_range(backend_w, buf, pos, pos + n).await;
            client_buf.buf = buf;
            if res.is_err() {
                return Err(RequestStop::BackendStopped);
            }
            client_buf.consume(n);
            left -= n;
        }
        received = received.saturating_add(p.consumed as u64);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_grows_with_the_bytes_received() {
        let d = BodyDeadline {
            grace: Duration::from_secs(1),
            min_rate: 1000,
        };
        let t0 = Instant::now();
        assert_eq!(d.at(t0, 0), t0 + Duration::from_secs(1));
        assert_eq!(d.at(t0, 500), t0 + Duration::from_millis(1500));
        assert_eq!(d.at(t0, 3000), t0 + Duration::from_secs(4));
        // Huge counts saturate instead of overflowing.
        assert!(d.at(t0, u64::MAX) > t0 + Duration::from_secs(1000));
    }

    #[test]
    fn zero_rate_is_a_total_deadline() {
        let d = BodyDeadline {
            grace: Duration::from_secs(2),
            min_rate: 0,
        };
        let t0 = Instant::now();
        assert_eq!(d.at(t0, 1 << 40), t0 + Duration::from_secs(2));
    }
}
