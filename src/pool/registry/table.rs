//! The registry: owns pool membership (static and registered backends),
//! keeps each backend's counters across re-registrations, and publishes a new
//! pool snapshot on every membership change. A mutex guards it; it is never on
//! the pick path.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};

use super::binding::tls_host;
use super::info::info;
pub(crate) use super::info::BackendInfo;
use super::protocol::{validate_id, validate_weight, ProtocolError, MAX_BINDINGS};
use crate::pool::{clock, Backend, BackendStats, SharedPool, Source};

/// How long counters of a backend that left are kept for its return.
pub(crate) const STATS_RETENTION_MS: u64 = 10 * 60 * 1000;
/// Most departed backends whose counters are kept.
pub(crate) const MAX_RETAINED_STATS: usize = 4096;

/// What `register` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RegisterOutcome {
    /// A new member.
    New,
    /// The id was already registered: replaced, same counters; a drain it
    /// was in ends (`was_draining` says whether it was in one).
    Reregistered { was_draining: bool },
    /// Refused; the error says why (send it back as an `error` message).
    Rejected(ProtocolError),
}

struct Member {
    backend: Arc<Backend>,
    last_seen_ms: u64,
}

struct Retained {
    stats: Arc<BackendStats>,
    gone_since_ms: u64,
}

#[derive(Default)]
struct Inner {
    members: BTreeMap<Arc<str>, Member>,
    retained: HashMap<Arc<str>, Retained>,
}

/// Pool membership. Every change publishes a new snapshot to the shared pool.
pub(crate) struct Registry {
    pool: Arc<SharedPool>,
    inner: Mutex<Inner>,
    /// Most members at once, static and registered (`--max-backends`).
    max_backends: usize,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("generation", &self.pool.generation())
            .finish_non_exhaustive()
    }
}

impl Registry {
    pub(crate) fn new(pool: Arc<SharedPool>) -> Self {
        Registry {
            pool,
            inner: Mutex::new(Inner::default()),
            max_backends: usize::MAX,
        }
    }

    /// The same, holding at most `max` members (static and registered);
    /// a new member beyond it is refused with `TooManyBackends`.
    pub(crate) fn with_max_backends(mut self, max: usize) -> Self {
        self.max_backends = max;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publish the members (in id order). Called with the lock held so
    /// concurrent changes publish in the order they were made.
    fn publish(&self, inner: &Inner) -> u64 {
        let backends = inner
            .members
            .values()
            .map(|m| Arc::clone(&m.backend))
            .collect();
        self.pool.publish(backends)
    }

    /// Add a static backend: `http://HOST:PORT` or `ws://HOST:PORT` (TLS:
    /// `https://`, `wss://`), HOST an IP literal or `localhost`. Its id is the URL as given.
    pub(crate) fn add_static(&self, url: &str, weight: u32) -> Result<(), ProtocolError> {
        let wanted = statics::Wanted::check(url, weight)?;
        let now = clock::now_ms();
        let mut inner = self.lock();
        prune(&mut inner, now);
        if inner.members.contains_key(wanted.id.as_str()) {
            return Err(ProtocolError::IdInUse(wanted.id));
        }
        if inner.members.len() >= self.max_backends {
            return Err(ProtocolError::TooManyBackends(self.max_backends));
        }
        let stats = take_stats(&mut inner, &wanted.id);
        let backend = wanted.into_backend(stats, clock::unix_ms());
        let tls = backend.tls_name.is_some();
        let (id, addr, weight) = (&*backend.id, backend.addr, backend.weight);
        tracing::info!(id, %addr, weight, tls, "static backend added");
        inner
            .members
            .insert(Arc::clone(&backend.id), member(backend, now));
        self.publish(&inner);
        Ok(())
    }

    /// Register (or re-register) a backend with resolved bindings (the first
    /// is where the proxy connects). Counters survive re-registration; a
    /// re-registered backend is no longer draining.
    pub(crate) fn register(
        &self,
        id: &str,
        bindings: Vec<(String, SocketAddr)>,
        weight: u32,
        metadata: Option<serde_json::Value>,
    ) -> RegisterOutcome {
        self.register_at(id, bindings, weight, metadata, clock::now_ms())
    }

    pub(crate) fn register_at(
        &self,
        id: &str,
        bindings: Vec<(String, SocketAddr)>,
        weight: u32,
        metadata: Option<serde_json::Value>,
        now: u64,
    ) -> RegisterOutcome {
        if let Err(e) = validate_id(id).and_then(|()| validate_weight(u64::from(weight))) {
            return RegisterOutcome::Rejected(e);
        }
        let Some(&(_, addr)) = bindings.first() else {
            return RegisterOutcome::Rejected(ProtocolError::EmptyBindings);
        };
        if bindings.len() > MAX_BINDINGS {
            return RegisterOutcome::Rejected(ProtocolError::TooManyBindings(bindings.len()));
        }
        let mut inner = self.lock();
        prune(&mut inner, now);
        let outcome = match inner.members.get(id) {
            Some(m) if m.backend.source == Source::Static => {
                return RegisterOutcome::Rejected(ProtocolError::IdInUse(id.to_string()));
            }
            Some(m) => RegisterOutcome::Reregistered {
                was_draining: m.backend.stats.draining.load(Relaxed),
            },
            // Only a new id takes a slot; re-registering never fails on it.
            None if inner.members.len() >= self.max_backends => {
                tracing::warn!(id, max = self.max_backends, "backend refused: table full");
                return RegisterOutcome::Rejected(ProtocolError::TooManyBackends(
                    self.max_backends,
                ));
            }
            None => RegisterOutcome::New,
        };
        tracing::info!(id, %addr, weight, reregistration = matches!(outcome, RegisterOutcome::Reregistered { .. }), "backend connect");
        let stats = match inner.members.get(id) {
            Some(m) => Arc::clone(&m.backend.stats),
            None => take_stats(&mut inner, id),
        };
        stats.set_draining(false);
        let backend = Backend {
            id: Arc::from(id),
            addr,
            bindings: bindings
                .iter()
                .map(|(u, _)| Arc::from(u.as_str()))
                .collect(),
            weight,
            source: Source::Registered,
            stats,
            since_unix_ms: clock::unix_ms(),
            metadata,
            // Checked against the address it registered (resolved): the
            // certificate needs that IP in its SANs.
            tls_name: bindings
                .first()
                .and_then(|(url, _)| tls_host(url))
                .map(Arc::from),
        };
        inner
            .members
            .insert(Arc::clone(&backend.id), member(backend, now));
        let generation = self.publish(&inner);
        tracing::info!(id, %addr, generation, "backend ready");
        outcome
    }

    /// Remove a backend (registered or static). False if unknown.
    pub(crate) fn deregister(&self, id: &str) -> bool {
        self.deregister_at(id, clock::now_ms())
    }

    pub(crate) fn deregister_at(&self, id: &str, now: u64) -> bool {
        let mut inner = self.lock();
        let Some(m) = inner.members.remove(id) else {
            return false;
        };
        tracing::info!(id, addr = %m.backend.addr, "backend disconnect");
        retain(&mut inner, m, now);
        self.publish(&inner);
        true
    }

    /// A heartbeat: `load` is every connection the backend has, so what came
    /// through us is subtracted. False if the id is unknown.
    pub(crate) fn heartbeat(&self, id: &str, load: u32) -> bool {
        self.heartbeat_at(id, load, clock::now_ms())
    }

    pub(crate) fn heartbeat_at(&self, id: &str, load: u32, now: u64) -> bool {
        let mut inner = self.lock();
        let Some(m) = inner.members.get_mut(id) else {
            return false;
        };
        let stats = &m.backend.stats;
        let ours = stats.active.load(Relaxed);
        stats.set_reported_load(load.saturating_sub(ours));
        m.last_seen_ms = now;
        true
    }

    /// Start or stop draining. False if the id is unknown.
    #[cfg(test)]
    pub(crate) fn set_draining(&self, id: &str, draining: bool) -> bool {
        self.switch_draining(id, draining).is_some()
    }

    /// Start or stop draining; the drain state it had before (`None`: the
    /// id is unknown), read and changed under the lock, so that of two
    /// callers only one sees the change.
    pub(crate) fn switch_draining(&self, id: &str, draining: bool) -> Option<bool> {
        let inner = self.lock();
        let m = inner.members.get(id)?;
        let before = m.backend.stats.set_draining(draining);
        tracing::info!(id, draining, "backend drain state");
        self.publish(&inner);
        Some(before)
    }

    /// Remove registered backends not heard from for more than
    /// `heartbeat_timeout_ms`; static ones never expire. Returns their ids.
    #[cfg(test)]
    pub(crate) fn expire(&self, now_ms: u64, heartbeat_timeout_ms: u64) -> Vec<String> {
        self.expire_backends(now_ms, heartbeat_timeout_ms)
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    /// [`Registry::expire`], returning each removed backend's id and
    /// primary URL.
    pub(crate) fn expire_backends(
        &self,
        now_ms: u64,
        heartbeat_timeout_ms: u64,
    ) -> Vec<(String, String)> {
        let mut inner = self.lock();
        let stale: Vec<Arc<str>> = inner
            .members
            .iter()
            .filter(|(_, m)| {
                m.backend.source == Source::Registered
                    && now_ms.saturating_sub(m.last_seen_ms) > heartbeat_timeout_ms
            })
            .map(|(id, _)| Arc::clone(id))
            .collect();
        let mut gone = Vec::with_capacity(stale.len());
        for id in &stale {
            if let Some(m) = inner.members.remove(id) {
                tracing::warn!(id = &**id, addr = %m.backend.addr, "backend disconnect (heartbeat timeout)");
                gone.push((id.to_string(), m.backend.primary_url().to_string()));
                retain(&mut inner, m, now_ms);
            }
        }
        prune(&mut inner, now_ms);
        if !stale.is_empty() {
            self.publish(&inner);
        }
        gone
    }

    /// Counters of a member, or of a backend that left recently.
    #[cfg(test)]
    pub(crate) fn stats(&self, id: &str) -> Option<Arc<BackendStats>> {
        let inner = self.lock();
        inner
            .members
            .get(id)
            .map(|m| Arc::clone(&m.backend.stats))
            .or_else(|| inner.retained.get(id).map(|r| Arc::clone(&r.stats)))
    }

    /// Number of members.
    pub(crate) fn len(&self) -> usize {
        self.lock().members.len()
    }

    /// Every member, in id order, for the admin API.
    pub(crate) fn list(&self) -> Vec<BackendInfo> {
        let now = clock::now_ms();
        let inner = self.lock();
        inner
            .members
            .values()
            .map(|m| info(&m.backend, now))
            .collect()
    }
}

fn member(backend: Backend, now: u64) -> Member {
    Member {
        backend: Arc::new(backend),
        last_seen_ms: now,
    }
}

/// The retained counters for `id`, or fresh ones.
fn take_stats(inner: &mut Inner, id: &str) -> Arc<BackendStats> {
    inner
        .retained
        .remove(id)
        .map(|r| r.stats)
        .unwrap_or_default()
}

/// Keep a departed member's counters. Its in-flight guards still hold the
/// same Arc, so `active` keeps falling back to zero while it is away.
fn retain(inner: &mut Inner, m: Member, now: u64) {
    let stats = Arc::clone(&m.backend.stats);
    stats.set_reported_load(0);
    inner.retained.insert(
        Arc::clone(&m.backend.id),
        Retained {
            stats,
            gone_since_ms: now,
        },
    );
    prune(inner, now);
}

/// Forget counters gone too long, and the oldest beyond the cap.
fn prune(inner: &mut Inner, now: u64) {
    inner
        .retained
        .retain(|_, r| now.saturating_sub(r.gone_since_ms) <= STATS_RETENTION_MS);
    while inner.retained.len() > MAX_RETAINED_STATS {
        let oldest = inner
            .retained
            .iter()
            .min_by_key(|(_, r)| r.gone_since_ms)
            .map(|(id, _)| Arc::clone(id));
        match oldest {
            Some(id) => inner.retained.remove(&id),
            None => break,
        };
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;

#[path = "table_statics.rs"]
mod statics;
pub(crate) use statics::{StaticChanges, Wanted};
