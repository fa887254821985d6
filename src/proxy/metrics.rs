//! Worker-local metrics: each worker writes only its own counters and
//! histograms (a plain load and store, no read-modify-write shared with
//! another core), each worker's block on cache lines of its own; the admin
//! API adds the workers up when it is scraped (`admin/metrics.rs`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::pool::{Backend, BackendStats};
use crate::rt::access_log::AccessLog;

/// A counter one worker writes and anyone reads.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    /// Adds `n` (only the owning worker calls this: no lock prefix).
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Sets the value (single writer).
    #[inline]
    pub(crate) fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// The value now.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds of the latency buckets, in microseconds (0.5 ms to 10 s);
/// one more bucket counts everything above.
pub(crate) const BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// A latency histogram: a count per bucket (not cumulative) and the sum.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [Counter; BUCKETS_US.len() + 1],
    sum_us: Counter,
}

impl Histogram {
    /// Records one duration of `us` microseconds.
    #[inline]
    pub(crate) fn record(&self, us: u64) {
        let i = BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(BUCKETS_US.len());
        self.buckets[i].add(1);
        self.sum_us.add(us);
    }

    /// Adds this histogram's counts into `buckets` and `sum_us`.
    pub(crate) fn add_to(&self, buckets: &mut [u64; BUCKETS_US.len() + 1], sum_us: &mut u64) {
        for (into, c) in buckets.iter_mut().zip(&self.buckets) {
            *into += c.get();
        }
        *sum_us += self.sum_us.get();
    }
}

/// Why an upgrade was refused before any session existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Origin,
    Version,
    Malformed,
    Hook,
    NoBackend,
    BackendFailed,
    BackendTimeout,
}

impl Refusal {
    /// Every reason, in the order of [`WorkerMetrics::refusals`].
    pub(crate) const ALL: [Refusal; 7] = [
        Refusal::Origin,
        Refusal::Version,
        Refusal::Malformed,
        Refusal::Hook,
        Refusal::NoBackend,
        Refusal::BackendFailed,
        Refusal::BackendTimeout,
    ];

    /// What the `handshake_refused` event says (a hook gives its own).
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::Origin => "origin not allowed",
            Refusal::Version => "unsupported WebSocket version",
            Refusal::Malformed => "malformed upgrade request",
            Refusal::Hook => "refused by a hook",
            Refusal::NoBackend => "no backend available",
            Refusal::BackendFailed => "backend failed",
            Refusal::BackendTimeout => "backend timed out",
        }
    }

    /// Its label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Refusal::Origin => "origin",
            Refusal::Version => "version",
            Refusal::Malformed => "malformed",
            Refusal::Hook => "hook",
            Refusal::NoBackend => "no_backend",
            Refusal::BackendFailed => "backend_failed",
            Refusal::BackendTimeout => "backend_timeout",
        }
    }
}

/// Close codes counted one by one (1000 to 1015); the rest by range.
pub(crate) const CLOSE_LABELS: [&str; 19] = [
    "1000", "1001", "1002", "1003", "1004", "1005", "1006", "1007", "1008", "1009", "1010", "1011",
    "1012", "1013", "1014", "1015", "3xxx", "4xxx", "other",
];

/// Where close code `code` is counted in [`CLOSE_LABELS`].
pub(crate) fn close_slot(code: u16) -> usize {
    match code {
        1000..=1015 => usize::from(code - 1000),
        3000..=3999 => 16,
        4000..=4999 => 17,
        _ => 18,
    }
}

/// Status classes, by `status / 100 - 1`.
pub(crate) const CLASS_LABELS: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The class slot of `status` (anything out of range counts as 5xx).
pub(crate) fn class_slot(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100 - 1),
        _ => 4,
    }
}

/// One worker's series for one backend (or for no backend: id `-`).
#[repr(align(64))]
#[derive(Debug)]
pub(crate) struct BackendSeries {
    pub id: Arc<str>,
    /// The id escaped for text and for JSON access log lines.
    pub id_text: Box<[u8]>,
    pub id_json: Box<[u8]>,
    /// Requests answered, by status class.
    pub requests: [Counter; 5],
    /// Time from the request's start to the backend's response head.
    pub latency: Histogram,
    /// Moving average of that time (microseconds; 0: none yet).
    pub ewma_us: Counter,
}

impl BackendSeries {
    fn new(id: Arc<str>) -> Self {
        let (mut text, mut json) = (Vec::new(), Vec::new());
        crate::rt::log_line::escape_text(&mut text, id.as_bytes());
        crate::rt::log_line::escape_json(&mut json, id.as_bytes());
        BackendSeries {
            id,
            id_text: text.into(),
            id_json: json.into(),
            requests: Default::default(),
            latency: Histogram::default(),
            ewma_us: Counter::default(),
        }
    }

    /// Records one backend time: histogram and moving average (1/8 weight).
    #[inline]
    pub(crate) fn record_latency(&self, us: u64) {
        self.latency.record(us);
        let old = self.ewma_us.get();
        let new = if old == 0 {
            us.max(1)
        } else {
            (old * 7 + us) / 8
        };
        self.ewma_us.set(new.max(1));
    }
}

/// Everything one worker counts (besides its per-backend series).
#[repr(align(64))]
#[derive(Debug, Default)]
pub(crate) struct WorkerMetrics {
    /// Whole request time (head read to last byte answered).
    pub request_duration: Histogram,
    pub ws_opened: Counter,
    /// Sessions ended, by [`close_slot`].
    pub ws_closed: [Counter; CLOSE_LABELS.len()],
    /// Data messages from clients and toward them.
    pub ws_messages: [Counter; 2],
    /// Bytes from clients and from backends, after the upgrade.
    pub ws_bytes: [Counter; 2],
    /// Upgrades refused, by [`Refusal::ALL`] order.
    pub refusals: [Counter; Refusal::ALL.len()],
    pub tls_handshakes: Counter,
    /// TLS handshakes failed: errors and timeouts.
    pub tls_failures: [Counter; 2],
    /// Requests sent again (to another backend or a fresh connection).
    pub retries: Counter,
    /// Backends this worker ejected after failures.
    pub ejections: Counter,
    /// Times accepting paused because --max-connections were open.
    pub max_connections_waits: Counter,
    /// The per-backend series, read by the scrape.
    pub backends: Mutex<Vec<Arc<BackendSeries>>>,
}

/// What the workers' metrics and the access log share with the admin API.
pub(crate) struct Telemetry {
    /// One block per worker, by worker index.
    pub workers: Vec<Arc<WorkerMetrics>>,
    pub access_log: Arc<AccessLog>,
}

impl Telemetry {
    /// Blocks for `workers` workers in front of `access_log`.
    pub(crate) fn new(workers: usize, access_log: Arc<AccessLog>) -> Self {
        Telemetry {
            workers: (0..workers).map(|_| Arc::default()).collect(),
            access_log,
        }
    }
}

/// Hashes a pointer (the key is already unique; spread its bits).
#[derive(Default)]
pub(crate) struct PtrHasher(u64);

impl Hasher for PtrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type SeriesCache =
    HashMap<usize, (Arc<BackendStats>, Arc<BackendSeries>), BuildHasherDefault<PtrHasher>>;

/// A worker's recording side: its block, and its series per backend found
/// by the address of the backend's counters (which survive snapshots and
/// re-registrations, and which the entry keeps alive).
pub(crate) struct LocalMetrics {
    pub shared: Arc<WorkerMetrics>,
    cache: RefCell<SeriesCache>,
    none: Arc<BackendSeries>,
}

impl LocalMetrics {
    /// The recording side of `shared`.
    pub(crate) fn new(shared: Arc<WorkerMetrics>) -> Self {
        let none = Arc::new(BackendSeries::new(Arc::from("-")));
        if let Ok(mut list) = shared.backends.lock() {
            list.push(none.clone());
        }
        LocalMetrics {
            shared,
            cache: RefCell::default(),
            none,
        }
    }

    /// Runs `f` on the series of `backend` (of no backend for `None`).
    #[inline]
    pub(crate) fn with_series<T>(
        &self,
        backend: Option<&Backend>,
        f: impl FnOnce(&BackendSeries) -> T,
    ) -> T {
        let Some(b) = backend else {
            return f(&self.none);
        };
        let key = Arc::as_ptr(&b.stats) as usize;
        if let Some((_, s)) = self.cache.borrow().get(&key) {
            return f(s);
        }
        let series = Arc::new(BackendSeries::new(b.id.clone()));
        if let Ok(mut list) = self.shared.backends.lock() {
            list.push(series.clone());
        }
        self.cache
            .borrow_mut()
            .insert(key, (b.stats.clone(), series.clone()));
        f(&series)
    }

    /// Forgets the series of backends not in `live` (their counters go
    /// from the scrape too).
    pub(crate) fn retain(&self, live: &[Arc<Backend>]) {
        let mut cache = self.cache.borrow_mut();
        let before = cache.len();
        cache.retain(|_, (stats, _)| live.iter().any(|b| Arc::ptr_eq(&b.stats, stats)));
        if cache.len() == before {
            return;
        }
        if let Ok(mut list) = self.shared.backends.lock() {
            list.retain(|s| {
                Arc::ptr_eq(s, &self.none) || cache.values().any(|(_, c)| Arc::ptr_eq(c, s))
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_take_their_upper_bound_and_the_rest_overflows() {
        let h = Histogram::default();
        for us in [0, 500, 501, 10_000_000, 10_000_001] {
            h.record(us);
        }
        let mut b = [0; BUCKETS_US.len() + 1];
        let mut sum = 0;
        h.add_to(&mut b, &mut sum);
        assert_eq!(b[0], 2);
        assert_eq!(b[1], 1);
        assert_eq!(b[BUCKETS_US.len() - 1], 1);
        assert_eq!(b[BUCKETS_US.len()], 1);
        assert_eq!(sum, 20_001_002);
    }

    #[test]
    fn close_codes_and_classes_land_in_their_slots() {
        assert_eq!(CLOSE_LABELS[close_slot(1000)], "1000");
        assert_eq!(CLOSE_LABELS[close_slot(1015)], "1015");
        assert_eq!(CLOSE_LABELS[close_slot(4001)], "4xxx");
        assert_eq!(CLOSE_LABELS[close_slot(3000)], "3xxx");
        assert_eq!(CLOSE_LABELS[close_slot(2000)], "other");
        assert_eq!(CLASS_LABELS[class_slot(204)], "2xx");
        assert_eq!(CLASS_LABELS[class_slot(499)], "4xx");
        assert_eq!(CLASS_LABELS[class_slot(0)], "5xx");
    }

    #[test]
    fn a_backend_keeps_its_series_until_it_leaves() {
        let local = LocalMetrics::new(Arc::default());
        let a = Arc::new(Backend::new(
            "a",
            "127.0.0.1:1".parse().unwrap(),
            1,
            crate::pool::Source::Static,
        ));
        let b = Arc::new(Backend::new(
            "b",
            "127.0.0.1:2".parse().unwrap(),
            1,
            crate::pool::Source::Static,
        ));
        local.with_series(Some(&a), |s| s.requests[1].add(1));
        local.with_series(Some(&a), |s| s.requests[1].add(1));
        local.with_series(Some(&b), |s| s.record_latency(800));
        local.with_series(None, |s| s.requests[3].add(1));
        let ids = |l: &LocalMetrics| {
            let list = l.shared.backends.lock().unwrap();
            list.iter().map(|s| s.id.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(ids(&local), ["-", "a", "b"]);
        local.with_series(Some(&a), |s| assert_eq!(s.requests[1].get(), 2));
        local.retain(std::slice::from_ref(&a));
        assert_eq!(ids(&local), ["-", "a"]);
    }
}
