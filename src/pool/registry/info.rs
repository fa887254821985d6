//! What the admin API shows of one backend: its state and counters, read
//! from the shared atomics at the moment of the request.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;

use crate::pool::{Backend, Health, Source};

/// A backend's state for the admin API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum BackendState {
    Up,
    Draining,
    /// Ejected by passive health until its ejection ends, or failing its
    /// active health checks.
    Down,
}

/// One backend as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct BackendInfo {
    pub id: String,
    pub addr: SocketAddr,
    pub bindings: Vec<String>,
    pub source: Source,
    pub state: BackendState,
    pub active: u32,
    pub reported_load: u32,
    pub weight: u32,
    pub since_unix_ms: u64,
    pub requests_total: u64,
    pub failures_total: u64,
    /// Active health checks' verdict (`unchecked` when off or registered).
    pub health: Health,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

pub(crate) fn info(b: &Backend, now: u64) -> BackendInfo {
    let s = &b.stats;
    let state = if s.draining.load(Relaxed) {
        BackendState::Draining
    } else if !b.is_available(now) {
        BackendState::Down
    } else {
        BackendState::Up
    };
    BackendInfo {
        id: b.id.to_string(),
        addr: b.addr,
        bindings: b.bindings.iter().map(|u| u.to_string()).collect(),
        source: b.source,
        state,
        active: s.active.load(Relaxed),
        reported_load: s.reported_load.load(Relaxed),
        weight: b.weight,
        since_unix_ms: b.since_unix_ms,
        requests_total: s.requests_total.load(Relaxed),
        failures_total: s.failures_total.load(Relaxed),
        health: Health::of(s),
        metadata: b.metadata.clone(),
    }
}
