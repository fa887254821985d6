//! Per-backend counters shared by every worker: plain atomics on their own
//! cache line, keyed by backend id, surviving re-registration and rebuilds.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// [`BackendStats::health`]: the active checks pass.
pub const HEALTH_PASSING: u8 = 1;
/// [`BackendStats::health`]: the active checks fail; not picked.
pub const HEALTH_FAILING: u8 = 2;
use std::sync::Arc;

/// Counters for one backend. One cache line, so a pick reads one line per
/// candidate (the `active` and `reported_load` loads hit the same line).
#[repr(align(64))]
#[derive(Debug, Default)]
pub struct BackendStats {
    /// HTTP requests in flight plus open WebSocket sessions through this balancer (all workers).
    pub active: AtomicU32,
    /// Connections the backend reported in its heartbeat that did not come through us.
    pub reported_load: AtomicU32,
    /// Requests (and WebSocket sessions) started, ever.
    pub requests_total: AtomicU64,
    /// Failures recorded by passive health, ever.
    pub failures_total: AtomicU64,
    /// Failures since the last success.
    pub consecutive_failures: AtomicU32,
    /// Monotonic `clock::now_ms` until which the backend is ejected (0 = never ejected).
    pub ejected_until_ms: AtomicU64,
    /// The backend asked to stop receiving new connections.
    pub draining: AtomicBool,
    /// Active health checks' verdict: 0 unchecked, or `HEALTH_PASSING`,
    /// `HEALTH_FAILING` (only failing keeps the backend out of picks).
    pub health: AtomicU8,
}

impl BackendStats {
    /// Load used by p2c and fewest-connections: our active count plus what the
    /// backend reported from elsewhere (saturating).
    #[inline]
    pub fn load(&self) -> u32 {
        self.active
            .load(Ordering::Relaxed)
            .saturating_add(self.reported_load.load(Ordering::Relaxed))
    }

    /// Count one request or session as started; the guard gives it back on drop.
    #[inline]
    pub fn begin(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        ActiveGuard {
            stats: Arc::clone(self),
        }
    }
}

/// Decrements `active` exactly once on drop: every ending path (errors,
/// timeouts, panics unwinding) gives the count back.
#[derive(Debug)]
#[must_use = "dropping the guard immediately ends the request count"]
pub struct ActiveGuard {
    stats: Arc<BackendStats>,
}

impl ActiveGuard {
    /// The counters this guard holds a count on.
    pub fn stats(&self) -> &Arc<BackendStats> {
        &self.stats
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        // Exactly one increment per guard, so this never underflows.
        self.stats.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn one_cache_line() {
        assert_eq!(std::mem::align_of::<BackendStats>(), 64);
        assert_eq!(std::mem::size_of::<BackendStats>(), 64);
    }

    #[test]
    fn guard_counts_and_gives_back() {
        let s = Arc::new(BackendStats::default());
        let g1 = s.begin();
        let g2 = s.begin();
        assert_eq!(s.active.load(Relaxed), 2);
        assert_eq!(s.requests_total.load(Relaxed), 2);
        drop(g1);
        assert_eq!(s.active.load(Relaxed), 1);
        drop(g2);
        assert_eq!(s.active.load(Relaxed), 0);
        assert_eq!(s.requests_total.load(Relaxed), 2);
    }

    #[test]
    fn guard_released_on_panic_unwind() {
        let s = Arc::new(BackendStats::default());
        let s2 = Arc::clone(&s);
        let r = std::panic::catch_unwind(move || {
            let _g = s2.begin();
            panic!("boom");
        });
        assert!(r.is_err());
        assert_eq!(s.active.load(Relaxed), 0);
    }

    #[test]
    fn load_adds_reported_and_saturates() {
        let s = BackendStats::default();
        s.active.store(3, Relaxed);
        s.reported_load.store(4, Relaxed);
        assert_eq!(s.load(), 7);
        s.reported_load.store(u32::MAX, Relaxed);
        assert_eq!(s.load(), u32::MAX);
    }

    #[test]
    fn concurrent_begin_drop_returns_to_zero_while_picking() {
        use crate::pool::{Algorithm, Backend, Picker, PoolSnapshot, Source};
        use std::sync::atomic::AtomicBool;
        let backends: Vec<Arc<Backend>> = (0..3)
            .map(|i| Arc::new(Backend::new_for_test(&format!("b{i}"), 1, Source::Static)))
            .collect();
        let snap = Arc::new(PoolSnapshot {
            generation: 1,
            backends,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for t in 0..2u64 {
            let snap = Arc::clone(&snap);
            workers.push(std::thread::spawn(move || {
                let picker = Picker::new(Algorithm::FewestConnections, t);
                let mut held = Vec::new();
                for n in 0..20_000u32 {
                    if let Some(i) = picker.pick(&snap, 0, &[]) {
                        held.push(snap.backends[i].stats.begin());
                    }
                    if n % 3 == 0 {
                        held.clear();
                    }
                }
            }));
        }
        let picker_snap = Arc::clone(&snap);
        let stop2 = Arc::clone(&stop);
        let reader = std::thread::spawn(move || {
            let picker = Picker::new(Algorithm::P2c, 99);
            let mut picks = 0u64;
            while !stop2.load(Relaxed) {
                if picker.pick(&picker_snap, 0, &[]).is_some() {
                    picks += 1;
                }
            }
            picks
        });
        for w in workers {
            w.join().expect("worker thread");
        }
        stop.store(true, Relaxed);
        assert!(reader.join().expect("reader thread") > 0);
        for b in &snap.backends {
            assert_eq!(b.stats.active.load(Relaxed), 0, "{}", b.id);
        }
        let total: u64 = snap
            .backends
            .iter()
            .map(|b| b.stats.requests_total.load(Relaxed))
            .sum();
        assert_eq!(total, 40_000);
    }
}
