//! Fewest connections: the lowest load per weight among the available
//! backends, ties broken uniformly at random. The snapshot's index (a
//! tournament tree kept current by every counter update) answers in a few
//! cache lines; the chosen backend is checked against its live counters and
//! the exact scan answers whenever the index cannot vouch for its choice.

use super::load_tree::{LoadTree, KEY_UNAVAILABLE};
use super::snapshot::PoolSnapshot;

/// Index into `snap.backends` of a least loaded eligible backend.
pub(super) fn pick(
    snap: &PoolSnapshot,
    now_ms: u64,
    exclude: &[usize],
    rng: &mut fastrand::Rng,
) -> Option<usize> {
    if let Some(tree) = snap.load_tree() {
        if let Some(i) = by_tree(tree, snap, now_ms, exclude, rng) {
            return Some(i);
        }
    }
    scan(snap, now_ms, exclude, rng)
}

/// The tree's choice if it still holds: available now, not excluded, and
/// its live key no greater than the least key the tree showed.
fn by_tree(
    tree: &LoadTree,
    snap: &PoolSnapshot,
    now_ms: u64,
    exclude: &[usize],
    rng: &mut fastrand::Rng,
) -> Option<usize> {
    if tree.is_superseded() {
        return None;
    }
    if now_ms >= tree.next_expiry_ms() {
        end_ejections(tree, snap, now_ms);
    }
    let (leaf, least) = tree.descend(rng)?;
    let b = snap.backends.get(leaf)?;
    if exclude.contains(&leaf) || !b.is_available(now_ms) {
        return None;
    }
    (tree.key(leaf, b.stats.load(), true) <= least).then_some(leaf)
}

/// Ejections that ended by `now_ms` end in the tree too: the leaves held
/// unavailable are recomputed by the tree's new clock (the others cannot
/// hold an ejection). One worker at a time; rare (once per ejection).
fn end_ejections(tree: &LoadTree, snap: &PoolSnapshot, now_ms: u64) {
    if !tree.begin_expiry(now_ms) {
        return;
    }
    for (leaf, b) in snap.backends.iter().enumerate().take(tree.leaves()) {
        if tree.leaf_key(leaf) == KEY_UNAVAILABLE {
            b.stats.reindex();
        }
    }
    tree.end_expiry();
}

/// Lowest load per weight over every eligible backend; ties broken at
/// random by reservoir sampling. O(n): the fallback, and the reference.
pub(super) fn scan(
    snap: &PoolSnapshot,
    now_ms: u64,
    exclude: &[usize],
    rng: &mut fastrand::Rng,
) -> Option<usize> {
    let mut best: Option<(usize, u64, u64)> = None;
    let mut ties = 0u32;
    for (i, b) in snap.backends.iter().enumerate() {
        if !snap.eligible(i, now_ms, exclude) {
            continue;
        }
        let (l, w) = (u64::from(b.stats.load()), u64::from(b.effective_weight()));
        match best {
            Some((_, bl, bw)) if l * bw > bl * w => {}
            Some((_, bl, bw)) if l * bw == bl * w => {
                ties += 1;
                if rng.u32(..ties) == 0 {
                    best = Some((i, l, w));
                }
            }
            _ => {
                best = Some((i, l, w));
                ties = 1;
            }
        }
    }
    best.map(|(i, _, _)| i)
}

#[cfg(test)]
#[path = "fewest_tests.rs"]
mod tests;
