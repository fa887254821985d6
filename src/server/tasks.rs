//! A worker's count of its accept loops and connection tasks, so that its
//! drain ends only when every connection it accepted has been served (or
//! closed) — including one accepted in the very moment the drain began,
//! before it reached the connection table, and one still in its TLS
//! handshake. Ending the runtime earlier would drop such a connection
//! unanswered (a reset for a client that did nothing wrong).

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

/// Tasks alive on one worker (worker-local, no atomics).
#[derive(Default)]
pub(crate) struct TaskCount {
    live: Rc<Cell<usize>>,
}

/// Counts one task for as long as it is held.
pub(crate) struct TaskGuard {
    live: Rc<Cell<usize>>,
}

impl TaskCount {
    /// Counts a task from now (take it before spawning, move it in).
    pub(crate) fn enter(&self) -> TaskGuard {
        self.live.set(self.live.get() + 1);
        TaskGuard {
            live: self.live.clone(),
        }
    }

    /// Tasks alive now.
    pub(crate) fn count(&self) -> usize {
        self.live.get()
    }

    /// Resolves once no counted task is left (checked every few
    /// milliseconds: this only runs while draining).
    pub(crate) async fn wait_zero(&self) {
        while self.live.get() > 0 {
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.live.set(self.live.get().saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::TaskCount;

    #[test]
    fn counts_while_held() {
        let tasks = TaskCount::default();
        let a = tasks.enter();
        let b = tasks.enter();
        assert_eq!(tasks.count(), 2);
        drop(a);
        assert_eq!(tasks.count(), 1);
        drop(b);
        assert_eq!(tasks.count(), 0);
    }
}
