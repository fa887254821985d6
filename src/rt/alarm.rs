//! Worker-local alarms: many long waits (one per idle WebSocket session's
//! pinger) share one runtime timer. A waiting [`sleep_until`] holds only
//! its deadline and a key; its waker sits in the thread's ordered table,
//! and a single task per thread sleeps until the earliest deadline and
//! wakes what is due. A monoio timer (`Sleep`) is cache-aligned and weighs
//! hundreds of bytes; a table entry weighs a few dozen.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use monoio::time::Instant;

/// The thread's alarms: wakers by (deadline, sequence number).
#[derive(Default)]
struct Table {
    due: BTreeMap<(Instant, u64), Waker>,
    next: u64,
    /// The task sleeping until the earliest deadline, if one runs.
    driver: Option<Waker>,
    running: bool,
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table::default());
}

/// A wait until `deadline` on the thread's shared timer (see the module
/// docs); ready at once when the deadline has passed.
pub(crate) fn sleep_until(deadline: Instant) -> Alarm {
    Alarm {
        deadline,
        key: None,
    }
}

/// The future [`sleep_until`] returns; dropping it removes its entry.
pub(crate) struct Alarm {
    deadline: Instant,
    /// The entry's key while registered.
    key: Option<(Instant, u64)>,
}

impl Future for Alarm {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            self.unregister();
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        let key = self.key;
        // Woken by the driver, whose timer said the deadline has come.
        let fired = key.is_some_and(|k| TABLE.with(|t| !t.borrow().due.contains_key(&k)));
        if fired {
            self.key = None;
            return Poll::Ready(());
        }
        let spawn = TABLE.with(|t| {
            let mut t = t.borrow_mut();
            let key = match key {
                Some(k) => k,
                None => {
                    t.next = t.next.wrapping_add(1);
                    (deadline, t.next)
                }
            };
            let earliest = t.due.keys().next().is_none_or(|first| key < *first);
            match t.due.get_mut(&key) {
                Some(w) if w.will_wake(cx.waker()) => {}
                Some(w) => *w = cx.waker().clone(),
                None => {
                    t.due.insert(key, cx.waker().clone());
                }
            }
            if earliest {
                // The driver sleeps until a later deadline: re-arm it.
                if let Some(d) = t.driver.take() {
                    d.wake();
                }
            }
            let spawn = !t.running;
            t.running = true;
            (key, spawn)
        });
        self.key = Some(spawn.0);
        if spawn.1 {
            monoio::spawn(drive());
        }
        Poll::Pending
    }
}

impl Alarm {
    fn unregister(&mut self) {
        if let Some(key) = self.key.take() {
            // The table is gone only while the thread exits.
            let _ = TABLE.try_with(|t| t.borrow_mut().due.remove(&key));
        }
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// Marks the driver gone when its task ends or is dropped with its runtime,
/// so that the next alarm on this thread starts another.
struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        let _ = TABLE.try_with(|t| {
            let mut t = t.borrow_mut();
            t.running = false;
            t.driver = None;
        });
    }
}

/// Sleeps until the earliest deadline and wakes every alarm due; ends when
/// none is left.
async fn drive() {
    let _running = Running;
    let mut sleep: Option<(Instant, Pin<Box<monoio::time::Sleep>>)> = None;
    // The deadline the timer last fired for: what is due by it is due.
    let mut fired: Option<Instant> = None;
    poll_fn(|cx| loop {
        let now = fired
            .take()
            .map_or(Instant::now(), |f| f.max(Instant::now()));
        let earliest = TABLE.with(|t| {
            let mut t = t.borrow_mut();
            while let Some(entry) = t.due.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                entry.remove().wake();
            }
            let earliest = t.due.keys().next().map(|k| k.0);
            t.driver = Some(cx.waker().clone());
            earliest
        });
        let Some(at) = earliest else {
            return Poll::Ready(());
        };
        if sleep.as_ref().is_none_or(|(s, _)| *s != at) {
            sleep = Some((at, Box::pin(monoio::time::sleep_until(at))));
        }
        if let Some((_, s)) = sleep.as_mut() {
            if s.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        fired = Some(at);
        sleep = None;
    })
    .await;
}

#[cfg(test)]
#[path = "alarm_tests.rs"]
mod tests;
