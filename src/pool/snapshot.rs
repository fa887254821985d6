//! The pool: an immutable snapshot of the backends, published by the registry
//! (`SharedPool`, a mutex off the hot path plus a generation counter) and
//! cached per worker (`LocalPool`, one atomic load per refresh check).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::clock;
use super::load_index::LazyIndex;
use super::load_tree::LoadTree;
use super::stats::BackendStats;

/// Where a backend came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Configured on the command line or in the config file; never expires.
    Static,
    /// Joined through the control channel; expires without heartbeats.
    Registered,
}

/// One backend as seen by a snapshot. Immutable; its counters are shared.
#[derive(Debug)]
pub struct Backend {
    /// Stable identity (static: the URL; registered: the id it sent).
    pub id: Arc<str>,
    /// Where the proxy connects.
    pub addr: SocketAddr,
    /// URLs, the first one is the primary, e.g. "http://127.0.0.1:9001".
    pub bindings: Vec<Arc<str>>,
    /// Relative weight, >= 1 (0 is treated as 1 by the pickers).
    pub weight: u32,
    /// Where the backend came from.
    pub source: Source,
    /// Counters shared across workers, snapshots and re-registrations.
    pub stats: Arc<BackendStats>,
    /// Wall-clock time it joined (for display).
    pub since_unix_ms: u64,
    /// Free-form metadata sent at registration.
    pub metadata: Option<serde_json::Value>,
    /// For a TLS backend (`https://`, `wss://`), the host its certificate
    /// must match (a DNS name, sent as SNI, or an IP address); `None`: plain.
    pub tls_name: Option<Arc<str>>,
}

impl Backend {
    /// A backend with fresh counters, one binding `http://addr`, joined now.
    pub fn new(id: &str, addr: SocketAddr, weight: u32, source: Source) -> Self {
        Backend {
            id: Arc::from(id),
            addr,
            bindings: vec![Arc::from(format!("http://{addr}").as_str())],
            weight: weight.max(1),
            source,
            stats: Arc::new(BackendStats::default()),
            since_unix_ms: clock::unix_ms(),
            metadata: None,
            tls_name: None,
        }
    }

    /// Not draining, not failing its health checks and not ejected at
    /// `now_ms` (monotonic, `clock::now_ms`).
    #[inline]
    pub fn is_available(&self, now_ms: u64) -> bool {
        !self.stats.draining.load(Ordering::Relaxed)
            && self.stats.health.load(Ordering::Relaxed) != super::stats::HEALTH_FAILING
            && self.stats.ejected_until_ms.load(Ordering::Relaxed) <= now_ms
    }

    /// Weight as the pickers use it (never 0).
    #[inline]
    pub fn effective_weight(&self) -> u32 {
        self.weight.max(1)
    }

    /// The primary binding URL (empty if there are none).
    pub fn primary_url(&self) -> &str {
        self.bindings.first().map_or("", |b| b)
    }

    #[cfg(test)]
    pub(crate) fn new_for_test(id: &str, weight: u32, source: Source) -> Self {
        let port = 9000 + (super::sticky::sticky_hash(id.as_bytes()) % 1000) as u16;
        Backend::new(id, SocketAddr::from(([127, 0, 0, 1], port)), weight, source)
    }
}

/// An immutable view of the pool at one generation.
#[derive(Debug, Default)]
pub struct PoolSnapshot {
    /// Bumped on every publication; a worker refreshes its copy when it moves.
    pub generation: u64,
    /// The members, in id order.
    pub backends: Vec<Arc<Backend>>,
    /// The fewest-connections index, built by the first pick that wants it.
    index: LazyIndex,
}

impl Drop for PoolSnapshot {
    fn drop(&mut self) {
        self.index.unlink(self.backends.iter().map(|b| &*b.stats));
    }
}

impl PoolSnapshot {
    /// Whether member `i` may be picked now: not in `exclude` and available.
    #[inline]
    pub(crate) fn eligible(&self, i: usize, now_ms: u64, exclude: &[usize]) -> bool {
        !exclude.contains(&i) && self.backends[i].is_available(now_ms)
    }

    /// The pool at `generation` with these members (its index is built
    /// later, by the first fewest-connections pick).
    pub fn new(generation: u64, backends: Vec<Arc<Backend>>) -> Self {
        PoolSnapshot {
            generation,
            backends,
            index: LazyIndex::default(),
        }
    }

    /// The fewest-connections index over the members, built now if this is
    /// the first call; `None` while another worker builds it or when the
    /// pool cannot be indexed (the pick scans instead).
    pub(crate) fn load_tree(&self) -> Option<&LoadTree> {
        self.index
            .get_or_build(|| build_index(self.generation, &self.backends))
    }

    /// Index of the backend with this id.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.backends.iter().position(|b| &*b.id == id)
    }

    /// How many backends are available at `now_ms`.
    pub fn available_count(&self, now_ms: u64) -> usize {
        self.backends
            .iter()
            .filter(|b| b.is_available(now_ms))
            .count()
    }
}

/// The published pool, shared by all workers.
#[derive(Debug)]
pub(crate) struct SharedPool {
    current: Mutex<Arc<PoolSnapshot>>,
    generation: AtomicU64,
}

impl Default for SharedPool {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedPool {
    /// An empty pool at generation 0.
    pub(crate) fn new() -> Self {
        SharedPool {
            current: Mutex::new(Arc::new(PoolSnapshot::default())),
            generation: AtomicU64::new(0),
        }
    }

    /// The generation of the latest published snapshot (Acquire load).
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The latest snapshot.
    pub(crate) fn load(&self) -> Arc<PoolSnapshot> {
        Arc::clone(&self.lock())
    }

    /// Replace the pool and bump the generation. The snapshot is stored before
    /// the generation moves, so whoever sees the new generation loads it.
    pub(crate) fn publish(&self, backends: Vec<Arc<Backend>>) -> u64 {
        let mut cur = self.lock();
        let generation = cur.generation + 1;
        *cur = Arc::new(PoolSnapshot::new(generation, backends));
        self.generation.store(generation, Ordering::Release);
        generation
    }

    fn lock(&self) -> MutexGuard<'_, Arc<PoolSnapshot>> {
        // A panic while holding the lock cannot leave the Arc half-written.
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A worker's cached view of the pool.
#[derive(Debug)]
pub(crate) struct LocalPool {
    shared: Arc<SharedPool>,
    snap: Arc<PoolSnapshot>,
}

impl LocalPool {
    pub(crate) fn new(shared: Arc<SharedPool>) -> Self {
        let snap = shared.load();
        LocalPool { shared, snap }
    }

    /// The current snapshot, reloaded first if the generation moved (one
    /// atomic load when it did not).
    #[inline]
    pub(crate) fn current(&mut self) -> &Arc<PoolSnapshot> {
        if self.shared.generation() != self.snap.generation {
            self.snap = self.shared.load();
        }
        &self.snap
    }
}

/// A tree over `backends`, each linked to its leaf and the tree settled.
fn build_index(generation: u64, backends: &[Arc<Backend>]) -> Option<Arc<LoadTree>> {
    let weights: Vec<u32> = backends.iter().map(|b| b.effective_weight()).collect();
    let tree = Arc::new(LoadTree::new(generation, &weights)?);
    for (leaf, b) in backends.iter().enumerate() {
        b.stats.link_to(&tree, leaf);
    }
    tree.settle_all();
    Some(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(id: &str) -> Arc<Backend> {
        Arc::new(Backend::new_for_test(id, 1, Source::Static))
    }

    #[test]
    fn publish_bumps_generation_and_local_refreshes() {
        let shared = Arc::new(SharedPool::new());
        assert_eq!(shared.generation(), 0);
        let mut local = LocalPool::new(Arc::clone(&shared));
        assert!(local.current().backends.is_empty());

        assert_eq!(shared.publish(vec![b("a")]), 1);
        assert_eq!(shared.generation(), 1);
        let snap = Arc::clone(local.current());
        assert_eq!(snap.generation, 1);
        assert_eq!(snap.backends.len(), 1);

        // No change: the same Arc comes back.
        assert!(Arc::ptr_eq(&snap, local.current()));

        shared.publish(vec![b("a"), b("c")]);
        assert_eq!(local.current().generation, 2);
        assert_eq!(local.current().backends.len(), 2);
        assert_eq!(local.current().position("c"), Some(1));
    }

    #[test]
    fn availability_follows_draining_and_ejection() {
        let x = b("x");
        assert!(x.is_available(0));
        x.stats.extend_ejection(100);
        assert!(!x.is_available(99));
        assert!(x.is_available(100));
        x.stats.set_draining(true);
        assert!(!x.is_available(1000));
    }

    #[test]
    fn refresh_seen_from_another_thread() {
        let shared = Arc::new(SharedPool::new());
        let s2 = Arc::clone(&shared);
        std::thread::spawn(move || {
            s2.publish(vec![b("a"), b("b")]);
        })
        .join()
        .expect("publisher");
        let mut local = LocalPool::new(shared);
        assert_eq!(local.current().backends.len(), 2);
    }
}
