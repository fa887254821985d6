//! Replacing the static backends at once (a reload): every new URL is
//! checked before anything changes, then under one lock the departed ones
//! leave (their counters kept for a return, their live sessions untouched),
//! the new ones join, the kept ones keep their counters (a weight change
//! keeps them too) and one snapshot is published. Registered backends are
//! not touched.

use std::collections::HashSet;
use std::sync::Arc;

use super::{member, prune, retain, take_stats, Inner, Registry};
use crate::pool::registry::binding::{parse_binding, tls_host, Fill};
use crate::pool::registry::protocol::{validate_id, validate_weight, ProtocolError};
use crate::pool::{clock, Backend, BackendStats, Source};

/// What a replacement of the static backends did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct StaticChanges {
    /// Joined: (id, primary URL).
    pub added: Vec<(String, String)>,
    /// Left: (id, primary URL); live sessions and requests to them go on.
    pub removed: Vec<(String, String)>,
    /// Kept with a new weight: (id, old weight, new weight).
    pub reweighted: Vec<(String, u32, u32)>,
    /// Kept as they were.
    pub unchanged: usize,
}

impl StaticChanges {
    /// Whether the pool changed at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.reweighted.is_empty()
    }
}

/// Why a set of static backends was refused (nothing changed).
#[derive(Debug, thiserror::Error)]
#[error("backend {url:?}: {reason}")]
pub(crate) struct StaticRefused {
    /// The URL as given.
    pub url: String,
    /// What is wrong with it.
    pub reason: ProtocolError,
}

/// One static backend as configured, checked: its URL (the id), where the
/// proxy connects and its weight.
pub(crate) struct Wanted {
    pub id: String,
    resolved: String,
    pub addr: std::net::SocketAddr,
    pub weight: u32,
}

impl Wanted {
    /// Checks one configured static backend (`http://`, `ws://`, `https://`,
    /// `wss://` with an IP literal or `localhost`) the way the pool takes
    /// it: at start, on a reload, and in a dry run (`ServeConfig::preflight`).
    pub(crate) fn check(url: &str, weight: u32) -> Result<Wanted, ProtocolError> {
        let id = url.trim();
        validate_id(id)?;
        let weight = validate_weight(u64::from(weight))?;
        let (resolved, addr) = parse_binding(id, Fill::Static)?;
        Ok(Wanted {
            id: id.to_string(),
            resolved,
            addr,
            weight,
        })
    }

    /// The pool member it becomes, on `stats` (kept across reloads and
    /// returns), in the pool since `since_unix_ms`.
    pub(crate) fn into_backend(self, stats: Arc<BackendStats>, since_unix_ms: u64) -> Backend {
        Backend {
            tls_name: tls_host(&self.id).map(Arc::from),
            id: Arc::from(self.id),
            addr: self.addr,
            bindings: vec![Arc::from(self.resolved)],
            weight: self.weight,
            source: Source::Static,
            stats,
            since_unix_ms,
            metadata: None,
        }
    }
}

fn check(backends: &[(String, u32)]) -> Result<Vec<Wanted>, StaticRefused> {
    let mut seen = HashSet::new();
    let mut wanted = Vec::with_capacity(backends.len());
    for (url, weight) in backends {
        let refuse = |reason| StaticRefused {
            url: url.clone(),
            reason,
        };
        let w = Wanted::check(url, *weight).map_err(refuse)?;
        if !seen.insert(w.id.clone()) {
            return Err(refuse(ProtocolError::IdInUse(w.id)));
        }
        wanted.push(w);
    }
    Ok(wanted)
}

impl Registry {
    /// Makes `backends` (URL, weight) the static backends, all or nothing.
    pub(crate) fn replace_static(
        &self,
        backends: &[(String, u32)],
    ) -> Result<StaticChanges, StaticRefused> {
        let wanted = check(backends)?;
        let now = clock::now_ms();
        let mut inner = self.lock();
        prune(&mut inner, now);
        refuse_conflicts(&inner, &wanted, self.max_backends)?;
        let mut changes = StaticChanges::default();
        let keep: HashSet<&str> = wanted.iter().map(|w| w.id.as_str()).collect();
        let departed: Vec<Arc<str>> = inner
            .members
            .iter()
            .filter(|(id, m)| m.backend.source == Source::Static && !keep.contains(&***id))
            .map(|(id, _)| Arc::clone(id))
            .collect();
        for id in departed {
            if let Some(m) = inner.members.remove(&id) {
                tracing::info!(id = &*id, addr = %m.backend.addr, "static backend removed by a reload");
                changes
                    .removed
                    .push((id.to_string(), m.backend.primary_url().to_string()));
                retain(&mut inner, m, now);
            }
        }
        for w in wanted {
            apply_one(&mut inner, w, now, &mut changes);
        }
        if !changes.is_empty() {
            self.publish(&inner);
        }
        Ok(changes)
    }
}

/// A wanted id held by a registered backend, or more members than allowed.
fn refuse_conflicts(
    inner: &Inner,
    wanted: &[Wanted],
    max_backends: usize,
) -> Result<(), StaticRefused> {
    for w in wanted {
        if let Some(m) = inner.members.get(w.id.as_str()) {
            if m.backend.source != Source::Static {
                return Err(StaticRefused {
                    url: w.id.clone(),
                    reason: ProtocolError::IdInUse(w.id.clone()),
                });
            }
        }
    }
    let registered = inner
        .members
        .values()
        .filter(|m| m.backend.source != Source::Static)
        .count();
    if registered + wanted.len() > max_backends {
        return Err(StaticRefused {
            url: wanted.last().map(|w| w.id.clone()).unwrap_or_default(),
            reason: ProtocolError::TooManyBackends(max_backends),
        });
    }
    Ok(())
}

/// Adds `w`, or keeps the member it names (a new weight: same counters).
fn apply_one(inner: &mut Inner, w: Wanted, now: u64, changes: &mut StaticChanges) {
    let existing = inner
        .members
        .get(w.id.as_str())
        .map(|m| Arc::clone(&m.backend));
    let backend = match existing {
        Some(old) if old.weight == w.weight && old.addr == w.addr => {
            changes.unchanged += 1;
            return;
        }
        Some(old) => {
            tracing::info!(id = %w.id, from = old.weight, to = w.weight, "static backend reweighted by a reload");
            changes
                .reweighted
                .push((w.id.clone(), old.weight, w.weight));
            w.into_backend(Arc::clone(&old.stats), old.since_unix_ms)
        }
        None => {
            tracing::info!(id = %w.id, addr = %w.addr, weight = w.weight, "static backend added by a reload");
            changes.added.push((w.id.clone(), w.resolved.clone()));
            let stats = take_stats(inner, &w.id);
            w.into_backend(stats, clock::unix_ms())
        }
    };
    inner
        .members
        .insert(Arc::clone(&backend.id), member(backend, now));
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;
    use crate::pool::SharedPool;

    fn urls(list: &[(&str, u32)]) -> Vec<(String, u32)> {
        list.iter().map(|(u, w)| (u.to_string(), *w)).collect()
    }

    fn registry(list: &[(&str, u32)]) -> Registry {
        let r = Registry::new(Arc::new(SharedPool::new()));
        for (u, w) in list {
            r.add_static(u, *w).expect("static backend");
        }
        r
    }

    const A: &str = "http://127.0.0.1:9001";
    const B: &str = "http://127.0.0.1:9002";
    const C: &str = "http://127.0.0.1:9003";

    #[test]
    fn adds_removes_and_reweights_keeping_counters() {
        let r = registry(&[(A, 1), (B, 1)]);
        let a_stats = r.stats(A).expect("a");
        a_stats.requests_total.store(7, Relaxed);
        let before = r.pool.generation();
        let changes = r.replace_static(&urls(&[(A, 5), (C, 1)])).expect("applied");
        assert_eq!(changes.added, vec![(C.to_string(), C.to_string())]);
        assert_eq!(changes.removed, vec![(B.to_string(), B.to_string())]);
        assert_eq!(changes.reweighted, vec![(A.to_string(), 1, 5)]);
        assert_eq!(changes.unchanged, 0);
        assert_eq!(r.pool.generation(), before + 1, "one publication");
        let snap = r.pool.load();
        let ids: Vec<&str> = snap.backends.iter().map(|b| &*b.id).collect();
        assert_eq!(ids, vec![A, C]);
        let a = &snap.backends[0];
        assert_eq!(a.weight, 5);
        assert!(
            Arc::ptr_eq(&a.stats, &a_stats),
            "the kept backend keeps its counters"
        );
        assert_eq!(a.stats.requests_total.load(Relaxed), 7);
    }

    #[test]
    fn the_same_set_changes_nothing_and_publishes_nothing() {
        let r = registry(&[(A, 2), (B, 1)]);
        let before = r.pool.generation();
        let changes = r.replace_static(&urls(&[(B, 1), (A, 2)])).expect("applied");
        assert!(changes.is_empty());
        assert_eq!(changes.unchanged, 2);
        assert_eq!(r.pool.generation(), before);
    }

    #[test]
    fn a_bad_url_refuses_the_whole_set() {
        let r = registry(&[(A, 1)]);
        let before = r.pool.generation();
        for bad in [
            urls(&[(C, 1), ("http://no-such-host.invalid:80", 1)]),
            urls(&[(C, 1), ("ftp://127.0.0.1:1", 1)]),
            urls(&[(C, 1), (C, 2)]),
            urls(&[(C, 0)]),
        ] {
            let refused = r.replace_static(&bad).expect_err("refused");
            assert!(!refused.to_string().is_empty());
        }
        assert_eq!(r.pool.generation(), before, "nothing published");
        assert_eq!(r.list().len(), 1);
        assert_eq!(r.list()[0].id, A);
    }

    #[test]
    fn registered_backends_are_untouched_and_their_ids_refused() {
        let r = registry(&[(A, 1)]);
        let addr = "127.0.0.1:9100".parse().expect("addr");
        r.register(
            "reg-1",
            vec![("http://127.0.0.1:9100".into(), addr)],
            1,
            None,
        );
        let changes = r.replace_static(&urls(&[(B, 1)])).expect("applied");
        assert_eq!(changes.removed.len(), 1);
        let ids: Vec<String> = r.list().into_iter().map(|b| b.id).collect();
        assert_eq!(ids, vec![B.to_string(), "reg-1".to_string()]);
        assert!(r.replace_static(&urls(&[("reg-1", 1)])).is_err());
    }

    #[test]
    fn a_removed_backend_gets_its_counters_back_when_it_returns() {
        let r = registry(&[(A, 1), (B, 1)]);
        r.stats(B).expect("b").requests_total.store(3, Relaxed);
        r.replace_static(&urls(&[(A, 1)])).expect("removed");
        r.replace_static(&urls(&[(A, 1), (B, 1)])).expect("back");
        assert_eq!(r.stats(B).expect("b").requests_total.load(Relaxed), 3);
    }

    #[test]
    fn more_than_the_table_holds_is_refused() {
        let r = Registry::new(Arc::new(SharedPool::new())).with_max_backends(2);
        r.add_static(A, 1).expect("a");
        assert!(r.replace_static(&urls(&[(A, 1), (B, 1), (C, 1)])).is_err());
        assert_eq!(r.list().len(), 1);
    }
}
