//! The admin listener's connection cap (`--admin-max-connections`).
//!
//! Policy at the cap: the connection that has waited longest for a request
//! head is cut to make room; only when every connection is busy with a
//! request (authenticated, or whole when no token is set) is the newcomer
//! closed at once. Refusing newcomers instead would let anyone who opens
//! `cap` idle connections, and reopens them as they time out, lock the
//! operator out for as long as they like. With eviction, an idle holder
//! gets nothing: an operator's connection sends its request straight away,
//! is past its head (no longer evictable) within one round trip, and could
//! only be cut by `cap` newer idle connections arriving in between.
//!
//! An event stream (`GET /api/events`) is busy for as long as it lasts, so
//! streams may hold at most half the slots (at least one): however many an
//! operator opens, requests keep room of their own.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::rt::notify::LocalEvent;

struct Slot {
    /// `Some(order)` while waiting for a request head (lower is older);
    /// `None` while a request is being served.
    waiting: Option<u64>,
    /// An event stream holds this slot.
    streaming: bool,
    evict: Rc<LocalEvent>,
}

/// The admin connections open now (single-threaded: the admin runtime).
pub(super) struct Slots {
    max: usize,
    next: Cell<u64>,
    open: RefCell<BTreeMap<u64, Slot>>,
    /// Slots held by event streams now.
    streams: Cell<usize>,
}

impl Slots {
    pub(super) fn new(max: usize) -> Rc<Slots> {
        Rc::new(Slots {
            max: max.max(1),
            next: Cell::new(0),
            open: RefCell::new(BTreeMap::new()),
            streams: Cell::new(0),
        })
    }

    fn tick(&self) -> u64 {
        let n = self.next.get();
        self.next.set(n + 1);
        n
    }

    /// Room for a new connection (waiting for its first head), making it by
    /// evicting the longest-waiting one at the cap; `None`: every open
    /// connection is busy, close the newcomer.
    pub(super) fn admit(self: &Rc<Self>) -> Option<SlotGuard> {
        let mut open = self.open.borrow_mut();
        if open.len() >= self.max {
            let victim = open
                .iter()
                .filter_map(|(id, s)| s.waiting.map(|order| (order, *id)))
                .min()
                .map(|(_, id)| id)?;
            if let Some(slot) = open.remove(&victim) {
                self.forget(&slot);
                slot.evict.fire();
            }
        }
        let id = self.tick();
        let evict = Rc::new(LocalEvent::new());
        open.insert(
            id,
            Slot {
                waiting: Some(id),
                streaming: false,
                evict: evict.clone(),
            },
        );
        Some(SlotGuard {
            slots: self.clone(),
            id,
            evict,
        })
    }

    /// Event streams may hold at most this many slots.
    fn max_streams(&self) -> usize {
        (self.max / 2).max(1)
    }

    /// A slot leaves the table: its stream, if any, no longer counts.
    fn forget(&self, slot: &Slot) {
        if slot.streaming {
            self.streams.set(self.streams.get().saturating_sub(1));
        }
    }

    /// Connections open now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.open.borrow().len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One admitted connection; its slot is freed when dropped.
pub(super) struct SlotGuard {
    slots: Rc<Slots>,
    id: u64,
    evict: Rc<LocalEvent>,
}

impl SlotGuard {
    /// Waiting for a request head again (keep-alive): evictable, youngest.
    pub(super) fn waiting(&self) {
        let order = self.slots.tick();
        if let Some(s) = self.slots.open.borrow_mut().get_mut(&self.id) {
            s.waiting = Some(order);
        }
    }

    /// Serving a request that has earned its slot: not evictable.
    pub(super) fn busy(&self) {
        if let Some(s) = self.slots.open.borrow_mut().get_mut(&self.id) {
            s.waiting = None;
        }
    }

    /// Turns this connection into an event stream (busy until it ends):
    /// false when streams already hold as many slots as they may.
    pub(super) fn stream(&self) -> bool {
        let slots = &self.slots;
        let mut open = slots.open.borrow_mut();
        let Some(s) = open.get_mut(&self.id) else {
            return false;
        };
        if s.streaming {
            return true;
        }
        if slots.streams.get() >= slots.max_streams() {
            return false;
        }
        s.waiting = None;
        s.streaming = true;
        slots.streams.set(slots.streams.get() + 1);
        true
    }

    /// Fires when this connection is evicted to make room for a newer one.
    pub(super) fn evicted(&self) -> Rc<LocalEvent> {
        self.evict.clone()
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let removed = self.slots.open.borrow_mut().remove(&self.id);
        if let Some(slot) = removed {
            self.slots.forget(&slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Slots;

    #[test]
    fn at_the_cap_the_longest_waiting_is_evicted() {
        let slots = Slots::new(3);
        let a = slots.admit().expect("a");
        let b = slots.admit().expect("b");
        let c = slots.admit().expect("c");
        assert_eq!(slots.len(), 3);
        let d = slots.admit().expect("d evicts a");
        assert!(a.evicted().is_fired());
        assert!(!b.evicted().is_fired() && !c.evicted().is_fired());
        assert_eq!(slots.len(), 3);
        // b is busy with a request, c waits again (now younger than d).
        b.busy();
        c.waiting();
        let _e = slots.admit().expect("e evicts d");
        assert!(d.evicted().is_fired());
        assert!(!b.evicted().is_fired() && !c.evicted().is_fired());
        drop(a);
        assert_eq!(slots.len(), 3, "an evicted guard frees nothing twice");
    }

    #[test]
    fn newcomers_are_refused_when_every_slot_is_busy() {
        let slots = Slots::new(2);
        let a = slots.admit().expect("a");
        let b = slots.admit().expect("b");
        a.busy();
        b.busy();
        assert!(slots.admit().is_none());
        assert_eq!(slots.len(), 2);
        b.waiting();
        assert!(slots.admit().is_some());
        assert!(b.evicted().is_fired());
    }

    #[test]
    fn streams_hold_at_most_half_the_slots_and_are_never_evicted() {
        let slots = Slots::new(4);
        let a = slots.admit().expect("a");
        let b = slots.admit().expect("b");
        let c = slots.admit().expect("c");
        assert!(a.stream() && b.stream());
        assert!(!c.stream(), "a third stream of four slots");
        let _d = slots.admit().expect("d");
        // At the cap: c waits, the streams do not.
        let _e = slots.admit().expect("e evicts c");
        assert!(c.evicted().is_fired());
        assert!(!a.evicted().is_fired() && !b.evicted().is_fired());
        drop(a);
        assert!(!c.stream(), "an evicted connection cannot stream");
        let f = slots.admit().expect("f");
        assert!(f.stream(), "a's stream slot is free again");
        // One slot: one stream may hold it.
        let one = Slots::new(1);
        let g = one.admit().expect("g");
        assert!(g.stream());
        assert!(one.admit().is_none());
    }

    #[test]
    fn dropping_frees_the_slot() {
        let slots = Slots::new(1);
        let a = slots.admit().expect("a");
        a.busy();
        assert!(slots.admit().is_none());
        drop(a);
        assert!(slots.is_empty());
        assert!(slots.admit().is_some());
    }
}
