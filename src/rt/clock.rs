//! A monotonic nanosecond clock for request timings: one `clock_gettime`
//! (vDSO) per read, and plain integer subtraction after it (cheaper than
//! `Instant` arithmetic on a path taken once per request).

/// Monotonic nanoseconds since an arbitrary start (the boot, on Linux).
#[inline]
pub(crate) fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which lives for
    // the call; CLOCK_MONOTONIC is always available on Linux.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// Microseconds from `from` to `to` (0 if `to` is earlier).
#[inline]
pub(crate) fn micros_between(from: u64, to: u64) -> u64 {
    to.saturating_sub(from) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_forward_in_step_with_instant() {
        let (a, i) = (now_ns(), std::time::Instant::now());
        std::thread::sleep(std::time::Duration::from_millis(5));
        let (b, j) = (now_ns(), std::time::Instant::now());
        let ours = micros_between(a, b);
        let std = j.duration_since(i).as_micros() as u64;
        assert!(
            ours >= 4_000 && ours.abs_diff(std) < 1_000,
            "{ours} vs {std}"
        );
        assert_eq!(micros_between(b, a), 0);
    }
}
