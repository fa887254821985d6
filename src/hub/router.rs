//! Reaching the worker that owns a session from any thread: one inbox per
//! worker (a lock-free queue and a waker), commands that carry their own
//! answer slot ([`Tally`]), and the wait for every worker's answer.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use atomic_waker::AtomicWaker;
use crossbeam::queue::SegQueue;
use serde::Serialize;

use super::ids::ConnIds;
use super::ops::{Filter, Op, Outcome};

/// Something a worker is asked to do with its sessions.
#[derive(Debug)]
pub enum Command {
    /// Apply an operation to the matching sessions; count into `tally`.
    Apply {
        /// The operation (shared by every worker).
        op: Arc<Op>,
        /// Where the worker counts.
        tally: Arc<Tally>,
    },
    /// Describe the matching sessions into `tally`'s listing.
    List {
        /// Which sessions.
        filter: Arc<Filter>,
        /// At most this many per worker (the first by id).
        limit: usize,
        /// Where the worker answers.
        tally: Arc<Tally>,
    },
}

/// One worker's inbox.
#[derive(Default)]
pub struct Inbox {
    queue: SegQueue<Command>,
    waker: AtomicWaker,
}

impl Inbox {
    /// Queues `cmd` and wakes the worker.
    pub fn push(&self, cmd: Command) {
        self.queue.push(cmd);
        self.waker.wake();
    }

    /// Waits for the next command (one waiter: the worker's hub task).
    pub async fn next(&self) -> Command {
        poll_fn(|cx| {
            if let Some(c) = self.queue.pop() {
                return Poll::Ready(c);
            }
            self.waker.register(cx.waker());
            match self.queue.pop() {
                Some(c) => Poll::Ready(c),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// The next command if one is queued.
    pub fn try_next(&self) -> Option<Command> {
        self.queue.pop()
    }
}

/// Every worker's inbox, and the id scheme that says which worker owns a
/// session.
pub struct Router {
    inboxes: Box<[Inbox]>,
    /// The connection id scheme of this balancer.
    pub ids: ConnIds,
    /// Totals since start, over every operation (for `/metrics`).
    pub totals: Totals,
    /// Fallback sessions by token, for whichever worker a stream or a post
    /// lands on.
    pub(crate) sse: super::sse::SseTable,
}

/// Messaging totals since the balancer started (workers add one operation's
/// counts at a time, not one per session).
#[derive(Debug, Default)]
pub struct Totals {
    /// Operations applied (each counted once per worker that applied it).
    pub applied: AtomicU64,
    /// Sessions reached.
    pub delivered: AtomicU64,
    /// Sessions skipped (tunnel mode, closing).
    pub skipped: AtomicU64,
    /// Sessions closed as slow consumers.
    pub dropped: AtomicU64,
}

impl Totals {
    /// Adds one worker's counts for one operation.
    pub fn add(&self, o: &Outcome) {
        self.applied.fetch_add(1, Ordering::Relaxed);
        self.delivered.fetch_add(o.delivered, Ordering::Relaxed);
        self.skipped.fetch_add(o.skipped, Ordering::Relaxed);
        self.dropped.fetch_add(o.dropped, Ordering::Relaxed);
    }
}

impl Router {
    /// A router for `workers` workers.
    pub fn new(workers: usize, ids: ConnIds) -> Self {
        Router {
            inboxes: (0..workers).map(|_| Inbox::default()).collect(),
            ids,
            totals: Totals::default(),
            sse: super::sse::SseTable::default(),
        }
    }

    /// How many workers there are.
    pub fn workers(&self) -> usize {
        self.inboxes.len()
    }

    /// Worker `i`'s inbox.
    pub fn inbox(&self, i: usize) -> Option<&Inbox> {
        self.inboxes.get(i)
    }

    /// Sends `op` to the workers that may hold a matching session (the
    /// owner alone when the op names one session or an `include` list on
    /// one worker) and returns the tally they answer into.
    pub fn apply(&self, op: Op) -> Arc<Tally> {
        let targets = self.targets(&op.filter);
        let tally = Arc::new(Tally::new(targets.len()));
        let op = Arc::new(op);
        for w in targets {
            if let Some(inbox) = self.inboxes.get(w) {
                inbox.push(Command::Apply {
                    op: op.clone(),
                    tally: tally.clone(),
                });
            }
        }
        tally
    }

    /// Asks every worker to describe its sessions matching `filter`.
    pub fn list(&self, filter: Filter, limit: usize) -> Arc<Tally> {
        let tally = Arc::new(Tally::new(self.inboxes.len()));
        let filter = Arc::new(filter);
        for inbox in self.inboxes.iter() {
            inbox.push(Command::List {
                filter: filter.clone(),
                limit,
                tally: tally.clone(),
            });
        }
        tally
    }

    /// The workers an operation must visit: with an `include` list, only
    /// the owners of its ids (none when no id is this balancer's).
    fn targets(&self, filter: &Filter) -> Vec<usize> {
        match &filter.include {
            None => (0..self.inboxes.len()).collect(),
            Some(ids) => {
                let mut seen = vec![false; self.inboxes.len()];
                for id in ids {
                    if let Some((w, _)) = self.ids.parse(id) {
                        if let Some(s) = seen.get_mut(w) {
                            *s = true;
                        }
                    }
                }
                (0..seen.len()).filter(|&w| seen[w]).collect()
            }
        }
    }
}

/// One session as `GET /api/connections` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SessionView {
    /// The connection id.
    pub id: String,
    /// The client's address.
    pub client: String,
    /// The backend's id.
    pub backend: String,
    /// The upgrade's path (without the query).
    pub path: String,
    /// The negotiated subprotocol, if any.
    pub subprotocol: Option<String>,
    /// Channels the session belongs to.
    pub channels: Vec<String>,
    /// When the session started (Unix milliseconds).
    pub since_ms: u64,
    /// `inspect` or `tunnel`.
    pub mode: &'static str,
    /// Data messages from the client (inspect mode; 0 in tunnel mode).
    pub messages_in: u64,
    /// Data messages toward the client, injected ones included.
    pub messages_out: u64,
    /// Bytes read from the client after the upgrade.
    pub bytes_in: u64,
    /// Bytes read from the backend after the upgrade.
    pub bytes_out: u64,
    /// Bytes of published or sent messages waiting to be written to it.
    pub queued_bytes: u64,
    /// Local number (for ordering; not shown).
    #[serde(skip)]
    pub local: u64,
}

/// The answer slot of one command sent to several workers: counters they
/// add to, a countdown of workers still to answer, and the waker of
/// whoever waits (the admin thread or a control channel's task).
#[derive(Debug)]
pub struct Tally {
    matched: AtomicU64,
    delivered: AtomicU64,
    skipped: AtomicU64,
    dropped: AtomicU64,
    pongs: AtomicU64,
    /// Pongs no longer count once this is set (the wait is over).
    closed: AtomicBool,
    remaining: AtomicUsize,
    waker: AtomicWaker,
    sessions: Mutex<Vec<SessionView>>,
    total: AtomicU64,
}

impl Tally {
    /// A tally waiting for `workers` answers.
    pub fn new(workers: usize) -> Self {
        Tally {
            matched: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            pongs: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            remaining: AtomicUsize::new(workers),
            waker: AtomicWaker::new(),
            sessions: Mutex::new(Vec::new()),
            total: AtomicU64::new(0),
        }
    }

    /// Adds one worker's counts.
    pub fn add(&self, o: &Outcome) {
        self.matched.fetch_add(o.matched, Ordering::Relaxed);
        self.delivered.fetch_add(o.delivered, Ordering::Relaxed);
        self.skipped.fetch_add(o.skipped, Ordering::Relaxed);
        self.dropped.fetch_add(o.dropped, Ordering::Relaxed);
    }

    /// Adds one worker's sessions (a listing) and how many matched there.
    pub fn add_sessions(&self, mut views: Vec<SessionView>, matched: u64) {
        self.total.fetch_add(matched, Ordering::Relaxed);
        let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        s.append(&mut views);
    }

    /// Counts a pong that answered the operation's ping, if still in time.
    pub fn pong(&self) {
        if !self.closed.load(Ordering::Acquire) {
            self.pongs.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether pongs still count.
    pub fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }

    /// One worker has answered.
    pub fn worker_done(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.waker.wake();
        }
    }

    /// Whether every worker has answered.
    pub fn is_done(&self) -> bool {
        self.remaining.load(Ordering::Acquire) == 0
    }

    /// Waits until every worker has answered.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.is_done() {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            if self.is_done() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Stops counting pongs and returns the counts so far.
    pub fn close(&self) -> Outcome {
        self.closed.store(true, Ordering::Release);
        self.outcome()
    }

    /// The counts so far (without pongs: see [`Tally::pongs`]).
    pub fn outcome(&self) -> Outcome {
        Outcome {
            matched: self.matched.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            pongs: None,
        }
    }

    /// Pongs counted so far.
    pub fn pongs(&self) -> u64 {
        self.pongs.load(Ordering::Relaxed)
    }

    /// The listing gathered: every worker's sessions, ordered by id, and how
    /// many matched in all.
    pub fn take_sessions(&self) -> (Vec<SessionView>, u64) {
        let mut s = std::mem::take(&mut *self.sessions.lock().unwrap_or_else(|e| e.into_inner()));
        s.sort_by_key(|v| v.local);
        (s, self.total.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::ops::{OpKind, Payload};

    fn op(filter: Filter) -> Op {
        Op {
            kind: OpKind::Publish {
                frame: Payload::Text("x".into()).to_frame(),
            },
            filter,
            scope: None,
            single: None,
        }
    }

    #[test]
    fn an_op_reaches_every_worker_or_only_the_owners_of_its_ids() {
        let ids = ConnIds::with_tag(7);
        let r = Router::new(3, ids.clone());
        let t = r.apply(op(Filter::default()));
        for w in 0..3 {
            assert!(matches!(
                r.inbox(w).unwrap().try_next(),
                Some(Command::Apply { .. })
            ));
        }
        assert!(!t.is_done());
        let include = vec![ids.format((2 << 48) | 5), "stranger-1-1".into()];
        let t2 = r.apply(op(Filter {
            include: Some(include),
            ..Filter::default()
        }));
        assert!(r.inbox(0).unwrap().try_next().is_none());
        assert!(r.inbox(1).unwrap().try_next().is_none());
        assert!(r.inbox(2).unwrap().try_next().is_some());
        t2.worker_done();
        assert!(t2.is_done());
        // No id of ours: no worker to ask, and the tally is done at once.
        let t3 = r.apply(op(Filter {
            include: Some(vec!["nope".into()]),
            ..Filter::default()
        }));
        assert!(t3.is_done());
        assert_eq!(t3.outcome(), Outcome::default());
    }

    #[test]
    fn tallies_sum_and_stop_counting_pongs_when_closed() {
        let t = Tally::new(2);
        let o = Outcome {
            matched: 3,
            delivered: 2,
            skipped: 1,
            dropped: 0,
            pongs: None,
        };
        t.add(&o);
        t.add(&o);
        t.worker_done();
        assert!(!t.is_done());
        t.worker_done();
        assert!(t.is_done());
        t.pong();
        assert_eq!(t.close().matched, 6);
        t.pong();
        assert_eq!(t.pongs(), 1);
    }
}
