//! `wslb bench sse`: echo round trips through the balancer's Server-Sent
//! Events fallback. Each connection opens an event stream (a GET with
//! `Accept: text/event-stream` on a TCP connection of its own), learns its
//! session from the `open` event, then POSTs one text message at a time to
//! `/_lb/sse/<T>` over a second, kept-alive connection and waits for the
//! echo to come back as the next event; latency is from the POST to that
//! event. Each echo must carry the next event id and exactly the bytes sent
//! (every message starts with its sequence number, so a lost, duplicated or
//! reordered echo is caught). A session ends with a DELETE and its `close`
//! event. Options, warm-up window and output follow `wslb bench ws`.

use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::procstat::Watch;
use super::runner::{run_threads_with, Pacer, Plan, Shared, Worker};
use super::sse_session::{Session, SseJob};
use super::stats::{RunInfo, Summary};
use super::url::Scheme;
use super::ws_window;
use super::{check_common, check_rate, BenchError, CommonArgs};

/// `wslb bench sse`.
#[derive(clap::Args, Debug, Clone)]
pub struct SseArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Message size in bytes (text: a sequence number, then letters).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Total messages per second (open loop).
    #[arg(long)]
    pub rate: Option<f64>,
    /// At most this many seconds of warm-up, as for `bench ws`: sessions
    /// open at --open-rate; the --duration window opens 2 s after the last
    /// is up; only round trips sent in it count, and --watch-pid processes'
    /// CPU is read at its edges.
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// Sessions opened per second during the warm-up.
    #[arg(long, default_value_t = 1000.0)]
    pub open_rate: f64,
    /// Processes whose CPU is measured over the window (repeat or comma-separate).
    #[arg(long = "watch-pid", value_name = "PID", value_delimiter = ',')]
    pub watch_pids: Vec<u32>,
}

/// Run the SSE echo bench and summarize it.
pub fn run(a: SseArgs) -> Result<(Summary, bool), BenchError> {
    let c = &a.common;
    let target = check_common(c, Scheme::Http)?;
    check_rate(a.rate)?;
    if c.connections == 0 {
        return Err(BenchError::Args("-c must be at least 1".into()));
    }
    if !(a.warmup >= 0.0 && a.warmup.is_finite()) {
        return Err(BenchError::Args("--warmup must be zero or positive".into()));
    }
    if a.warmup > 0.0 && !(a.open_rate > 0.0 && a.open_rate.is_finite()) {
        return Err(BenchError::Args("--open-rate must be positive".into()));
    }
    let warmup = Duration::from_secs_f64(a.warmup);
    let duration = Duration::from_secs_f64(c.duration.unwrap_or(10.0));
    let plan = Plan {
        threads: c.threads,
        cpu: c.cpu,
        connections: c.connections,
        // With a warm-up, the window thread stops the run.
        duration: warmup.is_zero().then_some(duration),
        unit: "msg",
    };
    let mut job = SseJob {
        target,
        size: a.size,
        rate: a.rate,
        connections: c.connections,
        timeout: Duration::from_secs_f64(c.timeout),
        ramp: None,
        reports: Arc::new(AtomicU32::new(0)),
    };
    let shared = Arc::new(Shared::default());
    let watch = Watch::new(a.watch_pids.clone());
    let window = ws_window::start(
        a.open_rate,
        &shared,
        c.connections,
        warmup,
        Some(duration),
        &watch,
    )?;
    job.ramp = window.as_ref().map(|(ramp, _)| ramp.clone());
    let window = window.map(|(_, thread)| thread);
    let (stats, elapsed) = run_threads_with(&plan, shared, move |w| {
        let job = Rc::new(job.clone());
        async move {
            let w = Rc::new(w);
            let handles: Vec<_> = (0..w.conns.len())
                .map(|slot| monoio::spawn(session_main(Rc::clone(&job), Rc::clone(&w), slot)))
                .collect();
            for h in handles {
                h.await;
            }
        }
    })?;
    let info = RunInfo {
        mode: "sse-echo",
        url: c.url.clone(),
        connections: c.connections,
        threads: plan.threads.min(c.connections),
        rate: a.rate,
        message_size: Some(a.size),
    };
    let summary = ws_window::summarize(&stats, info, elapsed, window, &watch)?;
    Ok((summary, c.json))
}

/// One connection slot: sessions one after another until the stop. Round
/// trips are bounded by --timeout rather than cut by the stop, so every
/// session that ends cleanly ends with its DELETE and `close` event.
async fn session_main(job: Rc<SseJob>, w: Rc<Worker>, slot: usize) {
    if let Some(ramp) = &job.ramp {
        if !w
            .stop
            .sleep_until(slot, ramp.open_at(w.conns.start + slot))
            .await
        {
            return;
        }
    }
    let global = w.conns.start + slot;
    while !w.stop.is_fired() {
        let mut s = match Session::open(&job, global).await {
            Ok(s) => s,
            Err(kind) => {
                w.err(kind);
                w.stop
                    .sleep_until(slot, Instant::now() + Duration::from_millis(10))
                    .await;
                continue;
            }
        };
        w.stats.borrow_mut().connects += 1;
        w.shared.open.fetch_add(1, Ordering::Relaxed);
        // The schedule starts once the session is up (opening is not measured).
        let mut pacer = Pacer::new(job.rate, job.connections);
        let failed = loop {
            let Some(began) = pacer.wait(&w.stop, slot).await else {
                break None;
            };
            let r = s.round_trip(&job).await;
            s.flush_bytes(&w);
            match r {
                Ok(at) => {
                    let counts = job.ramp.as_ref().is_none_or(|r| r.counts(began));
                    if counts && !w.stop.is_fired() {
                        w.op(at.saturating_duration_since(began));
                    }
                }
                Err(kind) => break Some(kind),
            }
        };
        w.shared.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(kind) = failed {
            w.err(kind);
        }
        let ended = s.end(&job, failed.is_none()).await;
        s.flush_bytes(&w);
        if let Err(kind) = ended {
            w.err(kind);
        }
        if failed.is_some() {
            w.stop
                .sleep_until(slot, Instant::now() + Duration::from_millis(10))
                .await;
        }
    }
}
