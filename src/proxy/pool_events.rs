//! The pool events the hooks see (`on_backend_up`, `on_backend_ready`,
//! `on_backend_down`), called on the thread where the change happens: the
//! worker running a control channel, the registry thread for expiry, the
//! admin API's thread for its drain and resume, the starting thread for
//! static backends. Nothing here runs for a balancer without hooks.

use std::sync::Arc;

use crate::hooks::{BackendEvent, Hooks};
use crate::pool::{SharedPool, Source};

/// Which event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PoolEvent {
    /// A backend joined the pool.
    Up,
    /// A backend is ready for traffic.
    Ready,
    /// A backend left the pool or started draining.
    Down,
}

/// Calls the hook for `event` about backend `id` at `url`.
pub(crate) fn emit(
    hooks: &Option<Arc<dyn Hooks>>,
    event: PoolEvent,
    id: &str,
    url: &str,
    registered: bool,
) {
    let Some(hooks) = hooks else { return };
    let backend = BackendEvent {
        id: id.to_string(),
        url: url.to_string(),
        registered,
    };
    call(&**hooks, event, &backend);
}

/// Calls the hook for `event` about backend `id` as the pool's current
/// snapshot has it (nothing when it is not in the pool).
pub(crate) fn emit_member(
    hooks: &Option<Arc<dyn Hooks>>,
    pool: &SharedPool,
    event: PoolEvent,
    id: &str,
) {
    let Some(hooks) = hooks else { return };
    let snap = pool.load();
    let Some(b) = snap.backends.iter().find(|b| &*b.id == id) else {
        return;
    };
    let backend = BackendEvent {
        id: id.to_string(),
        url: b.primary_url().to_string(),
        registered: b.source == Source::Registered,
    };
    call(&**hooks, event, &backend);
}

/// `on_backend_up` then `on_backend_ready` for every backend in the pool
/// (the static ones, at start).
pub(crate) fn emit_all_up(hooks: &Option<Arc<dyn Hooks>>, pool: &SharedPool) {
    let Some(hooks) = hooks else { return };
    for b in pool.load().backends.iter() {
        let backend = BackendEvent {
            id: b.id.to_string(),
            url: b.primary_url().to_string(),
            registered: b.source == Source::Registered,
        };
        hooks.on_backend_up(&backend);
        hooks.on_backend_ready(&backend);
    }
}

/// The event after a drain switch, from the state before it: `Down` when
/// draining starts, `Ready` when it ends, nothing when it did not change.
pub(crate) fn drain_switch(was_draining: bool, draining: bool) -> Option<PoolEvent> {
    match (was_draining, draining) {
        (false, true) => Some(PoolEvent::Down),
        (true, false) => Some(PoolEvent::Ready),
        _ => None,
    }
}

fn call(hooks: &dyn Hooks, event: PoolEvent, backend: &BackendEvent) {
    match event {
        PoolEvent::Up => hooks.on_backend_up(backend),
        PoolEvent::Ready => hooks.on_backend_ready(backend),
        PoolEvent::Down => hooks.on_backend_down(backend),
    }
}
