//! Wake-ups: a worker-local one-shot event (many waiters, no locks) and the
//! process-wide lifecycle phase that the signal thread moves and every worker
//! awaits through its own `AtomicWaker`.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Poll, Waker};

use atomic_waker::AtomicWaker;

/// A one-shot, worker-local event: once fired, every waiter wakes and later
/// waits return at once.
#[derive(Default)]
pub struct LocalEvent {
    fired: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl LocalEvent {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_fired(&self) -> bool {
        self.fired.get()
    }

    pub fn fire(&self) {
        self.fired.set(true);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Resolves once the event has fired.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.fired.get() {
                return Poll::Ready(());
            }
            let mut waiters = self.waiters.borrow_mut();
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

/// Lifecycle of the whole process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    Running = 0,
    /// Stop accepting, let in-flight work finish.
    Draining = 1,
    /// Every worker has stopped.
    Stopped = 2,
}

/// The phase shared by all workers; the signal thread advances it.
pub struct Lifecycle {
    phase: AtomicU8,
    wakers: Vec<AtomicWaker>,
}

impl Lifecycle {
    /// A lifecycle awaited by `workers` workers (slots `0..workers`) and
    /// one more waiter outside them (slot `workers`, see [`Lifecycle::outside_slot`]).
    pub fn new(workers: usize) -> Self {
        Self {
            phase: AtomicU8::new(Phase::Running as u8),
            wakers: (0..=workers).map(|_| AtomicWaker::new()).collect(),
        }
    }

    /// The waiter slot for the one task outside the workers (the admin API).
    pub fn outside_slot(&self) -> usize {
        self.wakers.len() - 1
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Running,
            1 => Phase::Draining,
            _ => Phase::Stopped,
        }
    }

    /// Moves to `phase` (never backwards) and wakes every worker.
    pub fn advance(&self, phase: Phase) {
        self.phase.fetch_max(phase as u8, Ordering::AcqRel);
        for w in &self.wakers {
            w.wake();
        }
    }

    /// Resolves on worker `worker` once the phase is at least `phase`.
    pub async fn wait_for(&self, worker: usize, phase: Phase) {
        poll_fn(|cx| {
            if self.phase() >= phase {
                return Poll::Ready(());
            }
            if let Some(w) = self.wakers.get(worker) {
                w.register(cx.waker());
            }
            if self.phase() >= phase {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}
