//! Thread-per-core driver of the load generator: one std thread per `--threads`,
//! each pinned (optionally) and running its own monoio runtime; a stop signal
//! (deadline, SIGINT/SIGTERM) that wakes every connection task; and the
//! once-a-second progress line on stderr.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::ops::Range;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::stats::Stats;
use super::BenchError;

/// Counters every thread bumps so the main thread can print progress.
#[derive(Default)]
pub struct Shared {
    /// Set by SIGINT/SIGTERM or by the main thread: stop now.
    pub stop: Arc<AtomicBool>,
    /// Operations completed so far.
    pub ops: AtomicU64,
    /// Errors so far.
    pub errors: AtomicU64,
    /// Connections currently open.
    pub open: AtomicI64,
}

/// How to split and run the work.
pub struct Plan {
    /// Worker threads.
    pub threads: usize,
    /// First core to pin to (thread i goes to core cpu + i).
    pub cpu: Option<usize>,
    /// Connections to spread over the threads.
    pub connections: usize,
    /// Run time; `None` means until SIGINT/SIGTERM.
    pub duration: Option<Duration>,
    /// Word for the progress line ("req", "msg", "sess", "conns").
    pub unit: &'static str,
}

/// What one worker thread gets.
pub struct Worker {
    /// Global connection numbers this thread runs.
    pub conns: Range<usize>,
    /// Cross-thread counters.
    pub shared: Arc<Shared>,
    /// Fires at the deadline or on a signal.
    pub stop: Rc<LocalStop>,
    /// This thread's measurements.
    pub stats: Rc<RefCell<Stats>>,
}

/// A thread-local stop signal; each connection task waits on its own slot.
pub struct LocalStop {
    fired: Cell<bool>,
    wakers: RefCell<Vec<Option<Waker>>>,
}

impl LocalStop {
    fn new(slots: usize) -> LocalStop {
        LocalStop {
            fired: Cell::new(false),
            wakers: RefCell::new(vec![None; slots]),
        }
    }

    /// Has the stop fired?
    pub fn is_fired(&self) -> bool {
        self.fired.get()
    }

    fn fire(&self) {
        self.fired.set(true);
        let wakers: Vec<Option<Waker>> = self
            .wakers
            .borrow_mut()
            .iter_mut()
            .map(Option::take)
            .collect();
        for w in wakers.into_iter().flatten() {
            w.wake();
        }
    }

    fn poll_fired(&self, slot: usize, cx: &mut Context<'_>) -> bool {
        if self.fired.get() {
            return true;
        }
        let mut wakers = self.wakers.borrow_mut();
        if slot >= wakers.len() {
            wakers.resize(slot + 1, None);
        }
        match &mut wakers[slot] {
            Some(w) if w.will_wake(cx.waker()) => {}
            other => *other = Some(cx.waker().clone()),
        }
        false
    }

    /// Run `fut` unless the stop fires first (then `None`; `fut` is dropped,
    /// which cancels its in-flight I/O).
    pub async fn or_stop<F: Future>(&self, slot: usize, fut: F) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            if self.poll_fired(slot, cx) {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await
    }

    /// Sleep until `at`, or until the stop fires (returns false then).
    pub async fn sleep_until(&self, slot: usize, at: Instant) -> bool {
        let now = Instant::now();
        if at <= now {
            return !self.is_fired();
        }
        let sleep = monoio::time::sleep_until(monoio::time::Instant::from_std(at));
        self.or_stop(slot, sleep).await.is_some()
    }
}

/// Fire `stop` at the deadline or when the shared flag is raised.
async fn watch(stop: Rc<LocalStop>, shared: Arc<Shared>, deadline: Option<Instant>) {
    loop {
        let now = Instant::now();
        if shared.stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| now >= d) {
            stop.fire();
            return;
        }
        let mut step = Duration::from_millis(50);
        if let Some(d) = deadline {
            step = step.min(d - now);
        }
        monoio::time::sleep(step).await;
    }
}

/// Pieces of one finished thread.
struct ThreadResult {
    stats: Stats,
    stopped_at: Instant,
}

/// Run `body` on `plan.threads` threads and return the merged statistics and
/// the measured wall time (start to stop).
pub fn run_threads<F, Fut>(plan: &Plan, body: F) -> Result<(Stats, Duration), BenchError>
where
    F: Fn(Worker) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()>,
{
    run_threads_with(plan, Arc::new(Shared::default()), body)
}

/// As [`run_threads`], with counters and a stop flag the caller shares with
/// threads of its own (the fan-out publisher raises `stop` when it is done).
pub fn run_threads_with<F, Fut>(
    plan: &Plan,
    shared: Arc<Shared>,
    body: F,
) -> Result<(Stats, Duration), BenchError>
where
    F: Fn(Worker) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()>,
{
    let threads = plan.threads.clamp(1, plan.connections.max(1));
    for sig in [libc::SIGINT, libc::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&shared.stop)).map_err(BenchError::Signal)?;
    }
    let body = Arc::new(body);
    let start = Instant::now();
    let deadline = plan.duration.map(|d| start + d);
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut handles = Vec::with_capacity(threads);
    for index in 0..threads {
        let lo = plan.connections * index / threads;
        let hi = plan.connections * (index + 1) / threads;
        let shared = Arc::clone(&shared);
        let body = Arc::clone(&body);
        let core = plan
            .cpu
            .and_then(|c| cores.iter().find(|id| id.id == c + index).copied());
        if plan.cpu.is_some() && core.is_none() {
            tracing::warn!(thread = index, "no such core to pin to; running unpinned");
        }
        let handle = std::thread::Builder::new()
            .name(format!("bench-{index}"))
            .spawn(move || -> Result<ThreadResult, BenchError> {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                    .enable_timer()
                    .build()
                    .map_err(BenchError::Runtime)?;
                let stop = Rc::new(LocalStop::new(hi - lo));
                let stats = Rc::new(RefCell::new(Stats::new()));
                let worker = Worker {
                    conns: lo..hi,
                    shared: Arc::clone(&shared),
                    stop: Rc::clone(&stop),
                    stats: Rc::clone(&stats),
                };
                let mut stopped_at = None;
                rt.block_on(async {
                    monoio::spawn(watch(Rc::clone(&stop), shared, deadline));
                    body(worker).await;
                    stopped_at = Some(Instant::now());
                });
                let stats = stats.replace(Stats::new());
                Ok(ThreadResult {
                    stats,
                    stopped_at: stopped_at.unwrap_or_else(Instant::now),
                })
            })
            .map_err(BenchError::Thread)?;
        handles.push(handle);
    }

    progress_loop(&shared, &handles, plan.unit, start);

    let mut total = Stats::new();
    let mut end = start;
    for h in handles {
        let r = h.join().map_err(|_| BenchError::Panicked)??;
        total.merge(&r.stats);
        end = end.max(r.stopped_at);
    }
    let mut elapsed = end - start;
    if let Some(d) = plan.duration {
        // Tasks finish a moment after the deadline; the measurement window is the deadline.
        elapsed = elapsed.min(d);
    }
    Ok((total, elapsed))
}

fn progress_loop<T>(
    shared: &Shared,
    handles: &[std::thread::JoinHandle<T>],
    unit: &str,
    start: Instant,
) {
    let mut last_ops = 0u64;
    let mut last_t = start;
    let mut next = start + Duration::from_secs(1);
    while handles.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(20));
        let now = Instant::now();
        if now < next {
            continue;
        }
        next += Duration::from_secs(1);
        let ops = shared.ops.load(Ordering::Relaxed);
        let dt = (now - last_t).as_secs_f64().max(1e-9);
        eprintln!(
            "bench: {:>4.0}s  {:>10.0} {unit}/s  total {ops}  errors {}  open {}",
            (now - start).as_secs_f64(),
            (ops - last_ops) as f64 / dt,
            shared.errors.load(Ordering::Relaxed),
            shared.open.load(Ordering::Relaxed),
        );
        last_ops = ops;
        last_t = now;
    }
}

impl Worker {
    /// Record a completed operation in the thread stats and the progress counter.
    pub fn op(&self, latency: Duration) {
        self.stats.borrow_mut().record(latency);
        self.shared.ops.fetch_add(1, Ordering::Relaxed);
    }

    /// Count an error.
    pub fn err(&self, kind: super::stats::ErrorKind) {
        self.stats.borrow_mut().error(kind);
        self.shared.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Move a connection's byte counts into the stats.
    pub fn flush_bytes(&self, conn: &mut super::conn::Conn) {
        let (sent, received) = conn.take_counts();
        self.bytes(sent, received);
    }

    /// Add socket byte counts.
    pub fn bytes(&self, sent: u64, received: u64) {
        let mut s = self.stats.borrow_mut();
        s.bytes_sent += sent;
        s.bytes_received += received;
    }
}

/// Open-loop scheduling for one connection: its share of a total rate, with
/// a random phase so connections do not fire in lockstep.
pub struct Pacer {
    interval: Option<Duration>,
    next: Instant,
}

impl Pacer {
    /// `rate` is the total over `connections`; `None` means closed loop.
    pub fn new(rate: Option<f64>, connections: usize) -> Pacer {
        let interval =
            rate.map(|r| Duration::from_secs_f64(connections.max(1) as f64 / r.max(1e-3)));
        let phase = interval
            .map(|i| i.mul_f64(fastrand::f64()))
            .unwrap_or_default();
        Pacer {
            interval,
            next: Instant::now() + phase,
        }
    }

    /// Wait for the next send slot; returns the instant latency counts from,
    /// or `None` if the stop fired. Behind schedule, that is the intended send
    /// time (coordinated omission correction); ahead of it, we sleep and count
    /// from the wake-up, since timer lateness is ours, not the server's.
    pub async fn wait(&mut self, stop: &LocalStop, slot: usize) -> Option<Instant> {
        let Some(iv) = self.interval else {
            return (!stop.is_fired()).then(Instant::now);
        };
        let intended = self.next;
        self.next += iv;
        if Instant::now() < intended {
            if !stop.sleep_until(slot, intended).await {
                return None;
            }
            return Some(Instant::now());
        }
        (!stop.is_fired()).then_some(intended)
    }
}
