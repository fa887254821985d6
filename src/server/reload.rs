//! Live reload: a new configuration replaces the running one without a
//! restart and without closing a connection. Certificates are read again
//! and new TLS handshakes use them; the static backends are replaced (kept
//! ones keep their counters, departed ones take no new picks while their
//! sessions go on); the algorithm, stickiness, limits and timeouts reach
//! every worker through its copy of the configuration. Settings only a
//! restart can change keep their running values and are named in the
//! summary. A configuration that cannot be applied whole is refused and
//! nothing changes.

#[path = "reload_diff.rs"]
mod diff;

use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::Shared;
use crate::config::ServeConfig;
use crate::pool::registry::table::StaticChanges;
use crate::proxy::pool_events::{emit, PoolEvent};

/// Reads the configuration again (a file, the command line) for a reload
/// started by `SIGHUP` or `POST /api/reload`; the error says why it could
/// not.
pub type ReloadSource = Arc<dyn Fn() -> Result<ServeConfig, String> + Send + Sync>;

/// Why a reload was refused. Nothing changed: the running configuration
/// and every connection are as they were.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// No reload source was given (see `Handle::set_reload_source`).
    #[error("no reload source: this balancer cannot read its configuration again")]
    NoSource,
    /// The reload source could not produce a configuration.
    #[error("cannot read the configuration: {0}")]
    Source(String),
    /// The new configuration is invalid (the message names the setting).
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// A static backend was refused.
    #[error("{0}")]
    Backend(String),
}

/// What a reload changed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReloadSummary {
    /// The configuration's generation after the reload (0 at start, one
    /// more for each applied reload).
    pub generation: u64,
    /// Settings that changed and now apply, by flag name (`backends` is
    /// detailed in [`ReloadSummary::backends`]).
    pub changed: Vec<String>,
    /// What happened to the static backends.
    pub backends: BackendChanges,
    /// Certificate files read afresh (default and SNI ones; 0 without TLS
    /// listeners): new TLS handshakes use them.
    pub certificates: usize,
    /// Settings that changed but only apply after a restart or an upgrade,
    /// by flag name; their running values are kept.
    pub needs_restart: Vec<String>,
}

/// What a reload did to the static backends (registered ones are not
/// touched).
#[derive(Clone, Debug, Default, Serialize)]
pub struct BackendChanges {
    /// Ids (URLs) of the backends that joined.
    pub added: Vec<String>,
    /// Ids of the backends that left: no new picks; their sessions and
    /// requests in flight go on.
    pub removed: Vec<String>,
    /// Kept backends whose weight changed (their counters are kept).
    pub reweighted: Vec<Reweighted>,
    /// Kept backends that did not change.
    pub unchanged: usize,
}

/// A kept backend's weight change.
#[derive(Clone, Debug, Serialize)]
pub struct Reweighted {
    /// Its id.
    pub id: String,
    /// The weight before.
    pub from: u32,
    /// The weight now.
    pub to: u32,
}

/// Reload state: one reload at a time, and the source, when given.
#[derive(Default)]
pub(crate) struct Reloads {
    running: Mutex<()>,
    source: Mutex<Option<ReloadSource>>,
}

impl Reloads {
    /// Keeps `source` for reloads that read the configuration again.
    pub(crate) fn set_source(&self, source: ReloadSource) {
        *self.source.lock().unwrap_or_else(|e| e.into_inner()) = Some(source);
    }

    fn source(&self) -> Option<ReloadSource> {
        self.source
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Reads the configuration through the reload source and applies it.
pub(crate) fn reload_from_source(shared: &Shared) -> Result<ReloadSummary, ReloadError> {
    let source = shared.reloads.source().ok_or(ReloadError::NoSource)?;
    let cfg = source().map_err(|e| refused(ReloadError::Source(e)))?;
    reload(shared, cfg)
}

/// Applies `new` whole, or refuses it and changes nothing. Reads
/// certificate files: call it off the workers.
pub(crate) fn reload(shared: &Shared, new: ServeConfig) -> Result<ReloadSummary, ReloadError> {
    let _one_at_a_time = shared
        .reloads
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let old = shared.live.load();
    let mut new = new;
    let needs_restart = diff::keep_restart_only(&old, &mut new);
    new.validate()
        .map_err(|e| refused(ReloadError::Invalid(e)))?;
    // Everything that can fail comes before anything changes.
    let tls = match (&new.tls, new.tls_listen.is_empty()) {
        (Some(settings), false) => Some(fresh_tls(settings, &shared.live_tls.load())?),
        _ => None,
    };
    let statics = shared
        .registry
        .replace_static(&new.backends)
        .map_err(|e| refused(ReloadError::Backend(e.to_string())))?;
    let certificates = new
        .tls
        .as_ref()
        .filter(|_| tls.is_some())
        .map_or(0, |t| usize::from(t.default_cert.is_some()) + t.sni.len());
    if let Some(tls) = tls {
        shared.live_tls.publish(Some(tls));
    }
    let changed: Vec<String> = diff::changed(&old, &new)
        .into_iter()
        .filter(|k| k != "backends")
        .map(|k| diff::flag_name(&k))
        .collect();
    let generation = shared.live.publish(new);
    announce(shared, &statics);
    let summary = ReloadSummary {
        generation,
        changed,
        backends: backend_changes(statics),
        certificates,
        needs_restart: needs_restart.iter().map(|k| diff::flag_name(k)).collect(),
    };
    log(&summary);
    Ok(summary)
}

/// The new TLS configuration, keeping the running one's session ticket
/// keys so that clients resume across the reload.
fn fresh_tls(
    settings: &crate::tls::TlsSettings,
    running: &Option<Arc<rustls::ServerConfig>>,
) -> Result<Arc<rustls::ServerConfig>, ReloadError> {
    let mut fresh = crate::tls::build_server_config(settings).map_err(|e| refused(e.into()))?;
    if let (Some(cfg), Some(running)) = (Arc::get_mut(&mut fresh), running) {
        cfg.ticketer = Arc::clone(&running.ticketer);
    }
    Ok(fresh)
}

/// Logs a refusal (the running configuration stays) and hands it back.
fn refused(e: ReloadError) -> ReloadError {
    tracing::error!(reason = %e, "reload refused: the running configuration stays");
    e
}

fn log(summary: &ReloadSummary) {
    if !summary.needs_restart.is_empty() {
        tracing::warn!(
            settings = ?summary.needs_restart,
            "reload: these settings change only with a restart or an upgrade; their running values stay"
        );
    }
    let b = &summary.backends;
    tracing::info!(
        generation = summary.generation,
        changed = ?summary.changed,
        added = ?b.added,
        removed = ?b.removed,
        reweighted = b.reweighted.len(),
        certificates = summary.certificates,
        "configuration reloaded"
    );
}

/// Tells hooks and event readers which static backends came and went.
fn announce(shared: &Shared, statics: &StaticChanges) {
    for (id, url) in &statics.removed {
        emit(
            &shared.hooks,
            &shared.events,
            PoolEvent::Down,
            id,
            url,
            false,
        );
    }
    for (id, url) in &statics.added {
        emit(&shared.hooks, &shared.events, PoolEvent::Up, id, url, false);
        emit(
            &shared.hooks,
            &shared.events,
            PoolEvent::Ready,
            id,
            url,
            false,
        );
    }
}

fn backend_changes(statics: StaticChanges) -> BackendChanges {
    BackendChanges {
        added: statics.added.into_iter().map(|(id, _)| id).collect(),
        removed: statics.removed.into_iter().map(|(id, _)| id).collect(),
        reweighted: statics
            .reweighted
            .into_iter()
            .map(|(id, from, to)| Reweighted { id, from, to })
            .collect(),
        unchanged: statics.unchanged,
    }
}
