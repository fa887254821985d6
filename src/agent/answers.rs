//! The answers to an operation sent to every balancer: a [`Call`] holds
//! one answer slot per balancer (filled by the sessions, waited on by the
//! caller), an [`Outgoing`] is what one session's queue carries, and
//! [`Fanout`] is what the caller gets back.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use serde_json::{Map, Value};

use crate::hub::ops::Verb;
use crate::hub::Outcome;

/// Why one balancer gave no result for an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpFailure {
    /// No registered session with this balancer when the request was made.
    #[error("not registered with this balancer")]
    NotConnected,
    /// This balancer speaks protocol v1 (no operations).
    #[error("this balancer does not take operations (protocol v1)")]
    Unsupported,
    /// The balancer refused the operation (`op_error`); `status` is its
    /// HTTP-style code: 400 bad request, 404 no such connection, 429 too
    /// many operations under way, 504 its workers did not answer.
    #[error("refused ({status}): {message}")]
    Refused {
        /// The code.
        status: u16,
        /// Why.
        message: String,
    },
    /// The session ended before the answer came.
    #[error("the control channel ended before the answer")]
    Disconnected,
    /// No answer within the agent's `op_timeout`.
    #[error("no answer in time")]
    TimedOut,
}

impl OpFailure {
    /// "No such connection": the expected answer of every balancer but
    /// the owner's to a request that names one session.
    pub fn is_not_found(&self) -> bool {
        matches!(self, OpFailure::Refused { status: 404, .. })
    }
}

/// One balancer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalancerReply {
    /// The balancer URL as configured.
    pub url: String,
    /// Its counts, or why there are none.
    pub result: Result<Outcome, OpFailure>,
}

/// What an operation sent to every balancer came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fanout {
    /// One answer per configured balancer, in configuration order.
    pub replies: Vec<BalancerReply>,
    /// The counts of every `result`, summed (pongs summed when any came).
    pub total: Outcome,
    /// The request named one session (send, subscribe, unsubscribe, close
    /// by id).
    pub single: bool,
}

impl Fanout {
    pub(crate) fn new(
        urls: &[String],
        results: Vec<Result<Outcome, OpFailure>>,
        single: bool,
    ) -> Fanout {
        let mut total = Outcome::default();
        for o in results.iter().flatten() {
            total.add(o);
        }
        let replies = urls
            .iter()
            .zip(results)
            .map(|(url, result)| BalancerReply {
                url: url.clone(),
                result,
            })
            .collect();
        Fanout {
            replies,
            total,
            single,
        }
    }

    /// Whether it went as asked: every balancer answered with a result;
    /// for a request naming one session, exactly one balancer found it and
    /// every other one answered (a result or "no such connection").
    pub fn is_ok(&self) -> bool {
        let answered = |r: &BalancerReply| match &r.result {
            Ok(_) => true,
            Err(e) => self.single && e.is_not_found(),
        };
        if !self.replies.iter().all(answered) {
            return false;
        }
        if self.single {
            let found = self.replies.iter();
            return found
                .filter(|r| matches!(&r.result, Ok(o) if o.matched > 0))
                .count()
                == 1;
        }
        true
    }
}

/// The answer slots of one operation, one per balancer.
pub(crate) struct Call {
    slots: Mutex<Vec<Option<Result<Outcome, OpFailure>>>>,
    filled: Condvar,
}

impl Call {
    pub(crate) fn new(balancers: usize) -> Call {
        Call {
            slots: Mutex::new(vec![None; balancers]),
            filled: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Option<Result<Outcome, OpFailure>>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Balancer `i` answered (the first answer counts).
    pub(crate) fn fill(&self, i: usize, result: Result<Outcome, OpFailure>) {
        if let Some(slot) = self.lock().get_mut(i) {
            if slot.is_none() {
                *slot = Some(result);
            }
        }
        self.filled.notify_all();
    }

    pub(crate) fn is_done(&self) -> bool {
        self.lock().iter().all(Option::is_some)
    }

    /// Waits until every slot is filled or `deadline`; unfilled slots are
    /// [`OpFailure::TimedOut`].
    pub(crate) fn wait(&self, deadline: Instant) -> Vec<Result<Outcome, OpFailure>> {
        let mut slots = self.lock();
        loop {
            if slots.iter().all(Option::is_some) {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            slots = match self.filled.wait_timeout(slots, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        slots
            .iter()
            .map(|s| s.clone().unwrap_or(Err(OpFailure::TimedOut)))
            .collect()
    }
}

/// One operation queued for one session: the session gives it a `ref`,
/// sends it, and fills slot `index` of `call` with the answer.
pub(crate) struct Outgoing {
    pub(crate) call: Arc<Call>,
    pub(crate) name: Verb,
    pub(crate) body: Arc<Map<String, Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn outcome(matched: u64, pongs: Option<u64>) -> Outcome {
        Outcome {
            matched,
            delivered: matched,
            skipped: 0,
            dropped: 0,
            pongs,
        }
    }

    #[test]
    fn a_fanout_sums_results_and_judges_single_requests() {
        let urls = vec!["ws://a".to_string(), "ws://b".to_string()];
        let both = Fanout::new(
            &urls,
            vec![Ok(outcome(2, Some(1))), Ok(outcome(3, Some(3)))],
            false,
        );
        assert_eq!(both.total.matched, 5);
        assert_eq!(both.total.pongs, Some(4));
        assert!(both.is_ok());
        let not_found = || {
            Err(OpFailure::Refused {
                status: 404,
                message: "no such connection: x".into(),
            })
        };
        let send = Fanout::new(&urls, vec![not_found(), Ok(outcome(1, None))], true);
        assert!(send.is_ok());
        assert_eq!(send.total.matched, 1);
        assert_eq!(send.total.pongs, None);
        assert!(!Fanout::new(&urls, vec![not_found(), not_found()], true).is_ok());
        assert!(!Fanout::new(&urls, vec![not_found(), Ok(outcome(1, None))], false).is_ok());
        let lost = Fanout::new(
            &urls,
            vec![Ok(outcome(1, None)), Err(OpFailure::TimedOut)],
            true,
        );
        assert!(!lost.is_ok());
    }

    #[test]
    fn a_call_keeps_the_first_answer_and_times_out_the_rest() {
        let call = Call::new(3);
        call.fill(0, Ok(outcome(1, None)));
        call.fill(0, Err(OpFailure::Disconnected));
        call.fill(2, Err(OpFailure::NotConnected));
        assert!(!call.is_done());
        let got = call.wait(Instant::now() + Duration::from_millis(20));
        assert_eq!(
            got,
            vec![
                Ok(outcome(1, None)),
                Err(OpFailure::TimedOut),
                Err(OpFailure::NotConnected)
            ]
        );
    }
}
