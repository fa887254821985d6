//! Pick algorithms (random, smooth weighted round-robin, power of two choices,
//! fewest connections), all weighted, over one pool snapshot. A `Picker` lives
//! on one worker: its rng and round-robin state are worker-local, picks do not
//! allocate and read each candidate's counters with plain atomic loads
//! (fewest connections reads the snapshot's load index instead, `fewest`).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::str::FromStr;

use super::snapshot::PoolSnapshot;

/// How to choose a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// Uniformly random among the available backends (weighted).
    Random,
    /// Smooth weighted round-robin over the available backends.
    RoundRobin,
    /// Power of two choices: the less loaded of two weighted random picks.
    P2c,
    /// The backend with the fewest active connections (weighted).
    FewestConnections,
}

/// An algorithm name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown balancing algorithm {0:?} (expected random, round-robin, p2c or fewest-connections)"
)]
pub struct AlgorithmParseError(pub String);

impl FromStr for Algorithm {
    type Err = AlgorithmParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "random" => Ok(Algorithm::Random),
            "round-robin" => Ok(Algorithm::RoundRobin),
            "p2c" => Ok(Algorithm::P2c),
            "fewest-connections" => Ok(Algorithm::FewestConnections),
            _ => Err(AlgorithmParseError(s.to_string())),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algorithm::Random => "random",
            Algorithm::RoundRobin => "round-robin",
            Algorithm::P2c => "p2c",
            Algorithm::FewestConnections => "fewest-connections",
        })
    }
}

/// Random draws tried before falling back to an exact pass over the pool.
const FAST_TRIES: usize = 4;

/// Facts about one snapshot, rebuilt (allocating) only when it changes.
#[derive(Default)]
struct Cache {
    key: (u64, usize, usize),
    /// All weights equal: random draws need no search, round-robin no state.
    uniform: bool,
    /// cumulative[i] = sum of weights 0..=i.
    cumulative: Vec<u64>,
    /// Smooth weighted round-robin current weights.
    current: Vec<i64>,
    /// Next index for the uniform round-robin.
    next: usize,
}

/// Picks backends for one worker.
pub struct Picker {
    algorithm: Cell<Algorithm>,
    rng: RefCell<fastrand::Rng>,
    cache: RefCell<Cache>,
}

impl fmt::Debug for Picker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Picker")
            .field("algorithm", &self.algorithm.get())
            .finish_non_exhaustive()
    }
}

impl Picker {
    /// A picker for `algorithm`; `seed` starts its random sequence.
    pub fn new(algorithm: Algorithm, seed: u64) -> Self {
        Picker {
            algorithm: Cell::new(algorithm),
            rng: RefCell::new(fastrand::Rng::with_seed(seed)),
            cache: RefCell::new(Cache {
                key: (u64::MAX, usize::MAX, 0),
                ..Cache::default()
            }),
        }
    }

    /// The algorithm this picker runs.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm.get()
    }

    /// Runs `algorithm` from the next pick on (a reload changed it); the
    /// per-snapshot state starts afresh.
    pub fn set_algorithm(&self, algorithm: Algorithm) {
        if self.algorithm.replace(algorithm) != algorithm {
            self.cache.borrow_mut().key = (u64::MAX, usize::MAX, 0);
        }
    }

    /// Index into `snap.backends` of the chosen backend among those available
    /// at `now_ms` whose index is not in `exclude` (retries pass what they
    /// tried). `None` when none is available.
    pub fn pick(&self, snap: &PoolSnapshot, now_ms: u64, exclude: &[usize]) -> Option<usize> {
        if snap.backends.is_empty() {
            return None;
        }
        self.refresh(snap);
        match self.algorithm.get() {
            Algorithm::Random => self.weighted_random(snap, now_ms, exclude, None),
            Algorithm::RoundRobin => self.round_robin(snap, now_ms, exclude),
            Algorithm::P2c => self.p2c(snap, now_ms, exclude),
            Algorithm::FewestConnections => {
                super::fewest::pick(snap, now_ms, exclude, &mut self.rng.borrow_mut())
            }
        }
    }

    /// Rebuild the per-snapshot cache when the snapshot changed.
    fn refresh(&self, snap: &PoolSnapshot) {
        let key = (
            snap.generation,
            snap.backends.len(),
            snap.backends.as_ptr() as usize,
        );
        let mut c = self.cache.borrow_mut();
        if c.key == key {
            return;
        }
        c.key = key;
        let first = snap.backends[0].effective_weight();
        c.uniform = snap.backends.iter().all(|b| b.effective_weight() == first);
        c.cumulative.clear();
        let mut sum = 0u64;
        for b in &snap.backends {
            sum += u64::from(b.effective_weight());
            c.cumulative.push(sum);
        }
        c.current.clear();
        c.current.resize(snap.backends.len(), 0);
        c.next = self.rng.borrow_mut().usize(..snap.backends.len());
    }

    /// Weighted random among eligible backends other than `skip`. Exact:
    /// a few rejection draws over the whole pool, then one weighted pass.
    fn weighted_random(
        &self,
        snap: &PoolSnapshot,
        now_ms: u64,
        exclude: &[usize],
        skip: Option<usize>,
    ) -> Option<usize> {
        let n = snap.backends.len();
        let mut rng = self.rng.borrow_mut();
        {
            let c = self.cache.borrow();
            let total = c.cumulative.last().copied().unwrap_or(0);
            for _ in 0..FAST_TRIES {
                let i = if c.uniform {
                    rng.usize(..n)
                } else {
                    let r = rng.u64(..total);
                    c.cumulative.partition_point(|&s| s <= r)
                };
                if Some(i) != skip && i < n && snap.eligible(i, now_ms, exclude) {
                    return Some(i);
                }
            }
        }
        // Many backends are out: one exact pass over the eligible ones.
        let ok = |i: usize| Some(i) != skip && snap.eligible(i, now_ms, exclude);
        let total: u64 = (0..n)
            .filter(|&i| ok(i))
            .map(|i| u64::from(snap.backends[i].effective_weight()))
            .sum();
        if total == 0 {
            return None;
        }
        let mut r = rng.u64(..total);
        for i in (0..n).filter(|&i| ok(i)) {
            let w = u64::from(snap.backends[i].effective_weight());
            if r < w {
                return Some(i);
            }
            r -= w;
        }
        None
    }

    /// Smooth weighted round-robin (nginx): each eligible backend gains its
    /// weight, the highest wins and pays back the total. Equal weights take a
    /// rotating index instead (same order, O(1) when all are up).
    fn round_robin(&self, snap: &PoolSnapshot, now_ms: u64, exclude: &[usize]) -> Option<usize> {
        let n = snap.backends.len();
        let mut c = self.cache.borrow_mut();
        if c.uniform {
            let start = c.next;
            for k in 0..n {
                let i = (start + k) % n;
                if snap.eligible(i, now_ms, exclude) {
                    c.next = (i + 1) % n;
                    return Some(i);
                }
            }
            return None;
        }
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for i in 0..n {
            if !snap.eligible(i, now_ms, exclude) {
                continue;
            }
            let w = i64::from(snap.backends[i].effective_weight());
            c.current[i] += w;
            total += w;
            if best.is_none_or(|b| c.current[i] > c.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        c.current[b] -= total;
        Some(b)
    }

    /// Power of two choices: two distinct weighted-random candidates, keep the
    /// one with the lower load per weight.
    fn p2c(&self, snap: &PoolSnapshot, now_ms: u64, exclude: &[usize]) -> Option<usize> {
        let a = self.weighted_random(snap, now_ms, exclude, None)?;
        let Some(b) = self.weighted_random(snap, now_ms, exclude, Some(a)) else {
            return Some(a);
        };
        let (ba, bb) = (&snap.backends[a], &snap.backends[b]);
        let la = u64::from(ba.stats.load()) * u64::from(bb.effective_weight());
        let lb = u64::from(bb.stats.load()) * u64::from(ba.effective_weight());
        Some(if lb < la { b } else { a })
    }
}

#[cfg(test)]
#[path = "algorithm_tests.rs"]
mod tests;
