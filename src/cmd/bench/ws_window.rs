//! The measurement window of `wslb bench ws` echo with `--warmup S`: the
//! sessions open gradually (`--open-rate`); the window opens [`SETTLE`]
//! after the last one is up, or when the warm-up's S seconds run out if
//! some never come up, and lasts `--duration`. Only round trips sent inside
//! it count, and the `--watch-pid` processes' CPU is read at its edges.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::procstat::Watch;
use super::runner::Shared;

/// Time between the last session coming up and the window: each session's
/// send schedule starts at a random phase within its interval once it is up.
pub const SETTLE: Duration = Duration::from_secs(2);
/// `window_from` before the window has opened.
const NOT_YET: u64 = u64::MAX;

/// Gradual opening and the window's start, shared by every bench thread.
#[derive(Debug, Clone)]
pub struct Ramp {
    start: Instant,
    open_rate: f64,
    /// Nanoseconds from `start` to the window, or [`NOT_YET`].
    window_from: Arc<AtomicU64>,
}

impl Ramp {
    /// Sessions open at `open_rate` per second from `start`.
    pub fn new(start: Instant, open_rate: f64) -> Ramp {
        Ramp {
            start,
            open_rate,
            window_from: Arc::new(AtomicU64::new(NOT_YET)),
        }
    }

    /// When session number `global_slot` opens.
    pub fn open_at(&self, global_slot: usize) -> Instant {
        self.start + Duration::from_secs_f64(global_slot as f64 / self.open_rate)
    }

    /// Does a round trip sent at `began` count (is it inside the window)?
    pub fn counts(&self, began: Instant) -> bool {
        match self.window_from.load(Ordering::Acquire) {
            NOT_YET => false,
            ns => began >= self.start + Duration::from_nanos(ns),
        }
    }

    fn open_window(&self, at: Instant) {
        let ns = u64::try_from((at - self.start).as_nanos()).unwrap_or(NOT_YET - 1);
        self.window_from.store(ns, Ordering::Release);
    }
}

/// What the window thread saw.
#[derive(Debug, Clone, Copy)]
pub struct WindowReport {
    /// Length of the window in seconds (shorter if a signal ended the run).
    pub secs: f64,
    /// Watched processes' CPU ticks at the window's edges.
    pub cpu: (Option<u64>, Option<u64>),
    /// Sessions up when the window opened.
    pub open_at_start: i64,
}

/// Start the thread that opens the window once `sessions` are up (or at
/// `warmup`), closes it `duration` later and then stops the run.
pub fn spawn(
    ramp: Ramp,
    shared: Arc<Shared>,
    sessions: usize,
    warmup: Duration,
    duration: Duration,
    watch: Watch,
) -> std::io::Result<JoinHandle<WindowReport>> {
    std::thread::Builder::new()
        .name("bench-window".into())
        .spawn(move || {
            let stopped = || shared.stop.load(Ordering::Relaxed);
            let all_up = || shared.open.load(Ordering::Relaxed) >= sessions as i64;
            let give_up = ramp.start + warmup;
            while !stopped() && !all_up() && Instant::now() < give_up {
                std::thread::sleep(Duration::from_millis(20));
            }
            if all_up() {
                sleep_until(Instant::now() + SETTLE, &stopped);
            }
            let open_at_start = shared.open.load(Ordering::Relaxed);
            let from = Instant::now();
            ramp.open_window(from);
            let before = watch.cpu_ticks();
            sleep_until(from + duration, &stopped);
            let after = watch.cpu_ticks();
            let secs = from.elapsed().as_secs_f64();
            shared.stop.store(true, Ordering::Relaxed);
            WindowReport {
                secs,
                cpu: (before, after),
                open_at_start,
            }
        })
}

/// With a warm-up (and a run of fixed length): the ramp sessions open on
/// and the window thread (see [`spawn`]); None without.
pub fn start(
    open_rate: f64,
    shared: &Arc<Shared>,
    sessions: usize,
    warmup: Duration,
    duration: Option<Duration>,
    watch: &Watch,
) -> Result<Option<(Ramp, JoinHandle<WindowReport>)>, super::BenchError> {
    let Some(duration) = duration.filter(|_| !warmup.is_zero()) else {
        return Ok(None);
    };
    let ramp = Ramp::new(Instant::now(), open_rate);
    let window = spawn(
        ramp.clone(),
        Arc::clone(shared),
        sessions,
        warmup,
        duration,
        watch.clone(),
    )
    .map_err(super::BenchError::Thread)?;
    Ok(Some((ramp, window)))
}

/// The run's summary: over the whole run without a window; over the window
/// with one (its length, the watched processes' CPU per operation, the
/// sessions up when it opened).
pub fn summarize(
    stats: &super::stats::Stats,
    info: super::stats::RunInfo,
    elapsed: Duration,
    window: Option<JoinHandle<WindowReport>>,
    watch: &Watch,
) -> Result<super::stats::Summary, super::BenchError> {
    let Some(window) = window else {
        return Ok(stats.summary(info, elapsed));
    };
    let report = window.join().map_err(|_| super::BenchError::Panicked)?;
    let mut summary = stats.summary(info, Duration::from_secs_f64(report.secs));
    summary.proxy_cpu_us_per_op = watch.us_per_op(report.cpu.0, report.cpu.1, summary.ops);
    summary.open_at_window = Some(report.open_at_start);
    Ok(summary)
}

/// Sleep until `at`, waking early if `stopped` turns true.
fn sleep_until(at: Instant, stopped: &dyn Fn() -> bool) {
    while !stopped() {
        let now = Instant::now();
        if now >= at {
            return;
        }
        std::thread::sleep((at - now).min(Duration::from_millis(20)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_at_the_rate_and_nothing_counts_before_the_window() {
        let start = Instant::now();
        let ramp = Ramp::new(start, 1000.0);
        assert_eq!(ramp.open_at(0), start);
        assert_eq!(ramp.open_at(500), start + Duration::from_millis(500));
        assert!(!ramp.counts(start + Duration::from_secs(100)));
        ramp.open_window(start + Duration::from_secs(3));
        assert!(!ramp.counts(start + Duration::from_millis(2999)));
        assert!(ramp.counts(start + Duration::from_secs(3)));
    }

    #[test]
    fn the_window_opens_when_the_warmup_runs_out_and_stops_the_run() {
        let shared = Arc::new(Shared::default());
        let ramp = Ramp::new(Instant::now(), 1000.0);
        // Ten sessions wanted, none ever up: the window opens at the warm-up.
        let h = spawn(
            ramp.clone(),
            Arc::clone(&shared),
            10,
            Duration::from_millis(100),
            Duration::from_millis(100),
            Watch::new(Vec::new()),
        )
        .expect("thread");
        let report = h.join().expect("join");
        assert_eq!(report.open_at_start, 0);
        assert!(report.secs >= 0.1 && report.secs < 1.0, "{}", report.secs);
        assert!(shared.stop.load(Ordering::Relaxed));
        assert!(ramp.counts(Instant::now()));
    }
}
