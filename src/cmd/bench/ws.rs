//! `wslb bench ws`: echo round trips (closed or open loop, optionally after
//! a warm-up with sessions opened gradually), session setup rate
//! (`--connect-rate`) and idle connections held open (`--hold N`).

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wslb::proto::ws::frame::OpCode;

use super::conn::{Conn, Failure};
use super::procstat::Watch;
use super::runner::{run_threads_with, Pacer, Plan, Shared, Worker};
use super::stats::{ErrorKind, RunInfo, Summary};
use super::url::{Scheme, Target};
use super::ws_session::{close, handshake, next_message, reader, send_message};
use super::ws_window::{self, Ramp};
use super::{check_common, check_rate, BenchError, WsArgs};

/// Read buffer for held idle connections (they only ever see pings).
const HOLD_RBUF: usize = 512;

/// Settings shared by every WebSocket connection task.
#[derive(Debug, Clone)]
struct WsJob {
    target: Target,
    size: usize,
    rate: Option<f64>,
    connections: usize,
    timeout: Duration,
    batch: usize,
    /// Hold mode: connections settled (up or failed) so far, over all threads.
    settled: Arc<AtomicU64>,
    /// Echo with a warm-up: sessions open gradually, and only round trips
    /// inside the measurement window count.
    ramp: Option<Ramp>,
}

/// Run the mode `a` selects and summarize it.
pub fn run(a: WsArgs) -> Result<(Summary, bool), BenchError> {
    let c = &a.common;
    let target = check_common(c, Scheme::Ws)?;
    check_rate(a.rate)?;
    let (mode, unit, connections) = match (a.connect_rate, a.hold) {
        (true, _) => ("ws-connect-rate", "sess", c.connections),
        (false, Some(n)) => ("ws-hold", "conns", n),
        (false, None) => ("ws-echo", "msg", c.connections),
    };
    if connections == 0 {
        return Err(BenchError::Args("need at least one connection".into()));
    }
    if a.batch == 0 {
        return Err(BenchError::Args("--batch must be at least 1".into()));
    }
    if !(a.warmup >= 0.0 && a.warmup.is_finite()) {
        return Err(BenchError::Args("--warmup must be zero or positive".into()));
    }
    if a.warmup > 0.0 && !(a.fanout.open_rate > 0.0 && a.fanout.open_rate.is_finite()) {
        return Err(BenchError::Args("--open-rate must be positive".into()));
    }
    let warmup = Duration::from_secs_f64(a.warmup);
    let duration = match (c.duration, a.hold) {
        (Some(d), _) => Some(Duration::from_secs_f64(d)),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    let plan = Plan {
        threads: c.threads,
        cpu: c.cpu,
        connections,
        // With a warm-up, the window thread stops the run.
        duration: duration.filter(|_| warmup.is_zero()),
        unit,
    };
    let job = WsJob {
        target,
        size: a.size,
        rate: a.rate,
        connections,
        timeout: Duration::from_secs_f64(c.timeout),
        batch: a.batch.div_ceil(plan.threads.max(1)),
        settled: Arc::new(AtomicU64::new(0)),
        ramp: None,
    };
    let shared = Arc::new(Shared::default());
    let watch = Watch::new(a.fanout.watch_pids.clone());
    let mut job = job;
    let open_rate = a.fanout.open_rate;
    let window = ws_window::start(open_rate, &shared, connections, warmup, duration, &watch)?;
    job.ramp = window.as_ref().map(|(ramp, _)| ramp.clone());
    let window = window.map(|(_, thread)| thread);
    let (stats, elapsed) = run_threads_with(&plan, shared, move |w| {
        let job = Rc::new(job.clone());
        async move {
            match mode {
                "ws-connect-rate" => spawn_all(job, w, session_main).await,
                "ws-hold" => hold_thread(job, w).await,
                _ => spawn_all(job, w, echo_main).await,
            }
        }
    })?;
    let info = RunInfo {
        mode,
        url: c.url.clone(),
        connections,
        threads: plan.threads.min(connections),
        rate: a.rate,
        message_size: a.hold.is_none().then_some(a.size),
    };
    let summary = ws_window::summarize(&stats, info, elapsed, window, &watch)?;
    Ok((summary, c.json))
}

async fn spawn_all<F, Fut>(job: Rc<WsJob>, w: Worker, task: F)
where
    F: Fn(Rc<WsJob>, Rc<Worker>, usize) -> Fut,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let w = Rc::new(w);
    let handles: Vec<_> = (0..w.conns.len())
        .map(|slot| monoio::spawn(task(Rc::clone(&job), Rc::clone(&w), slot)))
        .collect();
    for h in handles {
        h.await;
    }
}

/// Connect and upgrade, with the connect timeout over both.
async fn open(job: &WsJob, w: &Worker, slot: usize, rcap: usize) -> Result<Conn, Failure> {
    let fut = async {
        let mut conn = Conn::connect_with(job.target.addr, job.timeout, rcap)
            .await
            .map_err(Failure::Error)?;
        handshake(&mut conn, &job.target, &w.stop, slot).await?;
        Ok(conn)
    };
    match monoio::time::timeout(job.timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(Failure::Error(ErrorKind::Timeout)),
    }
}

fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|_| fastrand::u8(..)).collect()
}

async fn echo_main(job: Rc<WsJob>, w: Rc<Worker>, slot: usize) {
    let data = payload(job.size);
    if let Some(ramp) = &job.ramp {
        if !w
            .stop
            .sleep_until(slot, ramp.open_at(w.conns.start + slot))
            .await
        {
            return;
        }
    }
    while !w.stop.is_fired() {
        let mut conn = match open(&job, &w, slot, 64 * 1024).await {
            Ok(c) => c,
            Err(Failure::Stopped) => return,
            Err(Failure::Error(kind)) => {
                w.err(kind);
                w.stop
                    .sleep_until(slot, Instant::now() + Duration::from_millis(10))
                    .await;
                continue;
            }
        };
        w.stats.borrow_mut().connects += 1;
        w.shared.open.fetch_add(1, Ordering::Relaxed);
        let mut rd = reader(job.size);
        // The schedule starts once the session is up (opening is not measured).
        let mut pacer = Pacer::new(job.rate, job.connections);
        loop {
            let Some(began) = pacer.wait(&w.stop, slot).await else {
                break;
            };
            let r = round_trip(&mut conn, &mut rd, &data, &w, slot).await;
            w.flush_bytes(&mut conn);
            match r {
                Ok(()) if job.ramp.as_ref().is_some_and(|r| !r.counts(began)) => {}
                Ok(()) => w.op(began.elapsed()),
                Err(Failure::Stopped) => break,
                Err(Failure::Error(kind)) => {
                    w.err(kind);
                    break;
                }
            }
        }
        w.shared.open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn round_trip(
    conn: &mut Conn,
    rd: &mut wslb::proto::ws::message::MessageReader,
    data: &[u8],
    w: &Worker,
    slot: usize,
) -> Result<(), Failure> {
    send_message(conn, OpCode::Binary, data, &w.stop, slot).await?;
    let m = next_message(conn, rd, &w.stop, slot).await?;
    match m.opcode {
        OpCode::Close => Err(Failure::Error(ErrorKind::Closed)),
        _ if m.payload.len() != data.len() => Err(Failure::Error(ErrorKind::Mismatch)),
        _ => Ok(()),
    }
}

/// One session after another: connect, upgrade, one echo, close.
/// Latency recorded is the handshake time (connect start to 101).
async fn session_main(job: Rc<WsJob>, w: Rc<Worker>, slot: usize) {
    let data = payload(job.size);
    while !w.stop.is_fired() {
        let began = Instant::now();
        let mut conn = match open(&job, &w, slot, 16 * 1024).await {
            Ok(c) => c,
            Err(Failure::Stopped) => return,
            Err(Failure::Error(kind)) => {
                w.err(kind);
                w.stop
                    .sleep_until(slot, Instant::now() + Duration::from_millis(10))
                    .await;
                continue;
            }
        };
        let handshake_time = began.elapsed();
        w.stats.borrow_mut().connects += 1;
        let mut rd = reader(job.size);
        let mut r = round_trip(&mut conn, &mut rd, &data, &w, slot).await;
        if r.is_ok() {
            r = close(&mut conn, &mut rd, &w.stop, slot).await;
        }
        w.flush_bytes(&mut conn);
        match r {
            Ok(()) => w.op(handshake_time),
            Err(Failure::Stopped) => return,
            Err(Failure::Error(kind)) => w.err(kind),
        }
    }
}

/// Open this thread's share in batches, then hold them until the stop.
async fn hold_thread(job: Rc<WsJob>, w: Worker) {
    let w = Rc::new(w);
    let total = job.connections as u64;
    let mut slots = 0..w.conns.len();
    let mut holders = Vec::new();
    while !w.stop.is_fired() && !slots.is_empty() {
        let batch: Vec<usize> = slots.by_ref().take(job.batch).collect();
        let opens: Vec<_> = batch
            .into_iter()
            .map(|slot| {
                let (job, w) = (Rc::clone(&job), Rc::clone(&w));
                monoio::spawn(async move {
                    let began = Instant::now();
                    let r = open(&job, &w, slot, HOLD_RBUF).await;
                    (slot, r, began.elapsed())
                })
            })
            .collect();
        for h in opens {
            let (slot, r, took) = h.await;
            match r {
                Ok(conn) => {
                    w.op(took);
                    w.stats.borrow_mut().connects += 1;
                    w.shared.open.fetch_add(1, Ordering::Relaxed);
                    holders.push(monoio::spawn(hold_one(Rc::clone(&w), conn, slot)));
                }
                Err(Failure::Stopped) => {}
                Err(Failure::Error(kind)) => w.err(kind),
            }
            let settled = job.settled.fetch_add(1, Ordering::Relaxed) + 1;
            if settled == total {
                let up = w.shared.open.load(Ordering::Relaxed);
                if up as u64 == total {
                    eprintln!("holding {up}");
                } else {
                    eprintln!(
                        "holding {up} ({total} requested, {} failed)",
                        total - up as u64
                    );
                }
            }
        }
    }
    let mut held = 0u64;
    for h in holders {
        if h.await {
            held += 1;
        }
    }
    w.stats.borrow_mut().held = held;
}

/// Keep one idle connection open, answering pings; true if it lasted to the stop.
async fn hold_one(w: Rc<Worker>, mut conn: Conn, slot: usize) -> bool {
    let mut rd = reader(125);
    let r = loop {
        match next_message(&mut conn, &mut rd, &w.stop, slot).await {
            Ok(m) if m.opcode == OpCode::Close => break Err(Failure::Error(ErrorKind::Closed)),
            Ok(_) => continue,
            Err(e) => break Err(e),
        }
    };
    w.flush_bytes(&mut conn);
    match r {
        Err(Failure::Stopped) => true,
        Err(Failure::Error(kind)) => {
            w.err(kind);
            w.shared.open.fetch_sub(1, Ordering::Relaxed);
            false
        }
        Ok(()) => true,
    }
}
