//! One timer per connection side, moved instead of re-created: a wait
//! bounded by [`Deadline::bound`] re-arms the same `Sleep`, and moving it
//! later (the usual case: each wait ends after the one before) only stores
//! the new time, where a fresh `monoio::time::timeout` per wait registers
//! a timer in the wheel and takes it out again every request.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::{Context, Poll};

use monoio::time::{Instant, Sleep};

/// The bounded wait ended because its time passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Elapsed;

/// A timer that waits are bounded by, one at a time (see the module note).
#[derive(Default)]
pub(crate) struct Deadline {
    /// Made on first use (it needs the runtime's timer), then kept.
    sleep: RefCell<Option<Pin<Box<Sleep>>>>,
}

impl Deadline {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Frees the timer (a connection that became a WebSocket session has
    /// no more bounded waits on it: an idle session then keeps no timer).
    pub(crate) fn release(&self) {
        self.sleep.borrow_mut().take();
    }

    /// Ready once `at` has passed; the timer is moved to `at` first.
    pub(crate) fn poll_until(&self, at: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let mut slot = self.sleep.borrow_mut();
        let sleep = match slot.as_mut() {
            Some(s) => {
                if s.deadline() != at {
                    s.as_mut().reset(at);
                }
                s
            }
            None => slot.insert(Box::pin(monoio::time::sleep_until(at))),
        };
        sleep.as_mut().poll(cx)
    }

    /// Runs `fut` until it ends or `at` passes (then `fut` is dropped),
    /// as `monoio::time::timeout_at` does: `fut` is polled first, so one
    /// that is ready never looks at the timer.
    pub(crate) async fn bound<F: Future>(&self, at: Instant, fut: F) -> Result<F::Output, Elapsed> {
        let mut fut = pin!(fut);
        poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(v));
            }
            match self.poll_until(at, cx) {
                Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Runs `f`, failing the test if it hangs (a timer that never fires).
    fn run<F: Future>(f: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
            .block_on(async {
                monoio::time::timeout(Duration::from_secs(5), f)
                    .await
                    .expect("a bounded wait hung")
            })
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_wait_past_its_time_ends_and_one_within_it_completes() {
        run(async {
            let d = Deadline::new();
            let t0 = Instant::now();
            let r = d.bound(t0 + 30 * MS, monoio::time::sleep(5 * MS)).await;
            assert_eq!(r, Ok(()));
            let r = d
                .bound(Instant::now() + 30 * MS, std::future::pending::<()>())
                .await;
            assert_eq!(r, Err(Elapsed));
            assert!(t0.elapsed() >= 30 * MS && t0.elapsed() < Duration::from_secs(2));
        });
    }

    #[test]
    fn the_timer_moves_later_and_earlier_and_rearms_after_firing() {
        run(async {
            let d = Deadline::new();
            // Armed far ahead, then moved earlier: the earlier time holds.
            let far = Instant::now() + Duration::from_secs(60);
            assert_eq!(d.bound(far, monoio::time::sleep(MS)).await, Ok(()));
            let t = Instant::now();
            let r = d.bound(t + 20 * MS, std::future::pending::<()>()).await;
            assert_eq!(r, Err(Elapsed));
            assert!(t.elapsed() < Duration::from_secs(2));
            // After firing, a later time waits again in full.
            let t = Instant::now();
            let r = d.bound(t + 40 * MS, monoio::time::sleep(10 * MS)).await;
            assert_eq!(r, Ok(()), "a fired timer does not end the next wait early");
            let r = d.bound(t + 40 * MS, std::future::pending::<()>()).await;
            assert_eq!(r, Err(Elapsed));
            assert!(t.elapsed() >= 40 * MS);
            // Moved later while armed: the first time does not end the wait.
            let t = Instant::now();
            assert_eq!(d.bound(t + 10 * MS, monoio::time::sleep(MS)).await, Ok(()));
            assert_eq!(
                d.bound(t + 60 * MS, monoio::time::sleep(30 * MS)).await,
                Ok(())
            );
        });
    }

    #[test]
    fn a_released_timer_holds_nothing_and_bounds_the_next_wait_again() {
        run(async {
            let d = Deadline::new();
            let t = Instant::now();
            assert_eq!(d.bound(t + 60 * MS, monoio::time::sleep(MS)).await, Ok(()));
            assert!(d.sleep.borrow().is_some());
            d.release();
            assert!(d.sleep.borrow().is_none(), "released: no timer kept");
            let t = Instant::now();
            let r = d.bound(t + 20 * MS, std::future::pending::<()>()).await;
            assert_eq!(r, Err(Elapsed));
            assert!(t.elapsed() >= 20 * MS && t.elapsed() < Duration::from_secs(2));
        });
    }
}
