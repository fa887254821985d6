//! Clocks for the pool: a cheap monotonic millisecond clock (ejection deadlines,
//! heartbeat ages) and wall-clock Unix milliseconds (for display only).

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

static START: OnceLock<Instant> = OnceLock::new();

/// Monotonic milliseconds since the first call in this process (never goes back).
pub(crate) fn now_ms() -> u64 {
    let start = *START.get_or_init(Instant::now);
    // Seconds and milliseconds apart: `as_millis` divides a u128, a
    // library call on a path taken a few times per request.
    let d = Instant::now().saturating_duration_since(start);
    d.as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(d.subsec_millis()))
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_ms_is_monotonic_and_moves() {
        let a = now_ms();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let b = now_ms();
        assert!(b >= a + 4, "a={a} b={b}");
    }

    #[test]
    fn unix_ms_is_after_2020() {
        assert!(unix_ms() > 1_577_836_800_000);
    }
}
