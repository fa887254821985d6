//! Property-style tests for the pick algorithms (spread, exact cycles,
//! load avoidance, weights, exclusion, everything down).

use super::*;
use crate::pool::snapshot::{Backend, PoolSnapshot, Source};
use proptest::prelude::*;
use std::sync::Arc;

const ALL: [Algorithm; 4] = [
    Algorithm::Random,
    Algorithm::RoundRobin,
    Algorithm::P2c,
    Algorithm::FewestConnections,
];

fn pool(weights: &[u32]) -> PoolSnapshot {
    PoolSnapshot::new(
        1,
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Arc::new(Backend::new_for_test(&format!("b{i}"), w, Source::Static)))
            .collect(),
    )
}

fn counts(p: &Picker, snap: &PoolSnapshot, n: usize, exclude: &[usize]) -> Vec<usize> {
    let mut c = vec![0; snap.backends.len()];
    for _ in 0..n {
        c[p.pick(snap, 0, exclude).expect("a backend")] += 1;
    }
    c
}

fn assert_near(got: usize, want: f64, tol: f64) {
    let g = got as f64;
    assert!(
        (g - want).abs() <= want * tol,
        "got {got}, want {want} ±{tol}"
    );
}

#[test]
fn names_round_trip() {
    for a in ALL {
        assert_eq!(a.to_string().parse::<Algorithm>(), Ok(a));
    }
    assert_eq!("P2C".parse::<Algorithm>(), Ok(Algorithm::P2c));
    let e = "least".parse::<Algorithm>().expect_err("unknown");
    assert!(e.to_string().contains("least"));
}

#[test]
fn random_spreads_evenly() {
    let snap = pool(&[1, 1, 1]);
    let c = counts(&Picker::new(Algorithm::Random, 7), &snap, 30_000, &[]);
    for n in c {
        assert_near(n, 10_000.0, 0.05);
    }
}

#[test]
fn random_respects_weights() {
    let snap = pool(&[1, 2, 3]);
    let c = counts(&Picker::new(Algorithm::Random, 8), &snap, 60_000, &[]);
    for (i, n) in c.into_iter().enumerate() {
        assert_near(n, 10_000.0 * (i + 1) as f64, 0.05);
    }
}

#[test]
fn round_robin_cycles_exactly() {
    let snap = pool(&[1, 1, 1]);
    let p = Picker::new(Algorithm::RoundRobin, 1);
    let first: Vec<usize> = (0..3).filter_map(|_| p.pick(&snap, 0, &[])).collect();
    let mut sorted = first.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![0, 1, 2]);
    for _ in 0..100 {
        let cycle: Vec<usize> = (0..3).filter_map(|_| p.pick(&snap, 0, &[])).collect();
        assert_eq!(cycle, first);
    }
}

#[test]
fn round_robin_weights_exact_per_cycle_and_smooth() {
    let snap = pool(&[1, 2, 3]);
    let p = Picker::new(Algorithm::RoundRobin, 1);
    for _ in 0..50 {
        let mut c = [0; 3];
        let mut prev = usize::MAX;
        let mut run = 0;
        for _ in 0..6 {
            let i = p.pick(&snap, 0, &[]).expect("pick");
            c[i] += 1;
            run = if i == prev { run + 1 } else { 1 };
            prev = i;
            assert!(run <= 2, "smooth: no backend three times in a row");
        }
        assert_eq!(c, [1, 2, 3]);
    }
}

#[test]
fn round_robin_skips_unavailable() {
    for weights in [[1, 1, 1], [1, 2, 3]] {
        let snap = pool(&weights);
        snap.backends[1].stats.set_draining(true);
        let p = Picker::new(Algorithm::RoundRobin, 3);
        let c = counts(&p, &snap, 600, &[]);
        assert_eq!(c[1], 0);
        assert_eq!(c[0] * weights[2] as usize, c[2] * weights[0] as usize);
    }
}

#[test]
fn p2c_and_fewest_avoid_a_busy_backend() {
    for a in [Algorithm::P2c, Algorithm::FewestConnections] {
        let snap = pool(&[1, 1, 1]);
        snap.backends[1].stats.set_active(1000);
        let c = counts(&Picker::new(a, 11), &snap, 10_000, &[]);
        assert_eq!(c[1], 0, "{a}: {c:?}");
        assert!(c[0] > 4000 && c[2] > 4000, "{a}: {c:?}");
    }
}

#[test]
fn reported_load_counts_too() {
    for a in [Algorithm::P2c, Algorithm::FewestConnections] {
        let snap = pool(&[1, 1]);
        snap.backends[0].stats.set_reported_load(50);
        let c = counts(&Picker::new(a, 12), &snap, 1000, &[]);
        assert_eq!(c, vec![0, 1000], "{a}");
    }
}

#[test]
fn fewest_ties_spread() {
    let snap = pool(&[1, 1, 1]);
    let c = counts(
        &Picker::new(Algorithm::FewestConnections, 5),
        &snap,
        30_000,
        &[],
    );
    for n in c {
        assert_near(n, 10_000.0, 0.05);
    }
}

#[test]
fn fewest_uses_load_per_weight() {
    let snap = pool(&[1, 3]);
    snap.backends[0].stats.set_active(10);
    snap.backends[1].stats.set_active(20); // 20/3 < 10/1
    let c = counts(
        &Picker::new(Algorithm::FewestConnections, 5),
        &snap,
        100,
        &[],
    );
    assert_eq!(c, vec![0, 100]);
    snap.backends[1].stats.set_active(31); // 31/3 > 10/1
    let c = counts(
        &Picker::new(Algorithm::FewestConnections, 5),
        &snap,
        100,
        &[],
    );
    assert_eq!(c, vec![100, 0]);
}

#[test]
fn p2c_respects_weights_when_idle() {
    let snap = pool(&[1, 2, 3]);
    let c = counts(&Picker::new(Algorithm::P2c, 9), &snap, 60_000, &[]);
    for (i, n) in c.into_iter().enumerate() {
        assert_near(n, 10_000.0 * (i + 1) as f64, 0.06);
    }
}

#[test]
fn p2c_prefers_lower_load_per_weight() {
    let snap = pool(&[1, 4]);
    snap.backends[0].stats.set_active(10);
    snap.backends[1].stats.set_active(30); // 30/4 < 10/1
    let c = counts(&Picker::new(Algorithm::P2c, 9), &snap, 1000, &[]);
    assert_eq!(c, vec![0, 1000]);
}

#[test]
fn everything_down_gives_none() {
    for a in ALL {
        let snap = pool(&[1, 2, 3, 1]);
        let p = Picker::new(a, 1);
        for (i, b) in snap.backends.iter().enumerate() {
            if i % 2 == 0 {
                b.stats.set_draining(true);
            } else {
                b.stats.extend_ejection(500);
            }
        }
        for _ in 0..20 {
            assert_eq!(p.pick(&snap, 499, &[]), None, "{a}");
        }
        // Ejection over: the ejected ones are back (half-open).
        let i = p.pick(&snap, 500, &[]).expect("back");
        assert!(i % 2 == 1, "{a}");
        assert_eq!(p.pick(&PoolSnapshot::default(), 0, &[]), None, "{a}");
    }
}

#[test]
fn exclude_is_respected() {
    for a in ALL {
        let snap = pool(&[3, 2, 1]);
        let p = Picker::new(a, 2);
        for _ in 0..200 {
            assert_eq!(p.pick(&snap, 0, &[0, 1]), Some(2), "{a}");
        }
        assert_eq!(p.pick(&snap, 0, &[2, 0, 1]), None, "{a}");
    }
}

#[test]
fn mostly_down_pool_uses_the_few_left() {
    for a in ALL {
        let snap = pool(&vec![1; 100]);
        for (i, b) in snap.backends.iter().enumerate() {
            b.stats.set_draining(i != 17 && i != 83);
        }
        let c = counts(&Picker::new(a, 4), &snap, 2000, &[]);
        assert_eq!(c[17] + c[83], 2000, "{a}");
        assert!(c[17] > 500 && c[83] > 500, "{a}: {} {}", c[17], c[83]);
    }
}

#[test]
fn state_rebuilt_when_the_pool_changes() {
    let p = Picker::new(Algorithm::RoundRobin, 1);
    let a = pool(&[1, 2]);
    for _ in 0..5 {
        p.pick(&a, 0, &[]);
    }
    let mut b = pool(&[1, 1, 1, 1]);
    b.generation = 2;
    let c = counts(&p, &b, 400, &[]);
    assert_eq!(c, vec![100; 4]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn pick_is_some_eligible_iff_one_exists(
        spec in proptest::collection::vec((1u32..10, 0u8..4, 0u32..20), 1..24),
        exclude in proptest::collection::vec(0usize..24, 0..4),
        algo in 0usize..4,
        seed in any::<u64>(),
    ) {
        let weights: Vec<u32> = spec.iter().map(|s| s.0).collect();
        let snap = pool(&weights);
        for (b, &(_, state, load)) in snap.backends.iter().zip(&spec) {
            b.stats.set_active(load);
            match state {
                0 => {
                    b.stats.set_draining(true);
                }
                1 => {
                    b.stats.extend_ejection(10);
                }
                _ => {}
            }
        }
        let ok = |i: usize| !exclude.contains(&i) && snap.backends[i].is_available(5);
        let any_ok = (0..snap.backends.len()).any(ok);
        let p = Picker::new(ALL[algo], seed);
        for _ in 0..10 {
            match p.pick(&snap, 5, &exclude) {
                Some(i) => prop_assert!(ok(i)),
                None => prop_assert!(!any_ok),
            }
        }
    }
}

#[test]
fn a_changed_algorithm_applies_from_the_next_pick() {
    let snap = pool(&[1, 1, 1]);
    let p = Picker::new(Algorithm::Random, 7);
    counts(&p, &snap, 10, &[]);
    p.set_algorithm(Algorithm::RoundRobin);
    assert_eq!(p.algorithm(), Algorithm::RoundRobin);
    assert_eq!(counts(&p, &snap, 9, &[]), vec![3, 3, 3], "exact cycles");
    // Fewest connections avoids the busy one at once.
    snap.backends[0].stats.set_active(5);
    snap.backends[1].stats.set_active(5);
    p.set_algorithm(Algorithm::FewestConnections);
    assert_eq!(counts(&p, &snap, 4, &[]), vec![0, 0, 4]);
}
