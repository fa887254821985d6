//! Operations in flight between the application's threads and the agent's
//! sessions: [`PendingOp`], what the caller holds until every balancer has
//! answered, and [`Inflight`], one session's operations sent and not yet
//! answered.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::answers::{Call, Fanout, OpFailure};
use super::error::AgentError;
use super::handle::Shared;
use crate::hub::ops::Verb;
use crate::hub::Outcome;

/// An operation sent to every registered balancer, answers still coming.
pub struct PendingOp {
    call: Arc<Call>,
    shared: Arc<Shared>,
    deadline: Instant,
    single: bool,
}

impl PendingOp {
    pub(crate) fn start(
        shared: &Arc<Shared>,
        name: Verb,
        body: Map<String, Value>,
        single: bool,
        timeout: Duration,
    ) -> PendingOp {
        let call = Arc::new(Call::new(shared.balancers()));
        shared.enqueue(&call, name, Arc::new(body));
        PendingOp {
            call,
            shared: shared.clone(),
            deadline: Instant::now() + timeout,
            single,
        }
    }

    /// Whether every balancer has answered.
    pub fn is_done(&self) -> bool {
        self.call.is_done()
    }

    /// Waits (blocking this thread) for every balancer's answer, at most
    /// until the agent's `op_timeout` (plus a ping's wait) from the start.
    /// Refused on the agent's own thread (an `on_event` callback): the
    /// answers could not arrive while it waits.
    pub fn wait(self) -> Result<Fanout, AgentError> {
        if self.shared.on_agent_thread() {
            return Err(AgentError::OnAgentThread);
        }
        let results = self.call.wait(self.deadline);
        Ok(Fanout::new(&self.shared.urls(), results, self.single))
    }
}

impl std::fmt::Debug for PendingOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingOp")
            .field("done", &self.is_done())
            .field("single", &self.single)
            .finish()
    }
}

/// One session's operations sent and not yet answered, by `ref`. When the
/// session ends, every one left (and every one still queued for it) is
/// answered [`OpFailure::Disconnected`].
pub(crate) struct Inflight<'a> {
    shared: &'a Shared,
    index: usize,
    /// The balancer's URL (what `on_event` is told).
    pub(crate) url: String,
    next_ref: u64,
    sent: HashMap<u64, Arc<Call>>,
}

impl<'a> Inflight<'a> {
    pub(crate) fn new(shared: &'a Shared, index: usize, url: String) -> Self {
        Inflight {
            shared,
            index,
            url,
            next_ref: 0,
            sent: HashMap::new(),
        }
    }

    /// Takes the next queued operation and gives it a `ref`: the message
    /// to send.
    pub(crate) fn next_message(&mut self) -> Option<String> {
        let out = self.shared.dequeue(self.index)?;
        self.next_ref += 1;
        let reference = Value::from(self.next_ref);
        self.sent.insert(self.next_ref, out.call);
        Some(crate::pool::registry::protocol::op_json(
            out.name,
            Some(&reference),
            &out.body,
        ))
    }

    /// An answer for `reference` came.
    pub(crate) fn answer(&mut self, reference: Option<&Value>, result: Result<Outcome, OpFailure>) {
        let Some(r) = reference.and_then(Value::as_u64) else {
            return;
        };
        if let Some(call) = self.sent.remove(&r) {
            call.fill(self.index, result);
        }
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        for (_, call) in self.sent.drain() {
            call.fill(self.index, Err(OpFailure::Disconnected));
        }
        while let Some(out) = self.shared.dequeue(self.index) {
            out.call.fill(self.index, Err(OpFailure::Disconnected));
        }
    }
}
