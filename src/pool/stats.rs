//! Per-backend counters shared by every worker: plain atomics on their own
//! cache line, keyed by backend id, surviving re-registration and rebuilds.
//! Every change that moves a pick (load, drain, health, ejection) goes
//! through a method here that also updates the fewest-connections index.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::load_tree::LoadTree;

/// [`BackendStats::health`]: the active checks pass.
pub const HEALTH_PASSING: u8 = 1;
/// [`BackendStats::health`]: the active checks fail; not picked.
pub const HEALTH_FAILING: u8 = 2;
use std::sync::Arc;

/// Counters for one backend. One cache line, so a pick reads one line per
/// candidate (the `active` and `reported_load` loads hit the same line).
/// Read the fields freely; change them through the methods, which keep the
/// fewest-connections index current.
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
    /// The fewest-connections index these counters keep current, if one is
    /// built; the lock also serialises the writes of our leaf.
    link: Mutex<Option<Link>>,
    /// `link` holds an index: updates without one skip the lock.
    linked: AtomicBool,
}

/// Our leaf in a fewest-connections index.
#[derive(Debug)]
struct Link {
    tree: Arc<LoadTree>,
    leaf: usize,
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
        self.active.fetch_add(1, Ordering::SeqCst);
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        self.reindex();
        ActiveGuard {
            stats: Arc::clone(self),
        }
    }

    /// Start (true) or stop draining; the state before.
    pub fn set_draining(&self, draining: bool) -> bool {
        let before = self.draining.swap(draining, Ordering::SeqCst);
        if before != draining {
            self.reindex();
        }
        before
    }

    /// Store the active health checks' verdict (0, `HEALTH_PASSING` or
    /// `HEALTH_FAILING`).
    pub fn set_health(&self, health: u8) {
        if self.health.swap(health, Ordering::SeqCst) != health {
            self.reindex();
        }
    }

    /// Keep the backend out until at least `until_ms` (monotonic
    /// `clock::now_ms`); the deadline before (an earlier one is extended,
    /// a later one kept).
    pub fn extend_ejection(&self, until_ms: u64) -> u64 {
        let before = self.ejected_until_ms.fetch_max(until_ms, Ordering::SeqCst);
        if until_ms > before {
            self.reindex();
        }
        before
    }

    /// Store the load the backend reported from elsewhere.
    pub fn set_reported_load(&self, load: u32) {
        if self.reported_load.swap(load, Ordering::SeqCst) != load {
            self.reindex();
        }
    }

    /// Points our updates at `leaf` of `tree` and stores our key there
    /// (without settling the tree: the builder does). A tree built for an
    /// older generation than the one we feed is superseded instead, as is
    /// one that holds these counters twice.
    pub(crate) fn link_to(&self, tree: &Arc<LoadTree>, leaf: usize) {
        let mut link = self.lock_link();
        if let Some(old) = link.as_ref() {
            if Arc::ptr_eq(&old.tree, tree) || old.tree.generation() > tree.generation() {
                tree.supersede();
                return;
            }
            old.tree.supersede();
        }
        *link = Some(Link {
            tree: Arc::clone(tree),
            leaf,
        });
        // Linked before the key is read: a change that missed the flag
        // (and skipped the lock) happened before, so the key counts it.
        self.linked.store(true, Ordering::SeqCst);
        tree.store_leaf(leaf, self.key_in(tree, leaf));
    }

    /// Stops feeding `tree` if we still do (its snapshot is gone).
    pub(crate) fn unlink_from(&self, tree: &LoadTree) {
        let mut link = self.lock_link();
        if link.as_ref().is_some_and(|l| std::ptr::eq(&*l.tree, tree)) {
            *link = None;
            self.linked.store(false, Ordering::SeqCst);
        }
    }

    /// Recomputes our leaf in the index we feed (after any change).
    pub(crate) fn reindex(&self) {
        // SeqCst with the changes before it and with `link_to`'s store: of
        // a change and a link racing, one sees the other.
        if !self.linked.load(Ordering::SeqCst) {
            return;
        }
        let link = self.lock_link();
        if let Some(Link { tree, leaf }) = link.as_ref() {
            tree.set_leaf(*leaf, self.key_in(tree, *leaf));
        }
    }

    /// Our key in `tree`: unavailable while draining, failing or ejected by
    /// the tree's clock (an ejection is noted so it can end on time).
    fn key_in(&self, tree: &LoadTree, leaf: usize) -> u64 {
        let until = self.ejected_until_ms.load(Ordering::SeqCst);
        let ejected = until > tree.clock_ms();
        if ejected {
            tree.note_ejection(until);
        }
        let available = !ejected
            && !self.draining.load(Ordering::SeqCst)
            && self.health.load(Ordering::SeqCst) != HEALTH_FAILING;
        let load = self
            .active
            .load(Ordering::SeqCst)
            .saturating_add(self.reported_load.load(Ordering::SeqCst));
        tree.key(leaf, load, available)
    }

    fn lock_link(&self) -> MutexGuard<'_, Option<Link>> {
        // Nothing panics while holding it; a poisoned link is still whole.
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Test helper: set `active` directly (as if that many were open).
    #[cfg(test)]
    pub(crate) fn set_active(&self, active: u32) {
        self.active.store(active, Ordering::SeqCst);
        self.reindex();
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
        self.stats.active.fetch_sub(1, Ordering::SeqCst);
        self.stats.reindex();
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
        s.set_active(3);
        s.set_reported_load(4);
        assert_eq!(s.load(), 7);
        s.set_reported_load(u32::MAX);
        assert_eq!(s.load(), u32::MAX);
    }

    #[test]
    fn concurrent_begin_drop_returns_to_zero_while_picking() {
        use crate::pool::{Algorithm, Backend, Picker, PoolSnapshot, Source};
        use std::sync::atomic::AtomicBool;
        let backends: Vec<Arc<Backend>> = (0..3)
            .map(|i| Arc::new(Backend::new_for_test(&format!("b{i}"), 1, Source::Static)))
            .collect();
        let snap = Arc::new(PoolSnapshot::new(1, backends));
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
