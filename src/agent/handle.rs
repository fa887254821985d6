//! What the embedding application holds: [`AgentHandle`] (status per
//! balancer, drain/resume/deregister requests, stop) and the state it shares
//! with the agent thread. Requests are desired states plus an epoch; the
//! sessions reconcile with them whenever the epoch moves. Operations
//! (`requests.rs`) go through one lock-free queue per session instead.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::Context;
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use crossbeam::queue::SegQueue;
use serde_json::{Map, Value};

use super::answers::{Call, OpFailure, Outgoing};
use crate::hub::ops::Verb;

/// Where one balancer's session stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Connecting, handshaking or waiting for `registered`.
    Connecting,
    /// In the pool, sending heartbeats.
    Registered,
    /// Disconnected; the watchdog reconnects at `retry_at`.
    Waiting,
    /// Left the pool on request ([`AgentHandle::deregister`]); idle until
    /// [`AgentHandle::register`].
    Deregistered,
    /// The agent has stopped.
    Stopped,
}

/// A snapshot of one balancer session.
#[derive(Clone, Debug)]
pub struct BalancerStatus {
    /// The balancer URL as configured.
    pub url: String,
    /// Where the session with this balancer stands.
    pub state: LinkState,
    /// The balancer's last notice: `drain` (true) or `resume` (false).
    pub draining: bool,
    /// From the last `registered` answer.
    pub balancer_id: Option<String>,
    /// Heartbeat interval the balancer asked for in its `registered` answer.
    pub heartbeat_interval: Option<Duration>,
    /// The bindings as the balancer resolved them.
    pub bindings: Vec<String>,
    /// Why the last session ended or the last attempt failed.
    pub last_error: Option<String>,
    /// The last failure was a refusal (bad token, refused registration).
    pub refused: bool,
    /// Connection attempts so far.
    pub attempts: u64,
    /// Successful registrations so far.
    pub registrations: u64,
    /// Heartbeats sent so far, over all sessions.
    pub heartbeats_sent: u64,
    /// When the watchdog tries again (state `Waiting`).
    pub retry_at: Option<Instant>,
    /// The protocol version of the current (or last) session: 2 takes
    /// operations and events, 1 (an older balancer) does not; 0 before the
    /// first registration.
    pub protocol: u32,
}

impl BalancerStatus {
    fn new(url: String) -> Self {
        BalancerStatus {
            url,
            state: LinkState::Connecting,
            draining: false,
            balancer_id: None,
            heartbeat_interval: None,
            bindings: Vec::new(),
            last_error: None,
            refused: false,
            attempts: 0,
            registrations: 0,
            heartbeats_sent: 0,
            retry_at: None,
            protocol: 0,
        }
    }
}

/// The application's wishes, read by every session.
#[derive(Default)]
pub(crate) struct Wishes {
    pub drain: AtomicBool,
    /// False after `deregister()` until `register()`.
    pub offline: AtomicBool,
    pub stop: AtomicBool,
}

/// State shared between the handle and the agent thread.
pub(crate) struct Shared {
    pub id: String,
    pub load: Arc<AtomicU32>,
    pub wishes: Wishes,
    epoch: AtomicU64,
    wakers: Vec<AtomicWaker>,
    status: Mutex<Vec<BalancerStatus>>,
    changed: Condvar,
    /// Operations waiting to be sent, one queue per session.
    queues: Vec<SegQueue<Outgoing>>,
    /// How long an operation waits for its answers.
    pub op_timeout: Duration,
    /// The agent's own thread (where waiting for answers cannot work).
    thread: OnceLock<ThreadId>,
}

impl Shared {
    pub(crate) fn new(
        id: String,
        load: Arc<AtomicU32>,
        urls: Vec<String>,
        op_timeout: Duration,
    ) -> Self {
        Shared {
            id,
            load,
            wishes: Wishes::default(),
            epoch: AtomicU64::new(0),
            wakers: urls.iter().map(|_| AtomicWaker::new()).collect(),
            queues: urls.iter().map(|_| SegQueue::new()).collect(),
            status: Mutex::new(urls.into_iter().map(BalancerStatus::new).collect()),
            changed: Condvar::new(),
            op_timeout,
            thread: OnceLock::new(),
        }
    }

    /// How many balancers are configured.
    pub(crate) fn balancers(&self) -> usize {
        self.queues.len()
    }

    /// The balancer URLs, in configuration order.
    pub(crate) fn urls(&self) -> Vec<String> {
        self.lock().iter().map(|s| s.url.clone()).collect()
    }

    /// Records the agent's thread (once, when it starts).
    pub(crate) fn set_thread(&self) {
        let _ = self.thread.set(std::thread::current().id());
    }

    /// Whether the caller runs on the agent's thread.
    pub(crate) fn on_agent_thread(&self) -> bool {
        self.thread.get() == Some(&std::thread::current().id())
    }

    /// Queues an operation for every session that can take it now and
    /// wakes them; the others' slots are answered at once.
    pub(crate) fn enqueue(&self, call: &Arc<Call>, name: Verb, body: Arc<Map<String, Value>>) {
        let st = self.lock();
        for (i, s) in st.iter().enumerate() {
            match (s.state, s.protocol) {
                (LinkState::Registered, p) if p >= 2 => {
                    if let Some(q) = self.queues.get(i) {
                        q.push(Outgoing {
                            call: call.clone(),
                            name,
                            body: body.clone(),
                        });
                    }
                    if let Some(w) = self.wakers.get(i) {
                        w.wake();
                    }
                }
                (LinkState::Registered, _) => call.fill(i, Err(OpFailure::Unsupported)),
                _ => call.fill(i, Err(OpFailure::NotConnected)),
            }
        }
    }

    /// The next operation queued for session `i`.
    pub(crate) fn dequeue(&self, i: usize) -> Option<Outgoing> {
        self.queues.get(i)?.pop()
    }

    /// Whether operations wait for session `i`.
    pub(crate) fn has_queued(&self, i: usize) -> bool {
        self.queues.get(i).is_some_and(|q| !q.is_empty())
    }

    fn lock(&self) -> MutexGuard<'_, Vec<BalancerStatus>> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Edits session `i`'s status and wakes status waiters.
    pub(crate) fn update(&self, i: usize, f: impl FnOnce(&mut BalancerStatus)) {
        if let Some(s) = self.lock().get_mut(i) {
            f(s);
        }
        self.changed.notify_all();
    }

    /// Marks every session stopped (the agent thread is ending).
    pub(crate) fn mark_all_stopped(&self) {
        for s in self.lock().iter_mut() {
            s.state = LinkState::Stopped;
            s.retry_at = None;
        }
        self.changed.notify_all();
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Records a new wish and wakes every session.
    pub(crate) fn poke(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for w in &self.wakers {
            w.wake();
        }
    }

    /// Whether the wishes moved past `seen`; registers the waker first so
    /// a poke in between is not missed.
    pub(crate) fn poll_changed(&self, i: usize, seen: u64, cx: &mut Context<'_>) -> bool {
        if let Some(w) = self.wakers.get(i) {
            w.register(cx.waker());
        }
        self.epoch() != seen
    }

    /// Waits until `pred` holds for the statuses or `timeout` passes.
    fn wait_for(&self, timeout: Duration, pred: impl Fn(&[BalancerStatus]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if pred(&st) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = match self.changed.wait_timeout(st, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

/// Controls a running agent. Dropping it stops the agent (without waiting);
/// [`AgentHandle::stop`] deregisters and waits.
pub struct AgentHandle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) thread: Option<JoinHandle<()>>,
}

impl AgentHandle {
    /// The backend id being registered.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The load counter reported in heartbeats.
    pub fn load(&self) -> &Arc<AtomicU32> {
        &self.shared.load
    }

    /// One status per configured balancer, in configuration order.
    pub fn status(&self) -> Vec<BalancerStatus> {
        self.shared.lock().clone()
    }

    /// Registered with every balancer.
    pub fn all_registered(&self) -> bool {
        self.shared
            .lock()
            .iter()
            .all(|s| s.state == LinkState::Registered)
    }

    /// Blocks until every balancer session is registered, or `timeout`.
    pub fn wait_registered(&self, timeout: Duration) -> bool {
        self.shared.wait_for(timeout, |st| {
            st.iter().all(|s| s.state == LinkState::Registered)
        })
    }

    /// Blocks until `pred` holds for the statuses, or `timeout`.
    pub fn wait_until(&self, timeout: Duration, pred: impl Fn(&[BalancerStatus]) -> bool) -> bool {
        self.shared.wait_for(timeout, pred)
    }

    /// Asks every balancer to stop sending new connections (kept across
    /// reconnects until [`AgentHandle::resume`]).
    pub fn drain(&self) {
        self.shared.wishes.drain.store(true, Ordering::Release);
        self.shared.poke();
    }

    /// Takes new connections again.
    pub fn resume(&self) {
        self.shared.wishes.drain.store(false, Ordering::Release);
        self.shared.poke();
    }

    /// Leaves every pool now and stays out (no reconnects) until
    /// [`AgentHandle::register`].
    pub fn deregister(&self) {
        self.shared.wishes.offline.store(true, Ordering::Release);
        self.shared.poke();
    }

    /// Joins the pools again after [`AgentHandle::deregister`].
    pub fn register(&self) {
        self.shared.wishes.offline.store(false, Ordering::Release);
        self.shared.poke();
    }

    /// Deregisters from every balancer, closes the channels and waits (up to
    /// `timeout`) for the agent thread to end. Returns whether it ended.
    pub fn stop(mut self, timeout: Duration) -> bool {
        self.signal_stop();
        let done = self.shared.wait_for(timeout, |st| {
            st.iter().all(|s| s.state == LinkState::Stopped)
        });
        if let Some(t) = self.thread.take() {
            if done {
                let _ = t.join();
            }
        }
        done
    }

    fn signal_stop(&self) {
        self.shared.wishes.stop.store(true, Ordering::Release);
        self.shared.poke();
    }
}

impl Drop for AgentHandle {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

impl std::fmt::Debug for AgentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandle")
            .field("id", &self.shared.id)
            .field("status", &self.status())
            .finish()
    }
}

/// Counts one connection in a load counter for as long as it lives (for
/// backends that report their connection count: create one per accepted
/// connection).
pub struct LoadGuard(Arc<AtomicU32>);

impl LoadGuard {
    /// Adds one to `counter` now and takes it off again when dropped.
    pub fn new(counter: &Arc<AtomicU32>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        LoadGuard(counter.clone())
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
