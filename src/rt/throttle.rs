//! A worker-local log throttle: under a storm (descriptor exhaustion, a
//! flapping backend) one line a second says how many were held back,
//! instead of one line per event.

use std::cell::Cell;

use crate::pool::clock::now_ms;

/// Lets one event through per interval and counts the rest.
pub(crate) struct Throttle {
    interval_ms: u64,
    last_ms: Cell<Option<u64>>,
    held: Cell<u64>,
}

impl Throttle {
    pub(crate) const fn new(interval_ms: u64) -> Self {
        Self {
            interval_ms,
            last_ms: Cell::new(None),
            held: Cell::new(0),
        }
    }

    /// `Some(held back since the last one)` when this event should be
    /// logged, `None` when it is held back.
    pub(crate) fn allow(&self) -> Option<u64> {
        self.allow_at(now_ms())
    }

    fn allow_at(&self, now: u64) -> Option<u64> {
        match self.last_ms.get() {
            Some(last) if now.saturating_sub(last) < self.interval_ms => {
                self.held.set(self.held.get() + 1);
                None
            }
            _ => {
                self.last_ms.set(Some(now));
                Some(self.held.replace(0))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Throttle;

    #[test]
    fn one_per_interval_with_a_count_of_the_rest() {
        let t = Throttle::new(1000);
        assert_eq!(t.allow_at(5), Some(0));
        assert_eq!(t.allow_at(10), None);
        assert_eq!(t.allow_at(900), None);
        assert_eq!(t.allow_at(1005), Some(2));
        assert_eq!(t.allow_at(1006), None);
    }
}
