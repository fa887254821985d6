//! Sticky sessions: where the key comes from (`StickyMode`), a hash that is
//! stable across builds and Rust versions, and weighted rendezvous hashing so
//! a key keeps its backend while others join or leave.

use std::str::FromStr;

use super::snapshot::PoolSnapshot;

/// Where the sticky key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StickyMode {
    /// No stickiness: every connection is picked afresh.
    None,
    /// Hash of the client address.
    ClientIp,
    /// Hash of the named cookie's value (picked afresh without it).
    Cookie(String),
    /// Hash of the named request header's value (picked afresh without it).
    Header(String),
}

/// A sticky mode string we cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad sticky mode {0:?} (expected none, ip, cookie:NAME or header:NAME)")]
pub struct StickyParseError(pub String);

impl FromStr for StickyMode {
    type Err = StickyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || StickyParseError(s.to_string());
        let t = s.trim();
        let valid_name = |n: &str| {
            !n.is_empty()
                && n.bytes()
                    .all(|c| c.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&c))
        };
        match t.split_once(':') {
            None if t.eq_ignore_ascii_case("none") => Ok(StickyMode::None),
            None if t.eq_ignore_ascii_case("ip") => Ok(StickyMode::ClientIp),
            Some((k, n)) if k.eq_ignore_ascii_case("cookie") && valid_name(n) => {
                Ok(StickyMode::Cookie(n.to_string()))
            }
            Some((k, n)) if k.eq_ignore_ascii_case("header") && valid_name(n) => {
                Ok(StickyMode::Header(n.to_ascii_lowercase()))
            }
            _ => Err(err()),
        }
    }
}

/// FNV-1a 64 of the key followed by a murmur-style finaliser. Fixed and
/// stable across builds, so keys map the same way after a restart.
pub fn sticky_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

#[inline]
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Weighted rendezvous hashing: the available, non-excluded backend with the
/// highest `weight / -ln(u)` where `u` is a uniform draw from (key, id). A key
/// moves only when its backend leaves (or a newcomer outscores it).
pub fn pick_sticky(
    snap: &PoolSnapshot,
    now_ms: u64,
    key_hash: u64,
    exclude: &[usize],
) -> Option<usize> {
    // Best so far: index, hash, weight. Equal weights compare hashes (the
    // score is monotonic in u), so `ln` runs only across different weights.
    let mut best: Option<(usize, u64, u32)> = None;
    for (i, b) in snap.backends.iter().enumerate() {
        if exclude.contains(&i) || !b.is_available(now_ms) {
            continue;
        }
        let h = mix(key_hash ^ sticky_hash(b.id.as_bytes()));
        let w = b.effective_weight();
        let wins = match best {
            None => true,
            Some((_, bh, bw)) if bw == w => h > bh,
            Some((_, bh, bw)) => score(h, w) > score(bh, bw),
        };
        if wins {
            best = Some((i, h, w));
        }
    }
    best.map(|(i, _, _)| i)
}

/// Rendezvous score `w / -ln(u)`, u in (0, 1) from 53 bits of `h`, centred
/// so it is never 0 or 1. Increasing in `h` for a fixed weight.
#[inline]
fn score(h: u64, w: u32) -> f64 {
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    f64::from(w) / -u.ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::snapshot::{Backend, Source};
    use std::sync::Arc;

    fn pool(ids: &[(&str, u32)]) -> PoolSnapshot {
        PoolSnapshot::new(
            1,
            ids.iter()
                .map(|&(id, w)| Arc::new(Backend::new_for_test(id, w, Source::Registered)))
                .collect(),
        )
    }

    fn owner(snap: &PoolSnapshot, key: u64) -> &str {
        let i = pick_sticky(snap, 0, key, &[]).expect("owner");
        &snap.backends[i].id
    }

    #[test]
    fn modes_parse() {
        assert_eq!("none".parse(), Ok(StickyMode::None));
        assert_eq!("ip".parse(), Ok(StickyMode::ClientIp));
        assert_eq!("cookie:SID".parse(), Ok(StickyMode::Cookie("SID".into())));
        assert_eq!(
            "header:X-User".parse(),
            Ok(StickyMode::Header("x-user".into()))
        );
        for bad in ["", "cookie:", "header:", "cookie:a b", "hash", "ip:1"] {
            assert!(bad.parse::<StickyMode>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hash_is_fixed() {
        // Pinned values: a change here would move every sticky session.
        assert_eq!(sticky_hash(b""), mix(0xcbf2_9ce4_8422_2325));
        assert_eq!(sticky_hash(b"a"), mix(0xaf63_dc4c_8601_ec8c));
        assert_ne!(sticky_hash(b"10.0.0.1"), sticky_hash(b"10.0.0.2"));
    }

    #[test]
    fn same_key_same_backend() {
        let snap = pool(&[("a", 1), ("b", 1), ("c", 1)]);
        for k in 0..1000u64 {
            let key = sticky_hash(&k.to_le_bytes());
            assert_eq!(owner(&snap, key), owner(&snap, key));
        }
    }

    #[test]
    fn removing_one_moves_only_its_keys_and_adding_takes_a_fair_share() {
        let full = pool(&[("a", 1), ("b", 1), ("c", 1), ("d", 1)]);
        let less = PoolSnapshot::new(
            2,
            full.backends
                .iter()
                .filter(|b| &*b.id != "c")
                .cloned()
                .collect(),
        );
        let mut moved_to_new = 0;
        for k in 0..4000u64 {
            let key = sticky_hash(format!("client-{k}").as_bytes());
            let before = owner(&less, key);
            let after = owner(&full, key);
            if after == "c" {
                moved_to_new += 1;
            } else {
                assert_eq!(before, after, "key {k} moved without cause");
            }
        }
        // "c" joining takes about a quarter of the keys.
        assert!((800..1200).contains(&moved_to_new), "{moved_to_new}");
    }

    #[test]
    fn unavailable_backend_keys_move_and_come_back() {
        let snap = pool(&[("a", 1), ("b", 1), ("c", 1)]);
        let keys: Vec<u64> = (0..300u64).map(|k| sticky_hash(&k.to_be_bytes())).collect();
        let before: Vec<String> = keys.iter().map(|&k| owner(&snap, k).to_string()).collect();
        snap.backends[0].stats.set_draining(true);
        for (k, b) in keys.iter().zip(&before) {
            let now = owner(&snap, *k);
            assert_ne!(now, "a");
            if b != "a" {
                assert_eq!(now, b);
            }
        }
        snap.backends[0].stats.set_draining(false);
        for (k, b) in keys.iter().zip(&before) {
            assert_eq!(owner(&snap, *k), b);
        }
        assert_eq!(pick_sticky(&snap, 0, keys[0], &[0, 1, 2]), None);
    }

    #[test]
    fn weights_respected_roughly() {
        let snap = pool(&[("a", 1), ("b", 2), ("c", 3)]);
        let mut c = [0usize; 3];
        for k in 0..60_000u64 {
            c[pick_sticky(&snap, 0, sticky_hash(&k.to_le_bytes()), &[]).expect("pick")] += 1;
        }
        for (i, n) in c.iter().enumerate() {
            let want = 10_000.0 * (i + 1) as f64;
            assert!((*n as f64 - want).abs() < want * 0.06, "{c:?}");
        }
    }

    #[test]
    fn exclude_moves_to_next_choice() {
        let snap = pool(&[("a", 1), ("b", 1), ("c", 1)]);
        let key = sticky_hash(b"user-42");
        let first = pick_sticky(&snap, 0, key, &[]).expect("first");
        let second = pick_sticky(&snap, 0, key, &[first]).expect("second");
        assert_ne!(first, second);
        assert_eq!(pick_sticky(&snap, 0, key, &[first]), Some(second));
    }
}
