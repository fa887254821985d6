//! A value every worker reads and a reload replaces: [`Published`] holds
//! the latest one behind a mutex (taken only to publish and to refresh) and
//! a generation counter; each worker keeps a [`LocalCopy`] of its own and
//! refreshes it when the generation moves, so a read costs one atomic load
//! and no lock (the pool snapshot works the same way).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The latest value, shared by every worker.
#[derive(Debug)]
pub(crate) struct Published<T> {
    current: Mutex<Arc<T>>,
    generation: AtomicU64,
}

impl<T> Published<T> {
    /// `value` at generation 0.
    pub(crate) fn new(value: T) -> Self {
        Published {
            current: Mutex::new(Arc::new(value)),
            generation: AtomicU64::new(0),
        }
    }

    /// The generation of the latest value (Acquire load).
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The latest value.
    pub(crate) fn load(&self) -> Arc<T> {
        Arc::clone(&self.lock())
    }

    /// The latest value and its generation, read together.
    fn load_with_generation(&self) -> (Arc<T>, u64) {
        let cur = self.lock();
        (Arc::clone(&cur), self.generation.load(Ordering::Acquire))
    }

    /// Replaces the value and bumps the generation (the value is stored
    /// first, so whoever sees the new generation loads it); returns the
    /// new generation.
    pub(crate) fn publish(&self, value: T) -> u64 {
        let mut cur = self.lock();
        *cur = Arc::new(value);
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    fn lock(&self) -> MutexGuard<'_, Arc<T>> {
        // A panic while holding the lock cannot leave the Arc half-written.
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One worker's copy of a [`Published`] value: its own allocation, so
/// handing it to a connection is a non-atomic reference count.
#[derive(Debug)]
pub(crate) struct LocalCopy<T> {
    source: Arc<Published<T>>,
    seen: Cell<u64>,
    value: RefCell<Rc<T>>,
}

impl<T: Clone> LocalCopy<T> {
    /// A copy of the source's latest value.
    pub(crate) fn new(source: Arc<Published<T>>) -> Self {
        let (value, seen) = source.load_with_generation();
        LocalCopy {
            source,
            seen: Cell::new(seen),
            value: RefCell::new(Rc::new((*value).clone())),
        }
    }

    /// The latest value, copied first when the generation moved (one
    /// atomic load when it did not).
    #[inline]
    pub(crate) fn get(&self) -> Rc<T> {
        self.refresh().unwrap_or_else(|| self.current())
    }

    /// The value as last copied, without looking for a newer one.
    #[inline]
    pub(crate) fn current(&self) -> Rc<T> {
        Rc::clone(&self.value.borrow())
    }

    /// Copies the latest value when the generation moved; returns it then.
    #[inline]
    pub(crate) fn refresh(&self) -> Option<Rc<T>> {
        if self.source.generation() == self.seen.get() {
            return None;
        }
        let (value, seen) = self.source.load_with_generation();
        let fresh = Rc::new((*value).clone());
        self.seen.set(seen);
        *self.value.borrow_mut() = Rc::clone(&fresh);
        Some(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_follows_publications_and_keeps_handed_out_values() {
        let source = Arc::new(Published::new(1u32));
        let copy = LocalCopy::new(Arc::clone(&source));
        let before = copy.get();
        assert_eq!(*before, 1);
        assert!(copy.refresh().is_none(), "nothing published yet");
        assert_eq!(source.publish(2), 1);
        assert_eq!(*copy.get(), 2);
        assert_eq!(*before, 1, "a value handed out stays as it was");
        assert!(copy.refresh().is_none(), "seen already");
        source.publish(3);
        assert_eq!(copy.refresh().as_deref(), Some(&3));
    }

    #[test]
    fn a_publication_from_another_thread_is_seen() {
        let source = Arc::new(Published::new(String::from("old")));
        let copy = LocalCopy::new(Arc::clone(&source));
        let theirs = Arc::clone(&source);
        std::thread::spawn(move || theirs.publish(String::from("new")))
            .join()
            .expect("publisher");
        assert_eq!(copy.get().as_str(), "new");
        assert_eq!(source.generation(), 1);
    }
}
