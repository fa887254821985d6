//! The watchdog's reconnect schedule: `auto_restart` after a disconnect,
//! doubling with each further failure up to `max_backoff`, with jitter so a
//! fleet of backends does not reconnect in lock step; reset by a successful
//! registration, pinned at the cap while the balancer refuses us.

use std::time::Duration;

/// Reconnect delays for one balancer.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
    /// Failures since the last successful registration.
    failures: u32,
}

impl Backoff {
    /// `base` is the first delay after a disconnect; `cap` the largest delay
    /// (raised to `base` if smaller). A zero base is taken as 1 ms.
    pub(super) fn new(base: Duration, cap: Duration) -> Self {
        let base = base.max(Duration::from_millis(1));
        Backoff {
            base,
            cap: cap.max(base),
            failures: 0,
        }
    }

    /// Failures counted since the last reset.
    pub(super) fn failures(&self) -> u32 {
        self.failures
    }

    /// A registration succeeded: the next delay is `base` again.
    pub(super) fn reset(&mut self) {
        self.failures = 0;
    }

    /// The delay before the next attempt, counting this one as a failure.
    /// With `refused`, the delay is taken at the cap.
    pub(super) fn next_delay(&mut self, refused: bool) -> Duration {
        let n = if refused { u32::MAX } else { self.failures };
        self.failures = self.failures.saturating_add(1);
        let (lo, hi) = self.window(n);
        jitter(lo, hi)
    }

    /// The range the delay after `n` earlier failures is drawn from:
    /// `exp = base * 2^n`; `[max(base, 0.8 * min(exp, cap)), min(cap, 1.25 * exp)]`.
    /// So every delay lies within `[base, cap]`.
    pub(super) fn window(&self, n: u32) -> (Duration, Duration) {
        let exp = self
            .base
            .checked_mul(1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.cap);
        let exp = exp.min(self.cap);
        let hi = exp.saturating_add(exp / 4).min(self.cap);
        let lo = (exp - exp / 5).max(self.base).min(hi);
        (lo, hi)
    }
}

/// A uniformly random duration in `[lo, hi]` (millisecond steps).
fn jitter(lo: Duration, hi: Duration) -> Duration {
    let span = u64::try_from(hi.saturating_sub(lo).as_millis()).unwrap_or(u64::MAX);
    if span == 0 {
        return lo;
    }
    lo + Duration::from_millis(fastrand::u64(0..=span))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn grows_then_caps_within_bounds() {
        let mut b = Backoff::new(S(2), S(30));
        let mut last_hi = Duration::ZERO;
        for n in 0..40 {
            let (lo, hi) = b.window(n);
            assert!(
                lo <= hi && lo >= S(2) && hi <= S(30),
                "n={n}: {lo:?}..{hi:?}"
            );
            assert!(hi >= last_hi, "window must not shrink");
            last_hi = hi;
            let d = b.next_delay(false);
            assert!(d >= S(2) && d <= S(30), "n={n}: {d:?}");
        }
        assert_eq!(b.window(0), (S(2), Duration::from_millis(2500)));
        assert_eq!(b.window(1), (Duration::from_millis(3200), S(5)));
        assert_eq!(b.window(10), (S(24), S(30)));
        assert_eq!(b.window(u32::MAX), (S(24), S(30)));
    }

    #[test]
    fn jitter_spreads_within_the_window() {
        let mut b = Backoff::new(S(2), S(30));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            b.reset();
            let d = b.next_delay(false);
            assert!((S(2)..=Duration::from_millis(2500)).contains(&d), "{d:?}");
            seen.insert(d);
        }
        assert!(
            seen.len() > 20,
            "jitter too narrow: {} distinct delays",
            seen.len()
        );
    }

    #[test]
    fn reset_after_registration_and_refusal_at_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), S(5));
        for _ in 0..8 {
            b.next_delay(false);
        }
        assert_eq!(b.failures(), 8);
        assert!(b.next_delay(false) >= S(4));
        b.reset();
        assert_eq!(b.failures(), 0);
        assert!(b.next_delay(false) <= Duration::from_millis(125));
        b.reset();
        let d = b.next_delay(true);
        assert!(d >= S(4) && d <= S(5), "refusal waits at the cap: {d:?}");
    }

    #[test]
    fn degenerate_settings() {
        let mut b = Backoff::new(S(10), S(1));
        assert_eq!(
            b.next_delay(false),
            S(10),
            "cap below base is raised to base"
        );
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(b.next_delay(true), Duration::from_millis(1));
        let b = Backoff::new(Duration::from_secs(u64::MAX / 2), Duration::MAX);
        let (lo, hi) = b.window(63);
        assert!(lo <= hi);
    }
}
