//! Per-connection bandwidth limit (`--throttle-bps`): a token bucket per
//! direction that is charged after each read and, once its budget is
//! spent, makes the reader sleep (a timer, never a busy loop) until the
//! bytes are paid for. No per-byte work: one charge per read.

use std::cell::Cell;
use std::time::Duration;

use monoio::time::Instant;

/// Budget a bucket starts with and can save up to: about one read buffer,
/// so a connection that was quiet may move one buffer at once.
pub const BURST_BYTES: u64 = 32 * 1024;

/// One direction's token bucket: `bps` bytes per second, with a burst of
/// [`BURST_BYTES`]. Worker-local (cells, no atomics).
#[derive(Debug)]
pub struct RateLimit {
    bps: f64,
    burst: f64,
    /// Bytes that may still go without waiting; negative: owed.
    tokens: Cell<f64>,
    /// When `tokens` was last brought up to date.
    last: Cell<Instant>,
}

impl RateLimit {
    /// A full bucket for `bps` bytes per second (at least 1).
    pub fn new(bps: u64) -> Self {
        let burst = BURST_BYTES as f64;
        RateLimit {
            bps: bps.max(1) as f64,
            burst,
            tokens: Cell::new(burst),
            last: Cell::new(Instant::now()),
        }
    }

    /// Charges `n` bytes at `now`; returns how long the caller must wait
    /// before moving more bytes (`None`: no wait).
    pub fn charge_at(&self, n: usize, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.last.get()).as_secs_f64();
        self.last.set(now);
        let refilled = (self.tokens.get() + elapsed * self.bps).min(self.burst);
        let left = refilled - n as f64;
        self.tokens.set(left);
        (left < 0.0).then(|| Duration::from_secs_f64(-left / self.bps))
    }

    /// Charges `n` bytes just moved and sleeps while they are owed.
    pub async fn pace(&self, n: usize) {
        if let Some(wait) = self.charge_at(n, Instant::now()) {
            // Boxed: only a throttled connection holds a timer's state.
            Box::pin(monoio::time::sleep(wait)).await;
        }
    }
}

/// The two buckets of one client connection, counted separately.
#[derive(Debug)]
pub struct ConnRates {
    /// Client to backend.
    pub up: RateLimit,
    /// Backend to client.
    pub down: RateLimit,
}

impl ConnRates {
    /// Both directions at `bps` bytes per second; `None` when `bps` is 0
    /// (no limit: the relays then pay one branch per read).
    pub fn new(bps: u64) -> Option<Box<ConnRates>> {
        (bps > 0).then(|| {
            Box::new(ConnRates {
                up: RateLimit::new(bps),
                down: RateLimit::new(bps),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_lets_a_burst_through() {
        let r = RateLimit::new(1000);
        let t0 = Instant::now();
        assert_eq!(r.charge_at(BURST_BYTES as usize, t0), None);
        // Spent: the next 1000 bytes cost a second.
        let wait = r.charge_at(1000, t0).expect("must wait");
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-6, "{wait:?}");
    }

    #[test]
    fn the_average_rate_holds_over_many_charges() {
        let r = RateLimit::new(256 * 1024);
        let mut now = Instant::now();
        let mut waited = Duration::ZERO;
        // 4 MiB in 16 KiB reads, each followed by its wait.
        for _ in 0..256 {
            if let Some(w) = r.charge_at(16 * 1024, now) {
                now += w;
                waited += w;
            }
        }
        // 4 MiB minus the burst at 256 KiB/s.
        let expected = (4.0 * 1024.0 * 1024.0 - BURST_BYTES as f64) / (256.0 * 1024.0);
        assert!((waited.as_secs_f64() - expected).abs() < 0.01, "{waited:?}");
    }

    #[test]
    fn a_quiet_connection_saves_up_only_one_burst() {
        let r = RateLimit::new(1000);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(r.charge_at(BURST_BYTES as usize, later), None);
        assert!(r.charge_at(1, later).is_some());
    }

    #[test]
    fn zero_means_off() {
        assert!(ConnRates::new(0).is_none());
        assert!(ConnRates::new(1).is_some());
    }
}
