//! Live events and the pool events the hooks see.
//!
//! [`emit_event`] is the one way the proxy (and the admin API, the registry
//! thread, the start) reports a live event: built once, only when someone
//! listens (a reader on the bus, or hooks), and handed to the hooks'
//! `on_event` and to the bus. Message metadata goes to the hooks only when
//! `Hooks::message_events` says so, and to the readers that asked for it.
//!
//! The pool events (`on_backend_up`, `on_backend_ready`, `on_backend_down`,
//! and the `backend_*` live events) are reported on the thread where the
//! change happens: the worker running a control channel, the registry
//! thread for expiry, the admin API's thread for its drain and resume, the
//! starting thread for static backends. Nothing here builds anything when
//! nobody listens.

use std::sync::Arc;

use super::env::Env;
use crate::hooks::{BackendEvent, Hooks};
use crate::hub::{Event, EventBus, EventKind};
use crate::pool::{SharedPool, Source};

/// Whether anyone listens to lifecycle events (build them only then).
#[inline]
pub(crate) fn wants(env: &Env) -> bool {
    listening(&env.hooks, &env.events)
}

/// Whether anyone listens to message metadata (build it only then).
// Used by the session relays' message events (on another branch).
#[inline]
pub(crate) fn wants_messages(env: &Env) -> bool {
    env.events.wants_messages() || env.hooks.as_ref().is_some_and(|h| h.message_events())
}

/// [`wants`] from the parts (where there is no `Env`).
#[inline]
pub(crate) fn listening(hooks: &Option<Arc<dyn Hooks>>, bus: &EventBus) -> bool {
    hooks.is_some() || bus.active()
}

/// Reports the event `make` builds, stamped now, to the hooks
/// (`on_event`) and to the bus's readers; `make` is not called when nobody
/// listens.
pub(crate) fn emit_event(
    hooks: &Option<Arc<dyn Hooks>>,
    bus: &EventBus,
    make: impl FnOnce() -> EventKind,
) {
    if !listening(hooks, bus) {
        return;
    }
    let event = Event::now(make());
    if let Some(h) = hooks {
        if !event.is_message() || h.message_events() {
            h.on_event(&event);
        }
    }
    bus.publish(event);
}

/// Which pool event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PoolEvent {
    /// A backend joined the pool (`on_backend_up`, `backend_registered`).
    Up,
    /// A backend is ready for traffic (`on_backend_ready`, `backend_ready`).
    Ready,
    /// A backend left the pool (`on_backend_down`, `backend_left`).
    Down,
    /// A backend started draining (`on_backend_down`, `backend_drained`).
    Drained,
}

/// Reports `event` about backend `id` at `url`.
pub(crate) fn emit(
    hooks: &Option<Arc<dyn Hooks>>,
    bus: &EventBus,
    event: PoolEvent,
    id: &str,
    url: &str,
    registered: bool,
) {
    if !listening(hooks, bus) {
        return;
    }
    if let Some(hooks) = hooks {
        let backend = BackendEvent {
            id: id.to_string(),
            url: url.to_string(),
            registered,
        };
        call(&**hooks, event, &backend);
    }
    emit_event(hooks, bus, || live(event, id, url, registered));
}

/// Reports `event` about backend `id` as the pool's current snapshot has
/// it (nothing when it is not in the pool).
pub(crate) fn emit_member(
    hooks: &Option<Arc<dyn Hooks>>,
    bus: &EventBus,
    pool: &SharedPool,
    event: PoolEvent,
    id: &str,
) {
    if !listening(hooks, bus) {
        return;
    }
    let snap = pool.load();
    let Some(b) = snap.backends.iter().find(|b| &*b.id == id) else {
        return;
    };
    let registered = b.source == Source::Registered;
    emit(hooks, bus, event, id, b.primary_url(), registered);
}

/// `Up` then `Ready` for every backend in the pool (the static ones, at
/// start).
pub(crate) fn emit_all_up(hooks: &Option<Arc<dyn Hooks>>, bus: &EventBus, pool: &SharedPool) {
    if !listening(hooks, bus) {
        return;
    }
    for b in pool.load().backends.iter() {
        let (id, url) = (&*b.id, b.primary_url());
        let registered = b.source == Source::Registered;
        emit(hooks, bus, PoolEvent::Up, id, url, registered);
        emit(hooks, bus, PoolEvent::Ready, id, url, registered);
    }
}

/// The event after a drain switch, from the state before it: `Drained`
/// when draining starts, `Ready` when it ends, nothing when it did not
/// change.
pub(crate) fn drain_switch(was_draining: bool, draining: bool) -> Option<PoolEvent> {
    match (was_draining, draining) {
        (false, true) => Some(PoolEvent::Drained),
        (true, false) => Some(PoolEvent::Ready),
        _ => None,
    }
}

fn call(hooks: &dyn Hooks, event: PoolEvent, backend: &BackendEvent) {
    match event {
        PoolEvent::Up => hooks.on_backend_up(backend),
        PoolEvent::Ready => hooks.on_backend_ready(backend),
        PoolEvent::Down | PoolEvent::Drained => hooks.on_backend_down(backend),
    }
}

/// The live event for a pool event.
fn live(event: PoolEvent, id: &str, url: &str, registered: bool) -> EventKind {
    let (id, url) = (id.to_string(), url.to_string());
    match event {
        PoolEvent::Up => EventKind::BackendRegistered {
            id,
            url,
            registered,
        },
        PoolEvent::Ready => EventKind::BackendReady { id, url },
        PoolEvent::Down => EventKind::BackendLeft { id, url },
        PoolEvent::Drained => EventKind::BackendDrained { id, url },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::hub::events::{Interest, Way};

    /// Hooks that note every call by name.
    #[derive(Default)]
    struct Seen {
        calls: Mutex<Vec<String>>,
        messages: bool,
    }

    impl Seen {
        fn note(&self, what: &str) {
            let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            calls.push(what.to_string());
        }
        fn calls(&self) -> Vec<String> {
            self.calls.lock().map(|v| v.clone()).unwrap_or_default()
        }
    }

    impl Hooks for Arc<Seen> {
        fn on_event(&self, event: &Event) {
            self.note(event.kind.name());
        }
        fn message_events(&self) -> bool {
            self.messages
        }
        fn on_backend_up(&self, _: &BackendEvent) {
            self.note("up");
        }
        fn on_backend_ready(&self, _: &BackendEvent) {
            self.note("ready");
        }
        fn on_backend_down(&self, _: &BackendEvent) {
            self.note("down");
        }
    }

    fn hooks(seen: &Arc<Seen>) -> Option<Arc<dyn Hooks>> {
        Some(Arc::new(seen.clone()))
    }

    fn ready() -> EventKind {
        EventKind::BackendReady {
            id: "b".into(),
            url: "http://b".into(),
        }
    }

    fn message() -> EventKind {
        EventKind::Message {
            id: "c".into(),
            backend: "b".into(),
            direction: Way::In,
            opcode: "text",
            length: 1,
            fragmented: false,
        }
    }

    #[test]
    fn nothing_is_built_without_a_listener() {
        let bus = Arc::new(EventBus::new());
        emit_event(&None, &bus, || panic!("built for nobody"));
    }

    #[test]
    fn hooks_and_readers_get_the_event_built_once() {
        let bus = Arc::new(EventBus::new());
        let seen = Arc::new(Seen::default());
        let hooks = hooks(&seen);
        let mut built = 0;
        emit_event(&hooks, &bus, || {
            built += 1;
            ready()
        });
        let reader = bus.subscribe(Interest::default());
        emit_event(&hooks, &bus, ready);
        // Message metadata: not for hooks that did not ask, nor for a
        // reader that did not.
        emit_event(&hooks, &bus, message);
        assert_eq!(built, 1);
        assert_eq!(seen.calls(), ["backend_ready", "backend_ready"]);
        assert!(reader.try_next().is_some_and(|e| !e.is_message()));
        assert!(reader.try_next().is_none());
    }

    #[test]
    fn hooks_that_ask_for_messages_get_them() {
        let bus = Arc::new(EventBus::new());
        let seen = Arc::new(Seen {
            messages: true,
            ..Seen::default()
        });
        emit_event(&hooks(&seen), &bus, message);
        assert_eq!(seen.calls(), ["message"]);
    }

    #[test]
    fn pool_events_reach_the_old_hooks_and_the_live_events() {
        let bus = Arc::new(EventBus::new());
        let reader = bus.subscribe(Interest::default());
        let seen = Arc::new(Seen::default());
        let hooks = hooks(&seen);
        for event in [
            PoolEvent::Up,
            PoolEvent::Ready,
            PoolEvent::Drained,
            PoolEvent::Down,
        ] {
            emit(&hooks, &bus, event, "b", "http://b", true);
        }
        assert_eq!(
            seen.calls(),
            [
                "up",
                "backend_registered",
                "ready",
                "backend_ready",
                "down",
                "backend_drained",
                "down",
                "backend_left"
            ]
        );
        let first = reader.try_next().map(|e| e.kind.clone());
        assert_eq!(
            first,
            Some(EventKind::BackendRegistered {
                id: "b".into(),
                url: "http://b".into(),
                registered: true
            })
        );
        // Without hooks the bus alone still gets them.
        emit(&None, &bus, PoolEvent::Down, "b", "http://b", true);
        let names: Vec<_> = std::iter::from_fn(|| reader.try_next())
            .map(|e| e.kind.name())
            .collect();
        assert_eq!(
            names,
            [
                "backend_ready",
                "backend_drained",
                "backend_left",
                "backend_left"
            ]
        );
    }

    #[test]
    fn a_drain_switch_says_drained_or_ready_once() {
        assert_eq!(drain_switch(false, true), Some(PoolEvent::Drained));
        assert_eq!(drain_switch(true, false), Some(PoolEvent::Ready));
        assert_eq!(drain_switch(true, true), None);
        assert_eq!(drain_switch(false, false), None);
    }
}
