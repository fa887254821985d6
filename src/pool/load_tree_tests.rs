//! The tree on its own: shape, exact keys for load per weight, the least
//! key and fair ties at quiescence, and consistency after concurrent writers.

use super::*;
use std::sync::Arc;

/// Every node equals the combination of its children.
fn consistent(tree: &LoadTree) -> bool {
    (1..tree.levels.len()).all(|level| {
        tree.levels[level - 1]
            .iter()
            .enumerate()
            .all(|(child_line, children)| {
                let node = &tree.levels[level][child_line / FANOUT].0[child_line % FANOUT];
                node.load(Ordering::SeqCst) == combine(&children.values())
            })
    })
}

fn tree_with_keys(keys: &[u64]) -> LoadTree {
    let tree = LoadTree::new(1, &vec![1; keys.len()]).expect("tree");
    for (leaf, &k) in keys.iter().enumerate() {
        tree.set_leaf(leaf, k);
    }
    tree
}

#[test]
fn shape_has_one_line_on_top() {
    for (n, levels) in [(1, 1), (8, 1), (9, 2), (64, 2), (65, 3), (10_000, 5)] {
        let tree = LoadTree::new(1, &vec![1; n]).expect("tree");
        assert_eq!(tree.levels.len(), levels, "{n}");
        assert_eq!(tree.levels.last().map(|l| l.len()), Some(1), "{n}");
        assert_eq!(tree.leaves(), n);
        assert!(consistent(&tree));
    }
    assert!(LoadTree::new(1, &[]).is_none());
    assert!(LoadTree::new(1, &[1, MAX_WEIGHT + 1]).is_none());
}

#[test]
fn keys_order_load_per_weight_exactly() {
    let weights: Vec<u32> = (1..=40)
        .chain([999, 1000, MAX_WEIGHT - 1, MAX_WEIGHT])
        .collect();
    let tree = LoadTree::new(1, &weights).expect("tree");
    let loads: Vec<u32> = (0..=50).chain([1_000, 65_535, 1 << 19]).collect();
    for (a, &wa) in weights.iter().enumerate() {
        for (b, &wb) in weights.iter().enumerate() {
            for &la in &loads {
                for &lb in loads.iter().step_by(7) {
                    let want =
                        (u64::from(la) * u64::from(wb)).cmp(&(u64::from(lb) * u64::from(wa)));
                    let got = tree.key(a, la, true).cmp(&tree.key(b, lb, true));
                    assert_eq!(got, want, "{la}/{wa} vs {lb}/{wb}");
                }
            }
        }
    }
    assert_eq!(tree.key(0, u32::MAX, true), KEY_SATURATED);
    assert_eq!(tree.key(0, 0, false), KEY_UNAVAILABLE);
    let uniform = LoadTree::new(1, &[5, 5]).expect("tree");
    assert_eq!(uniform.key(1, u32::MAX, true), u64::from(u32::MAX));
}

#[test]
fn descend_finds_the_least_key() {
    let mut rng = fastrand::Rng::with_seed(1);
    for n in [1, 7, 8, 9, 100, 1_000, 5_000] {
        for _ in 0..5 {
            let keys: Vec<u64> = (0..n).map(|_| 5 + rng.u64(..40)).collect();
            let tree = tree_with_keys(&keys);
            assert!(consistent(&tree));
            let least = keys.iter().copied().min().expect("keys");
            for _ in 0..50 {
                let (leaf, key) = tree.descend(&mut rng).expect("leaf");
                assert_eq!((keys[leaf], key), (least, least), "n={n}");
            }
        }
    }
}

#[test]
fn descend_none_when_nothing_usable() {
    let mut rng = fastrand::Rng::with_seed(2);
    let tree = tree_with_keys(&[KEY_UNAVAILABLE; 20]);
    assert_eq!(tree.descend(&mut rng), None);
    tree.set_leaf(13, KEY_SATURATED);
    assert_eq!(tree.descend(&mut rng), None);
    tree.set_leaf(17, 3);
    assert_eq!(tree.descend(&mut rng), Some((17, 3)));
}

/// Ties lie in subtrees holding 1, 3 and 12 of them: a walk choosing among
/// least children uniformly (not by tie count) would give the lone one a
/// third of the picks instead of a sixteenth.
#[test]
fn ties_are_equally_likely_wherever_they_sit() {
    let mut keys = vec![9u64; 600];
    let tied: Vec<usize> = [3]
        .into_iter()
        .chain([64, 70, 127])
        .chain(512..524)
        .collect();
    for &t in &tied {
        keys[t] = 2;
    }
    let tree = tree_with_keys(&keys);
    let mut rng = fastrand::Rng::with_seed(3);
    let draws = 160_000;
    let mut seen = vec![0u32; keys.len()];
    for _ in 0..draws {
        seen[tree.descend(&mut rng).expect("leaf").0] += 1;
    }
    // 16 tied: 10,000 each, binomial sd about 97; 6 sd cannot fail by chance.
    for &t in &tied {
        assert!((9_420..=10_580).contains(&seen[t]), "leaf {t}: {}", seen[t]);
    }
    assert_eq!(seen.iter().map(|&c| u64::from(c)).sum::<u64>(), draws);
}

#[test]
fn concurrent_writers_leave_a_consistent_tree() {
    let n = 3_000;
    let tree = Arc::new(LoadTree::new(1, &vec![1; n]).expect("tree"));
    for leaf in 0..n {
        tree.set_leaf(leaf, 100);
    }
    // Each thread owns the leaves congruent to it (one writer per leaf).
    let writers: Vec<_> = (0..3usize)
        .map(|t| {
            let tree = Arc::clone(&tree);
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(t as u64);
                for _ in 0..200_000 {
                    let leaf = rng.usize(..n / 3) * 3 + t;
                    tree.set_leaf(leaf, rng.u64(..50));
                }
                // Leave a known state: leaf key = leaf % 97 + 1, 0 on one.
                for leaf in (t..n).step_by(3) {
                    tree.set_leaf(leaf, (leaf % 97) as u64 + 1);
                }
            })
        })
        .collect();
    let mut rng = fastrand::Rng::with_seed(9);
    for _ in 0..20_000 {
        if let Some((leaf, _)) = tree.descend(&mut rng) {
            assert!(leaf < n);
        }
    }
    for w in writers {
        w.join().expect("writer");
    }
    assert!(consistent(&tree));
    tree.set_leaf(2_500, 0);
    assert!(consistent(&tree));
    assert_eq!(tree.descend(&mut rng), Some((2_500, 0)));
    tree.set_leaf(2_500, 1);
    // Key 1: leaves 0, 97, 194, ... (31 of them) and now 2,500 too.
    let top = combine(&tree.levels.last().expect("top")[0].values());
    assert_eq!((key_of_slot(top), top & COUNT_MASK), (1, 32));
}
