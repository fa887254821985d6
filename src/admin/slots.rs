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

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::rt::notify::LocalEvent;

struct Slot {
    /// `Some(order)` while waiting for a request head (lower is older);
    /// `None` while a request is being served.
    waiting: Option<u64>,
    evict: Rc<LocalEvent>,
}

/// The admin connections open now (single-threaded: the admin runtime).
pub(super) struct Slots {
    max: usize,
    next: Cell<u64>,
    open: RefCell<BTreeMap<u64, Slot>>,
}

impl Slots {
    pub(super) fn new(max: usize) -> Rc<Slots> {
        Rc::new(Slots {
            max: max.max(1),
            next: Cell::new(0),
            open: RefCell::new(BTreeMap::new()),
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
                slot.evict.fire();
            }
        }
        let id = self.tick();
        let evict = Rc::new(LocalEvent::new());
        open.insert(
            id,
            Slot {
                waiting: Some(id),
                evict: evict.clone(),
            },
        );
        Some(SlotGuard {
            slots: self.clone(),
            id,
            evict,
        })
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

    /// Fires when this connection is evicted to make room for a newer one.
    pub(super) fn evicted(&self) -> Rc<LocalEvent> {
        self.evict.clone()
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.slots.open.borrow_mut().remove(&self.id);
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
