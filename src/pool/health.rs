//! Passive health: failures seen by the proxy eject a backend for a while,
//! doubling per consecutive failure up to a cap. When the ejection ends the
//! next request tries it again (half-open); a success resets the count.

use std::sync::atomic::Ordering;

use super::stats::BackendStats;

/// How long failing backends stay out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HealthPolicy {
    /// First ejection, milliseconds.
    pub base_ejection_ms: u64,
    /// Longest ejection, milliseconds.
    pub max_ejection_ms: u64,
    /// Consecutive failures before the first ejection (0 acts as 1).
    pub failures_to_eject: u32,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            base_ejection_ms: 1000,
            max_ejection_ms: 30_000,
            failures_to_eject: 1,
        }
    }
}

impl HealthPolicy {
    /// Ejection length after `consecutive` failures, before jitter (0 = none).
    pub(crate) fn ejection_ms(&self, consecutive: u32) -> u64 {
        let threshold = self.failures_to_eject.max(1);
        if consecutive < threshold {
            return 0;
        }
        let doublings = (consecutive - threshold).min(32);
        self.base_ejection_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_ejection_ms)
    }
}

/// Record a failed attempt. Returns true if this failure ejected a backend
/// that was not ejected before. Later failures while ejected extend it.
pub(crate) fn record_failure(stats: &BackendStats, policy: &HealthPolicy, now_ms: u64) -> bool {
    stats.failures_total.fetch_add(1, Ordering::Relaxed);
    let consecutive = stats
        .consecutive_failures
        .fetch_add(1, Ordering::Relaxed)
        .saturating_add(1);
    let base = policy.ejection_ms(consecutive);
    if base == 0 {
        return false;
    }
    // Up to 10% less, so workers that failed together do not retry together.
    let ms = base - fastrand::u64(..=base / 10);
    let until = now_ms.saturating_add(ms.max(1));
    let before = stats.extend_ejection(until);
    before <= now_ms
}

/// Record a successful attempt: the consecutive failure count starts again.
pub(crate) fn record_success(stats: &BackendStats) {
    if stats.consecutive_failures.load(Ordering::Relaxed) != 0 {
        stats.consecutive_failures.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn first_failure_ejects_for_about_base() {
        let s = BackendStats::default();
        let p = HealthPolicy::default();
        assert!(record_failure(&s, &p, 1000));
        let until = s.ejected_until_ms.load(Relaxed);
        assert!((1900..=2000).contains(&until), "{until}");
        assert_eq!(s.failures_total.load(Relaxed), 1);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = HealthPolicy::default();
        let got: Vec<u64> = (1..=8).map(|c| p.ejection_ms(c)).collect();
        assert_eq!(
            got,
            vec![1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(p.ejection_ms(u32::MAX), 30000);
        let p3 = HealthPolicy {
            failures_to_eject: 3,
            ..p
        };
        assert_eq!(p3.ejection_ms(2), 0);
        assert_eq!(p3.ejection_ms(3), 1000);
    }

    #[test]
    fn half_open_then_longer_or_reset() {
        let s = BackendStats::default();
        let p = HealthPolicy::default();
        assert!(record_failure(&s, &p, 0));
        // Another failure while ejected (a request already in flight) extends it
        // but does not count as a new ejection.
        assert!(!record_failure(&s, &p, 10));
        let until = s.ejected_until_ms.load(Relaxed);
        assert!(until >= 10 + 1800, "{until}");
        // After it ends, the trial request fails again: longer ejection.
        let now = until;
        assert!(record_failure(&s, &p, now));
        assert!(s.ejected_until_ms.load(Relaxed) >= now + 3600);
        // A success resets the backoff.
        record_success(&s);
        assert_eq!(s.consecutive_failures.load(Relaxed), 0);
        let now = s.ejected_until_ms.load(Relaxed);
        assert!(record_failure(&s, &p, now));
        assert!(s.ejected_until_ms.load(Relaxed) <= now + 1000);
    }

    #[test]
    fn threshold_delays_ejection() {
        let s = BackendStats::default();
        let p = HealthPolicy {
            failures_to_eject: 2,
            ..HealthPolicy::default()
        };
        assert!(!record_failure(&s, &p, 0));
        assert_eq!(s.ejected_until_ms.load(Relaxed), 0);
        assert!(record_failure(&s, &p, 0));
        assert!(s.ejected_until_ms.load(Relaxed) > 0);
    }
}
