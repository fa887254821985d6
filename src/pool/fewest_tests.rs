//! Fewest connections through the index, against the exact scan's answer:
//! the least load per weight at quiescence, fair ties, weights, never an
//! unavailable backend (also while other threads update), ejections ending
//! on time, and counts kept across snapshot rebuilds.

use super::by_tree;
use crate::pool::snapshot::{Backend, PoolSnapshot, SharedPool, Source};
use crate::pool::stats::HEALTH_FAILING;
use crate::pool::{Algorithm, Picker};
use proptest::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

fn members(weights: &[u32]) -> Vec<Arc<Backend>> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Arc::new(Backend::new_for_test(&format!("b{i}"), w, Source::Static)))
        .collect()
}

fn pool(weights: &[u32]) -> PoolSnapshot {
    PoolSnapshot::new(1, members(weights))
}

/// The least load per weight among backends available at `now` (as a
/// fraction compared by cross-multiplication), by brute force.
fn least(snap: &PoolSnapshot, now: u64) -> Option<(u64, u64)> {
    snap.backends
        .iter()
        .filter(|b| b.is_available(now))
        .map(|b| (u64::from(b.stats.load()), u64::from(b.effective_weight())))
        .min_by(|a, b| (a.0 * b.1).cmp(&(b.0 * a.1)))
}

fn is_least(snap: &PoolSnapshot, now: u64, i: usize) -> bool {
    let b = &snap.backends[i];
    let (l, w) = (u64::from(b.stats.load()), u64::from(b.effective_weight()));
    least(snap, now).is_some_and(|(ml, mw)| l * mw == ml * w)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(120))]
    #[test]
    fn the_pick_has_the_least_load_per_weight(
        spec in proptest::collection::vec((1u32..6, 0u8..6, 0u32..12, 0u32..3), 1..300),
        seed in any::<u64>(),
    ) {
        let weights: Vec<u32> = spec.iter().map(|s| s.0).collect();
        let snap = pool(&weights);
        let p = Picker::new(Algorithm::FewestConnections, seed);
        prop_assert!(p.pick(&snap, 0, &[]).is_some(), "all start available");
        // Changes after the index is built reach it through the counters.
        for (b, &(_, state, active, reported)) in snap.backends.iter().zip(&spec) {
            b.stats.set_active(active);
            b.stats.set_reported_load(reported);
            match state {
                0 => { b.stats.set_draining(true); }
                1 => { b.stats.extend_ejection(10); }
                2 => b.stats.set_health(HEALTH_FAILING),
                _ => {}
            }
        }
        for _ in 0..20 {
            match p.pick(&snap, 5, &[]) {
                Some(i) => prop_assert!(is_least(&snap, 5, i), "picked {i}"),
                None => prop_assert!(least(&snap, 5).is_none()),
            }
        }
        // At quiescence the index itself answers (no fallback scan).
        let tree = snap.load_tree().expect("index");
        let mut rng = fastrand::Rng::with_seed(seed);
        match by_tree(tree, &snap, 5, &[], &mut rng) {
            Some(i) => prop_assert!(is_least(&snap, 5, i), "index picked {i}"),
            None => prop_assert!(least(&snap, 5).is_none(), "index gave up"),
        }
    }
}

#[test]
fn ties_spread_evenly_among_many() {
    // 200 backends, 8 tied at the least load (in different subtrees).
    let snap = pool(&[1; 200]);
    let tied = [0usize, 9, 10, 77, 130, 131, 132, 199];
    let _held: Vec<_> = (0..200)
        .filter(|i| !tied.contains(i))
        .map(|i| snap.backends[i].stats.begin())
        .collect();
    let tree = snap.load_tree().expect("index");
    let mut rng = fastrand::Rng::with_seed(5);
    let mut seen = [0u32; 200];
    for _ in 0..80_000 {
        // The index answers alone: the scan's fairness does not count.
        seen[by_tree(tree, &snap, 0, &[], &mut rng).expect("index")] += 1;
    }
    // 10,000 each expected, sd about 94: six sd either way.
    for &t in &tied {
        assert!((9_430..=10_570).contains(&seen[t]), "{t}: {}", seen[t]);
    }
    assert_eq!(tied.iter().map(|&t| seen[t]).sum::<u32>(), 80_000);
}

#[test]
fn weighted_ties_and_order() {
    // 2/1 == 6/3 == 10/5 < 3/1: the first three tie, the last never wins.
    let snap = pool(&[1, 3, 5, 1]);
    for (b, load) in snap.backends.iter().zip([2, 6, 10, 3]) {
        b.stats.set_active(load);
    }
    let p = Picker::new(Algorithm::FewestConnections, 6);
    let tree = snap.load_tree().expect("index");
    let mut rng = fastrand::Rng::with_seed(6);
    let mut seen = [0u32; 4];
    for _ in 0..30_000 {
        seen[by_tree(tree, &snap, 0, &[], &mut rng).expect("index")] += 1;
    }
    assert_eq!(seen[3], 0);
    for &n in &seen[..3] {
        assert!((9_400..=10_600).contains(&n), "{seen:?}");
    }
    snap.backends[2].stats.set_active(11); // 11/5 > 2/1
    for _ in 0..100 {
        assert_ne!(p.pick(&snap, 0, &[]), Some(2));
    }
}

#[test]
fn unavailable_least_loaded_never_picked_and_ejection_ends() {
    let snap = pool(&[1; 40]);
    let p = Picker::new(Algorithm::FewestConnections, 7);
    p.pick(&snap, 0, &[]);
    let _held: Vec<_> = (3..40)
        .flat_map(|i| [0, 1].map(|_| snap.backends[i].stats.begin()))
        .collect();
    // 0, 1, 2 are the least loaded but out, each for its own reason.
    snap.backends[0].stats.set_draining(true);
    snap.backends[1].stats.set_health(HEALTH_FAILING);
    snap.backends[2].stats.extend_ejection(1_000);
    for now in [0, 500, 999] {
        for _ in 0..200 {
            let i = p.pick(&snap, now, &[]).expect("pick");
            assert!(i >= 3, "picked unavailable {i} at {now}");
        }
    }
    // The ejection ends: 2 is back, and alone at the least load.
    for _ in 0..50 {
        assert_eq!(p.pick(&snap, 1_000, &[]), Some(2));
    }
    assert_eq!(snap.load_tree().map(|t| t.leaf_key(2)), Some(0));
    snap.backends[1].stats.set_health(0);
    snap.backends[2].stats.set_active(1);
    assert_eq!(p.pick(&snap, 1_000, &[]), Some(1));
    // Excluded: the next least.
    assert_eq!(p.pick(&snap, 1_000, &[1]), Some(2));
}

#[test]
fn concurrent_updates_never_yield_an_unavailable_backend() {
    let snap = Arc::new(pool(&[1; 300]));
    // Every third backend is out for good: no pick may ever return one.
    for b in snap.backends.iter().step_by(3) {
        b.stats.set_draining(true);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let updaters: Vec<_> = (0..2u64)
        .map(|t| {
            let snap = Arc::clone(&snap);
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(t);
                let mut open = Vec::new();
                for step in 0..150_000u32 {
                    let i = rng.usize(..snap.backends.len());
                    open.push(snap.backends[i].stats.begin());
                    if step % 2 == 1 || open.len() > 64 {
                        let k = rng.usize(..open.len());
                        drop(open.swap_remove(k));
                    }
                    // Backends 1 and 2 go in and out of draining.
                    if step % 1_000 == 0 {
                        snap.backends[1 + (step as usize / 1_000) % 2]
                            .stats
                            .set_draining(step % 3_000 == 0);
                    }
                }
            })
        })
        .collect();
    let picker_snap = Arc::clone(&snap);
    let picking_stop = Arc::clone(&stop);
    let picker = std::thread::spawn(move || {
        let p = Picker::new(Algorithm::FewestConnections, 8);
        let mut picks = 0u32;
        while !picking_stop.load(Relaxed) && picks < 5_000_000 {
            let i = p.pick(&picker_snap, 0, &[]).expect("two thirds are up");
            assert!(!i.is_multiple_of(3), "picked draining backend {i}");
            picks += 1;
        }
        picks
    });
    for u in updaters {
        u.join().expect("updater");
    }
    stop.store(true, Relaxed);
    assert!(picker.join().expect("picker") > 0);
    for b in snap.backends.iter() {
        assert_eq!(b.stats.active.load(Relaxed), 0, "{}", b.id);
    }
    // Quiet again: the index is exact (every leaf idle, the out ones out).
    snap.backends[1].stats.set_draining(false);
    snap.backends[2].stats.set_draining(false);
    let tree = snap.load_tree().expect("index");
    for (i, b) in snap.backends.iter().enumerate() {
        let want = tree.key(i, 0, !i.is_multiple_of(3));
        assert_eq!(tree.leaf_key(i), want, "leaf {i} ({})", b.id);
    }
    let _busy: Vec<_> = (0..299).map(|i| snap.backends[i].stats.begin()).collect();
    assert_eq!(
        Picker::new(Algorithm::FewestConnections, 9).pick(&snap, 0, &[]),
        Some(299)
    );
}

#[test]
fn rebuilds_keep_counts_and_the_old_index_steps_aside() {
    let shared = SharedPool::new();
    let first = members(&[1, 1, 1]);
    shared.publish(first.clone());
    let s1 = shared.load();
    let p = Picker::new(Algorithm::FewestConnections, 9);
    let held = [0, 0, 1].map(|i| s1.backends[i].stats.begin());
    assert_eq!(p.pick(&s1, 0, &[]), Some(2));
    // A rebuild adds one backend and keeps the counters of the others.
    let mut next = first;
    next.push(Arc::new(Backend::new_for_test("b3", 1, Source::Static)));
    shared.publish(next);
    let s2 = shared.load();
    let _c = s2.backends[2].stats.begin();
    for _ in 0..20 {
        assert_eq!(p.pick(&s2, 0, &[]), Some(3), "loads 2, 1, 1, 0");
    }
    // The old snapshot's index stepped aside; its picks scan, still exact.
    assert!(s1.load_tree().is_some_and(|t| t.is_superseded()));
    let i = p.pick(&s1, 0, &[]).expect("pick");
    assert!(is_least(&s1, 0, i), "{i}");
    // Dropping the old snapshot leaves the new index fed.
    drop(s1);
    drop(held);
    let _d = s2.backends[3].stats.begin();
    for _ in 0..20 {
        let i = p.pick(&s2, 0, &[]);
        assert!(matches!(i, Some(0 | 1)), "loads 0, 0, 1, 1: {i:?}");
    }
}
