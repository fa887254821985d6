//! Wake-ups: a worker-local one-shot event (many waiters, no locks) and the
//! process-wide lifecycle phase that the signal thread moves and every worker
//! awaits through its own `AtomicWaker`.

use std::future::poll_fn;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::Poll;

use atomic_waker::AtomicWaker;
use local_sync::semaphore::Semaphore;

/// A one-shot, worker-local event: once fired, every waiter wakes and later
/// waits return at once. Built on a `local_sync` semaphore that never has a
/// permit: closing it is firing, which wakes every waiter; a waiter that is
/// dropped unhooks itself (no stale waker stays behind).
pub(crate) struct LocalEvent {
    closed_when_fired: Semaphore,
}

impl Default for LocalEvent {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalEvent {
    pub(crate) fn new() -> Self {
        Self {
            closed_when_fired: Semaphore::new(0),
        }
    }

    pub(crate) fn is_fired(&self) -> bool {
        self.closed_when_fired.is_closed()
    }

    pub(crate) fn fire(&self) {
        self.closed_when_fired.close();
    }

    /// Resolves once the event has fired.
    pub(crate) async fn wait(&self) {
        // No permit is ever added: this only returns (with an error) once
        // the semaphore is closed.
        let _ = self.closed_when_fired.acquire().await;
    }
}

/// Lifecycle of the whole process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Phase {
    Running = 0,
    /// Stop accepting, let in-flight work finish.
    Draining = 1,
    /// Every worker has stopped.
    Stopped = 2,
}

/// The phase shared by all workers; the signal thread advances it.
pub(crate) struct Lifecycle {
    phase: AtomicU8,
    wakers: Vec<AtomicWaker>,
}

impl Lifecycle {
    /// A lifecycle awaited by `workers` workers (slots `0..workers`) and
    /// one more waiter outside them (slot `workers`, see [`Lifecycle::outside_slot`]).
    pub(crate) fn new(workers: usize) -> Self {
        Self {
            phase: AtomicU8::new(Phase::Running as u8),
            wakers: (0..=workers).map(|_| AtomicWaker::new()).collect(),
        }
    }

    /// The waiter slot for the one task outside the workers (the admin API).
    pub(crate) fn outside_slot(&self) -> usize {
        self.wakers.len() - 1
    }

    pub(crate) fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Running,
            1 => Phase::Draining,
            _ => Phase::Stopped,
        }
    }

    /// Moves to `phase` (never backwards) and wakes every worker.
    pub(crate) fn advance(&self, phase: Phase) {
        self.phase.fetch_max(phase as u8, Ordering::AcqRel);
        for w in &self.wakers {
            w.wake();
        }
    }

    /// Resolves on worker `worker` once the phase is at least `phase`.
    pub(crate) async fn wait_for(&self, worker: usize, phase: Phase) {
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

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Waker};

    use super::LocalEvent;

    #[test]
    fn fire_releases_every_waiter_and_later_waits() {
        let ev = LocalEvent::new();
        let mut cx = Context::from_waker(Waker::noop());
        let mut a = pin!(ev.wait());
        let mut b = pin!(ev.wait());
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert!(b.as_mut().poll(&mut cx).is_pending());
        {
            let mut dropped = pin!(ev.wait());
            assert!(dropped.as_mut().poll(&mut cx).is_pending());
        }
        assert!(!ev.is_fired());
        ev.fire();
        assert!(ev.is_fired());
        assert!(a.as_mut().poll(&mut cx).is_ready());
        assert!(b.as_mut().poll(&mut cx).is_ready());
        assert!(pin!(ev.wait()).poll(&mut cx).is_ready());
    }
}
