//! The fewest-connections index: a tournament tree (fan-out 8, one cache line
//! per node's children) over the backends' weighted loads, shared by every
//! worker. Each slot packs (key, tie count) in one `AtomicU64`: a leaf holds
//! its backend's key, a node the least key among its children and how many
//! leaves below share it. A pick reads one line per level; an update rewrites
//! its leaf and re-settles ancestors while they change.
//!
//! Concurrent updates settle by recomputation: whoever stores a node value
//! re-reads the children and stores again until the node agrees with them,
//! and whoever changes a node settles its parent. With every access SeqCst,
//! at quiescence each node equals the combination of its children, so the
//! tree is exact; while counters move a pick may see a stale path, which the
//! caller catches by checking the chosen backend against its live counters.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Children per node: eight `u64` fill one cache line.
const FANOUT: usize = 8;
/// Low bits of a slot that count tied leaves.
const COUNT_BITS: u32 = 20;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// Most leaves one tree indexes (every tie count must fit in `COUNT_BITS`).
pub(crate) const MAX_LEAVES: usize = COUNT_MASK as usize;
/// Key of a backend that must not be picked (draining, ejected, failing).
pub(crate) const KEY_UNAVAILABLE: u64 = (1 << (64 - COUNT_BITS)) - 1;
/// Key of a backend whose load is too large for an exact key (picks that
/// meet it fall back to the exact scan).
pub(crate) const KEY_SATURATED: u64 = KEY_UNAVAILABLE - 1;
/// Largest weight with exact keys: the key shift is at most 24 bits.
pub(crate) const MAX_WEIGHT: u32 = 4096;
/// An empty slot past the last leaf: never the minimum, counts no leaf.
const PADDING: u64 = KEY_UNAVAILABLE << COUNT_BITS;

/// The children of one node (or eight leaves), on one cache line.
#[repr(align(64))]
struct Line([AtomicU64; FANOUT]);

impl Line {
    fn padding() -> Self {
        Line(std::array::from_fn(|_| AtomicU64::new(PADDING)))
    }

    /// The eight slots (spelt out: a closure per slot does not inline).
    #[inline(always)]
    fn values(&self) -> [u64; FANOUT] {
        let s = &self.0;
        let load = |i: usize| s[i].load(Ordering::SeqCst);
        [
            load(0),
            load(1),
            load(2),
            load(3),
            load(4),
            load(5),
            load(6),
            load(7),
        ]
    }
}

/// (least key, leaves at that key) of a line of slots, packed like a slot.
/// Branch-free: the slots' order says nothing a predictor could learn.
#[inline]
fn combine(values: &[u64; FANOUT]) -> u64 {
    let least = values
        .iter()
        .fold(u64::MAX, |least, &v| least.min(v >> COUNT_BITS));
    let ties: u64 = values
        .iter()
        .map(|&v| {
            if v >> COUNT_BITS == least {
                v & COUNT_MASK
            } else {
                0
            }
        })
        .sum();
    (least << COUNT_BITS) | ties.min(COUNT_MASK)
}

/// The key part of a slot value.
#[inline]
pub(crate) fn key_of_slot(slot: u64) -> u64 {
    slot >> COUNT_BITS
}

/// The tree over one snapshot's backends (leaf `i` is `backends[i]`).
pub(crate) struct LoadTree {
    /// The snapshot generation it was built for (a newer build takes over).
    generation: u64,
    /// Another tree took over some of our backends' updates: picks scan.
    superseded: AtomicBool,
    /// Ejections ending at or before this monotonic time count as over.
    clock_ms: AtomicU64,
    /// The earliest end of an ejection the leaves still hold (MAX: none).
    next_expiry_ms: AtomicU64,
    /// A worker is refreshing expired ejections.
    expiring: AtomicBool,
    /// Fractional bits of load/weight keys (0: all weights equal, key = load).
    shift: u32,
    /// Effective weight per leaf (empty when `shift` is 0).
    weights: Box<[u32]>,
    /// How many backends it indexes.
    leaves: usize,
    /// `levels[0]` holds the leaves; the last level is a single line.
    levels: Box<[Box<[Line]>]>,
}

impl fmt::Debug for LoadTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadTree")
            .field("generation", &self.generation)
            .field("leaves", &self.leaves)
            .field("levels", &self.levels.len())
            .finish_non_exhaustive()
    }
}

/// Smallest shift with `2^shift >= w * w`: then two different ratios
/// load/weight differ by at least 1 once shifted, so their floors differ.
fn shift_for(max_weight: u32) -> u32 {
    let square = u64::from(max_weight) * u64::from(max_weight);
    64 - (square - 1).leading_zeros()
}

impl LoadTree {
    /// An empty tree (every leaf unavailable) for backends of these
    /// effective weights; `None` past `MAX_LEAVES` or `MAX_WEIGHT`.
    pub(crate) fn new(generation: u64, weights: &[u32]) -> Option<Self> {
        let max = weights.iter().copied().max()?;
        if weights.len() > MAX_LEAVES || max > MAX_WEIGHT || weights.contains(&0) {
            return None;
        }
        let uniform = weights.iter().all(|&w| w == max);
        let mut levels = Vec::new();
        let mut slots = weights.len();
        loop {
            let lines = slots.div_ceil(FANOUT);
            levels.push((0..lines).map(|_| Line::padding()).collect());
            if lines == 1 {
                break;
            }
            slots = lines;
        }
        let tree = LoadTree {
            generation,
            superseded: AtomicBool::new(false),
            clock_ms: AtomicU64::new(0),
            next_expiry_ms: AtomicU64::new(u64::MAX),
            expiring: AtomicBool::new(false),
            shift: if uniform { 0 } else { shift_for(max) },
            weights: if uniform {
                Box::new([])
            } else {
                weights.into()
            },
            leaves: weights.len(),
            levels: levels.into_boxed_slice(),
        };
        for leaf in 0..weights.len() {
            tree.store_leaf(leaf, (KEY_UNAVAILABLE << COUNT_BITS) | 1);
        }
        tree.settle_all();
        Some(tree)
    }

    /// How many backends it indexes.
    pub(crate) fn leaves(&self) -> usize {
        self.leaves
    }

    /// The generation of the snapshot it was built for.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether another tree took over updates of some of its backends.
    #[inline]
    pub(crate) fn is_superseded(&self) -> bool {
        self.superseded.load(Ordering::Acquire)
    }

    /// From now on picks on this tree scan instead.
    pub(crate) fn supersede(&self) {
        self.superseded.store(true, Ordering::Release);
    }

    /// Ejections ending at or before this time count as over.
    #[inline]
    pub(crate) fn clock_ms(&self) -> u64 {
        self.clock_ms.load(Ordering::SeqCst)
    }

    /// The earliest end of an ejection some leaf still holds.
    #[inline]
    pub(crate) fn next_expiry_ms(&self) -> u64 {
        self.next_expiry_ms.load(Ordering::SeqCst)
    }

    /// A leaf now holds an ejection ending at `until_ms`.
    #[inline]
    pub(crate) fn note_ejection(&self, until_ms: u64) {
        if self.next_expiry_ms.load(Ordering::SeqCst) > until_ms {
            self.next_expiry_ms.fetch_min(until_ms, Ordering::SeqCst);
        }
    }

    /// Starts an expiry pass at `now_ms` (moves the clock, forgets the next
    /// expiry so the pass can note the ejections still running); false if
    /// another worker is in one.
    pub(crate) fn begin_expiry(&self, now_ms: u64) -> bool {
        if self.expiring.swap(true, Ordering::SeqCst) {
            return false;
        }
        self.clock_ms.fetch_max(now_ms, Ordering::SeqCst);
        self.next_expiry_ms.store(u64::MAX, Ordering::SeqCst);
        true
    }

    /// Ends the pass `begin_expiry` started.
    pub(crate) fn end_expiry(&self) {
        self.expiring.store(false, Ordering::SeqCst);
    }

    /// The key of a backend with this load on this leaf.
    #[inline]
    pub(crate) fn key(&self, leaf: usize, load: u32, available: bool) -> u64 {
        if !available {
            return KEY_UNAVAILABLE;
        }
        let load = u64::from(load);
        if self.shift == 0 {
            return load;
        }
        if load > (KEY_SATURATED - 1) >> self.shift {
            return KEY_SATURATED;
        }
        let weight = self.weights.get(leaf).copied().unwrap_or(1);
        (load << self.shift) / u64::from(weight)
    }

    /// The key a leaf holds now.
    #[inline]
    pub(crate) fn leaf_key(&self, leaf: usize) -> u64 {
        key_of_slot(self.levels[0][leaf / FANOUT].0[leaf % FANOUT].load(Ordering::SeqCst))
    }

    /// Stores a leaf's key without settling its ancestors (`settle_all` or a
    /// later `set_leaf` does). Callers serialise the writes of one leaf.
    pub(crate) fn store_leaf(&self, leaf: usize, key: u64) -> bool {
        let slot = &self.levels[0][leaf / FANOUT].0[leaf % FANOUT];
        slot.swap((key << COUNT_BITS) | 1, Ordering::SeqCst) != (key << COUNT_BITS) | 1
    }

    /// Stores a leaf's key and settles its ancestors while they change.
    /// Callers serialise the writes of one leaf.
    pub(crate) fn set_leaf(&self, leaf: usize, key: u64) {
        if !self.store_leaf(leaf, key) {
            return;
        }
        let mut child_line = leaf / FANOUT;
        for level in 1..self.levels.len() {
            let children = &self.levels[level - 1][child_line];
            let node = &self.levels[level][child_line / FANOUT].0[child_line % FANOUT];
            if !settle(node, children) {
                return;
            }
            child_line /= FANOUT;
        }
    }

    /// Settles every node, bottom up (after a build).
    pub(crate) fn settle_all(&self) {
        for level in 1..self.levels.len() {
            for (child_line, children) in self.levels[level - 1].iter().enumerate() {
                let node = &self.levels[level][child_line / FANOUT].0[child_line % FANOUT];
                settle(node, children);
            }
        }
    }

    /// Walks down from the top line to a leaf with the least key. One draw
    /// among the ties at the top numbers the tied leaves; each level finds
    /// the child holding that number (children weighted by their tie
    /// counts), so every tied leaf is equally likely. The leaf and the key
    /// it held; `None` when nothing below has a usable key.
    pub(crate) fn descend(&self, rng: &mut fastrand::Rng) -> Option<(usize, u64)> {
        let mut line = 0usize;
        let mut draw = None;
        for level in (0..self.levels.len()).rev() {
            let values = self.levels[level].get(line)?.values();
            let least = combine(&values);
            let (key, ties) = (least >> COUNT_BITS, least & COUNT_MASK);
            if key >= KEY_SATURATED || ties == 0 {
                return None;
            }
            // A concurrent update may have shrunk the ties: draw again.
            let number = match draw {
                Some(d) if d < ties => d,
                _ => rng.u64(..ties),
            };
            // Branch-free: the child whose tie range holds `number`, and
            // how many ties lie in the children before it.
            let (mut child, mut before, mut seen) = (0usize, 0u64, 0u64);
            for &v in &values {
                let count = if v >> COUNT_BITS == key {
                    v & COUNT_MASK
                } else {
                    0
                };
                seen += count;
                let passed = seen <= number;
                child += usize::from(passed);
                before += if passed { count } else { 0 };
            }
            draw = Some(number - before);
            line = line * FANOUT + child;
            if level == 0 {
                return Some((line, key));
            }
        }
        None
    }
}

/// Recomputes `node` from `children` and stores it until a re-read of the
/// children agrees with the node; true if this call stored anything (the
/// caller then settles the parent).
#[inline]
fn settle(node: &AtomicU64, children: &Line) -> bool {
    let mut stored = false;
    loop {
        let want = combine(&children.values());
        if node.load(Ordering::SeqCst) == want {
            return stored;
        }
        node.store(want, Ordering::SeqCst);
        stored = true;
    }
}

#[cfg(test)]
#[path = "load_tree_tests.rs"]
mod tests;
