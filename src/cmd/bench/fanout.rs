//! `wslb bench ws --subscribe CHANNEL`: fan-out. `-c N` sessions open
//! through the proxy at `--open-rate` with `?subscribe=CHANNEL` (the echo
//! backend then names the channel in its 101; Pushpin's origin subscribes
//! them itself), and a publisher thread in the same process publishes to
//! the proxy's publish API (see `fanout_drive`). The subscribers read the
//! send time out of each payload, so publish-to-receive needs no clock sync.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wslb::proto::ws::frame::{parse_header, FrameLimits, OpCode};

use super::conn::{Conn, Failure};
use super::fanout_drive::{drive, Board, DriveCfg};
use super::fanout_report::{
    parse_payload, subscribe_path, FanoutSummary, Phase, PhaseStats, RateReport, SaturationReport,
    MIN_PAYLOAD,
};
use super::procstat::Watch;
use super::publisher::{PublishFormat, Publisher, DEFAULT_PUBLISH_URL};
use super::runner::{run_threads_with, Plan, Shared, Worker};
use super::stats::ErrorKind;
use super::url::{Scheme, Target};
use super::ws_session::{handshake, send_message};
use super::{check_common, BenchError, WsArgs};

/// Initial read buffer per subscriber (it grows if a burst needs it).
const SUB_RBUF: usize = 4096;
/// Tries to open each session (a proxy may refuse some of a burst: Pushpin
/// answers 502 when its origin falls behind); every failure is counted.
const OPEN_ATTEMPTS: u32 = 5;
/// Largest frame a subscriber accepts.
const MAX_FRAME: u64 = 1 << 20;

/// The fan-out flags of `wslb bench ws`.
#[derive(clap::Args, Debug, Clone)]
pub struct FanoutArgs {
    /// Fan-out: -c sessions subscribe to CHANNEL; a publisher measures
    /// deliveries/s at saturation (--duration), then publish-to-receive
    /// latency at --publish-rate (--rate-duration).
    #[arg(long, value_name = "CHANNEL", conflicts_with_all = ["connect_rate", "hold", "rate"])]
    pub subscribe: Option<String>,
    /// Where to publish (wslb's admin API, or Pushpin's http://HOST:5561/publish/).
    #[arg(long, default_value = DEFAULT_PUBLISH_URL)]
    pub publish_url: String,
    /// The publish API's body format.
    #[arg(long, value_enum, default_value_t = PublishFormat::Wslb)]
    pub publish_format: PublishFormat,
    /// Bearer token for the publish API (wslb's --admin-token).
    #[arg(long)]
    pub publish_token: Option<String>,
    /// Publishes per second in the latency phase.
    #[arg(long, default_value_t = 2.0)]
    pub publish_rate: f64,
    /// Seconds of the latency phase (default: --duration).
    #[arg(long)]
    pub rate_duration: Option<f64>,
    /// Saturation: most publishes whose deliveries may be outstanding.
    #[arg(long, default_value_t = 4)]
    pub in_flight: u64,
    /// Sessions opened per second while subscribing.
    #[arg(long, default_value_t = 1000.0)]
    pub open_rate: f64,
    /// Processes whose CPU and RSS are measured (all of the proxy's; repeat or comma-separate).
    #[arg(long = "watch-pid", value_name = "PID", value_delimiter = ',')]
    pub watch_pids: Vec<u32>,
}

impl Default for FanoutArgs {
    fn default() -> Self {
        FanoutArgs {
            subscribe: None,
            publish_url: DEFAULT_PUBLISH_URL.into(),
            publish_format: PublishFormat::Wslb,
            publish_token: None,
            publish_rate: 2.0,
            rate_duration: None,
            in_flight: 4,
            open_rate: 1000.0,
            watch_pids: Vec::new(),
        }
    }
}

/// Settings every subscriber task shares.
#[derive(Clone)]
struct SubJob {
    target: Target,
    timeout: Duration,
    /// When session 0 opens; session i opens i / open_rate later.
    start: Instant,
    open_rate: f64,
    board: Arc<Board>,
}

fn positive(v: f64, flag: &str) -> Result<(), BenchError> {
    if v > 0.0 && v.is_finite() {
        Ok(())
    } else {
        Err(BenchError::Args(format!("{flag} must be positive")))
    }
}

/// Run the fan-out bench `a` asks for (`a.fanout.subscribe` is set).
pub fn run(a: &WsArgs) -> Result<(FanoutSummary, bool), BenchError> {
    let (c, f) = (&a.common, &a.fanout);
    let channel = f.subscribe.clone().unwrap_or_default();
    if channel.is_empty() {
        return Err(BenchError::Args("--subscribe needs a channel name".into()));
    }
    let mut target = check_common(c, Scheme::Ws)?;
    target.path = subscribe_path(&target.path, &channel);
    if c.connections == 0 {
        return Err(BenchError::Args("-c must be at least 1".into()));
    }
    if a.size < MIN_PAYLOAD {
        return Err(BenchError::Args(format!(
            "--size must be at least {MIN_PAYLOAD} for the fan-out payload"
        )));
    }
    if f.in_flight == 0 {
        return Err(BenchError::Args("--in-flight must be at least 1".into()));
    }
    positive(f.publish_rate, "--publish-rate")?;
    positive(f.open_rate, "--open-rate")?;
    let saturation = c.duration.unwrap_or(10.0);
    let rate_duration = f.rate_duration.unwrap_or(saturation);
    positive(rate_duration, "--rate-duration")?;
    let publisher = Publisher::new(
        &f.publish_url,
        f.publish_format,
        &channel,
        f.publish_token.clone(),
    )?;
    let cfg = DriveCfg {
        in_flight: f.in_flight,
        saturation: Duration::from_secs_f64(saturation),
        rate: f.publish_rate,
        rate_duration: Duration::from_secs_f64(rate_duration),
        size: a.size,
        publish_url: f.publish_url.clone(),
    };
    let watch = Watch::new(f.watch_pids.clone());
    let rss_before = watch.rss_kib();
    let board = Arc::new(Board::new(c.connections as u64));
    let shared = Arc::new(Shared::default());
    let driver = {
        let (board, stop, watch) = (Arc::clone(&board), Arc::clone(&shared.stop), watch.clone());
        std::thread::Builder::new()
            .name("bench-publish".into())
            .spawn(move || drive(&cfg, &board, &stop, &watch, publisher))
            .map_err(BenchError::Thread)?
    };
    let plan = Plan {
        threads: c.threads,
        cpu: c.cpu,
        connections: c.connections,
        duration: None,
        unit: "deliveries",
    };
    let job = SubJob {
        target,
        timeout: Duration::from_secs_f64(c.timeout),
        start: Instant::now(),
        open_rate: f.open_rate,
        board,
    };
    let collected = Arc::new(Mutex::new(PhaseStats::new()));
    let sink = Arc::clone(&collected);
    let ran = run_threads_with(&plan, Arc::clone(&shared), move |w| {
        subscriber_thread(Rc::new(job.clone()), w, Arc::clone(&sink))
    });
    // Whatever happened to the subscribers, the publisher must end too.
    shared.stop.store(true, Ordering::Relaxed);
    let report = driver.join().map_err(|_| BenchError::Panicked)?;
    let (stats, _) = ran?;
    let phases = collected.lock().map_err(|_| BenchError::Panicked)?;
    let lat = |p: Phase| phases.by_phase[p as usize].latency();
    let saturation = report.saturation.as_ref().map(|s| SaturationReport {
        duration_s: (s.secs * 1000.0).round() / 1000.0,
        in_flight: f.in_flight,
        publishes: s.publishes,
        deliveries: s.deliveries,
        deliveries_per_sec: (s.deliveries as f64 / s.secs.max(1e-9)).round(),
        lost: s.lost,
        proxy_cpu_us_per_delivery: s.cpu_us,
        bench_cores_busy: s.bench_busy,
        latency_us: lat(Phase::Saturation),
    });
    let rate = report.rate.as_ref().map(|r| RateReport {
        publish_rate: f.publish_rate,
        duration_s: r.secs,
        publishes: r.publishes,
        expected: r.expected,
        deliveries: r.delivered,
        lost: r.expected.saturating_sub(r.delivered),
        latency_us: lat(Phase::Rate),
    });
    let per_session = match (rss_before, report.rss_subscribed_kib) {
        (Some(b), Some(s)) if report.subscribed > 0 => {
            Some(s.saturating_sub(b) * 1024 / report.subscribed)
        }
        _ => None,
    };
    let summary = FanoutSummary {
        mode: "ws-fanout",
        url: c.url.clone(),
        publish_url: f.publish_url.clone(),
        publish_format: f.publish_format,
        channel,
        connections: c.connections,
        subscribed: report.subscribed,
        receiving: report.receiving,
        threads: plan.threads.clamp(1, c.connections),
        message_size: a.size,
        publish_error: report.publish_error.clone(),
        saturation,
        rate,
        proxy_rss_kib_before: rss_before,
        proxy_rss_kib_subscribed: report.rss_subscribed_kib,
        proxy_bytes_per_session: per_session,
        publish_answers: report.answers,
        connects: stats.connects,
        errors_total: stats.error_total(),
        errors: stats.error_map(),
    };
    Ok((summary, c.json))
}

/// This thread's sessions: each opens at its turn, then reads until the stop.
async fn subscriber_thread(job: Rc<SubJob>, w: Worker, sink: Arc<Mutex<PhaseStats>>) {
    let w = Rc::new(w);
    let phases = Rc::new(RefCell::new(PhaseStats::new()));
    let first = w.conns.start;
    let tasks: Vec<_> = w
        .conns
        .clone()
        .map(|index| {
            let (job, w, phases) = (Rc::clone(&job), Rc::clone(&w), Rc::clone(&phases));
            monoio::spawn(subscriber(job, w, index - first, index, phases))
        })
        .collect();
    for t in tasks {
        t.await;
    }
    if let Ok(mut all) = sink.lock() {
        all.merge(&phases.borrow());
    }
}

async fn subscriber(
    job: Rc<SubJob>,
    w: Rc<Worker>,
    slot: usize,
    index: usize,
    phases: Rc<RefCell<PhaseStats>>,
) {
    let board = &job.board;
    let mut at = job.start + Duration::from_secs_f64(index as f64 / job.open_rate);
    let mut attempt = 1;
    let mut conn = loop {
        let opened = if w.stop.sleep_until(slot, at).await {
            open(&job, &w, slot).await
        } else {
            Err(Failure::Stopped)
        };
        match opened {
            Ok(conn) => break conn,
            Err(Failure::Error(kind)) if attempt < OPEN_ATTEMPTS => {
                // Counted, then tried again after the others' turns.
                w.err(kind);
                attempt += 1;
                at = Instant::now() + Duration::from_millis(fastrand::u64(200..1000));
            }
            Err(e) => {
                if let Failure::Error(kind) = e {
                    w.err(kind);
                }
                board.settled.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    };
    w.stats.borrow_mut().connects += 1;
    w.shared.open.fetch_add(1, Ordering::Relaxed);
    board.up.fetch_add(1, Ordering::Relaxed);
    board.settled.fetch_add(1, Ordering::Relaxed);
    let r = receive(&job, &w, &mut conn, slot, &phases).await;
    w.flush_bytes(&mut conn);
    if let Err(Failure::Error(kind)) = r {
        w.err(kind);
        board.up.fetch_sub(1, Ordering::Relaxed);
    }
    w.shared.open.fetch_sub(1, Ordering::Relaxed);
}

/// Connect and upgrade, with the timeout over both.
async fn open(job: &SubJob, w: &Worker, slot: usize) -> Result<Conn, Failure> {
    let fut = async {
        let mut conn = Conn::connect_with(job.target.addr, job.timeout, SUB_RBUF)
            .await
            .map_err(Failure::Error)?;
        handshake(&mut conn, &job.target, &w.stop, slot).await?;
        Ok(conn)
    };
    match w
        .stop
        .or_stop(slot, monoio::time::timeout(job.timeout, fut))
        .await
    {
        None => Err(Failure::Stopped),
        Some(Ok(r)) => r,
        Some(Err(_)) => Err(Failure::Error(ErrorKind::Timeout)),
    }
}

/// Read deliveries until the stop or a failure: every whole frame in the
/// buffer is handled in place (no copy, no allocation per message).
async fn receive(
    job: &SubJob,
    w: &Worker,
    conn: &mut Conn,
    slot: usize,
    phases: &RefCell<PhaseStats>,
) -> Result<(), Failure> {
    let limits = FrameLimits::client(MAX_FRAME);
    let protocol = || Failure::Error(ErrorKind::Protocol);
    loop {
        let mut used = 0;
        let mut got = [0u64; 3];
        let mut bad = 0u64;
        let mut ping: Option<Vec<u8>> = None;
        {
            let buf = conn.pending();
            while let Some(h) = parse_header(&buf[used..], &limits).map_err(|_| protocol())? {
                let start = used + usize::from(h.header_len);
                let end = start + h.payload_len as usize;
                let Some(payload) = buf.get(start..end) else {
                    break;
                };
                match h.opcode {
                    OpCode::Text | OpCode::Binary if h.fin => match parse_payload(payload) {
                        Some((phase, _seq, sent_ns)) => {
                            let ns = job.board.now_ns().saturating_sub(sent_ns);
                            let mut p = phases.borrow_mut();
                            p.by_phase[phase as usize].record(Duration::from_nanos(ns));
                            got[phase as usize] += 1;
                        }
                        None => bad += 1,
                    },
                    OpCode::Ping => ping = Some(payload.to_vec()),
                    OpCode::Pong => {}
                    OpCode::Close => return Err(Failure::Error(ErrorKind::Closed)),
                    // Neither proxy fragments a small message.
                    _ => return Err(protocol()),
                }
                used = end;
            }
        }
        conn.consume(used);
        for (phase, n) in Phase::ALL.into_iter().zip(got) {
            if n > 0 {
                job.board.add_delivered(phase, n);
                w.shared.ops.fetch_add(n, Ordering::Relaxed);
            }
        }
        for _ in 0..bad {
            w.err(ErrorKind::Mismatch);
        }
        if let Some(p) = ping {
            send_message(conn, OpCode::Pong, &p, &w.stop, slot).await?;
        }
        match w.stop.or_stop(slot, conn.fill()).await {
            None => return Err(Failure::Stopped),
            Some(Err(_)) => return Err(Failure::Error(ErrorKind::Read)),
            Some(Ok(0)) => return Err(Failure::Error(ErrorKind::Closed)),
            Some(Ok(_)) => {}
        }
    }
}
