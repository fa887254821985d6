//! The fan-out bench's publisher thread. Once the subscribers are up it
//! samples the proxy's memory, probes until a publish reaches every session,
//! then runs the two measured phases: saturation (publish whenever fewer
//! than `in_flight` publishes' deliveries are outstanding, for a while) and a
//! fixed publish rate (publish-to-receive latency). Each phase is drained
//! before the next starts; then it raises the stop for the subscribers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::{Duration, Instant};

use super::fanout_report::{encode_payload, Phase};
use super::procstat::Watch;
use super::publisher::{PublishOutcome, Publisher};

/// Pause with every session up and idle before RSS is read.
const SETTLE: Duration = Duration::from_secs(1);
/// Probe publishes tried before giving up, and the wait after each.
const PROBES: u32 = 10;
const PROBE_WAIT: Duration = Duration::from_secs(1);
/// Longest the saturation loop sleeps without a wake-up from the subscribers.
const PARK: Duration = Duration::from_millis(20);
/// With no delivery for this long, outstanding ones count as lost and stop
/// holding back the saturation loop.
const STALL: Duration = Duration::from_secs(2);

/// Counters the subscriber threads bump and the publisher reads.
pub struct Board {
    epoch: Instant,
    /// Sessions asked for.
    pub wanted: u64,
    /// Sessions whose opening ended, up or failed.
    pub settled: AtomicU64,
    /// Sessions subscribed and still open.
    pub up: AtomicU64,
    /// Deliveries received, by `Phase as usize`.
    pub delivered: [AtomicU64; 3],
    /// Saturation deliveries at which the parked publisher wants waking
    /// (`u64::MAX`: it is not waiting).
    wake_at: AtomicU64,
    publisher: OnceLock<Thread>,
}

impl Board {
    /// A board for `wanted` sessions; its epoch is now.
    pub fn new(wanted: u64) -> Board {
        Board {
            epoch: Instant::now(),
            wanted,
            settled: AtomicU64::new(0),
            up: AtomicU64::new(0),
            delivered: Default::default(),
            wake_at: AtomicU64::new(u64::MAX),
            publisher: OnceLock::new(),
        }
    }

    /// Count `n` deliveries of `phase` (a subscriber thread, once per read);
    /// wakes the publisher when saturation deliveries reach what it waits for.
    pub fn add_delivered(&self, phase: Phase, n: u64) {
        if phase != Phase::Saturation {
            self.delivered[phase as usize].fetch_add(n, Ordering::Relaxed);
            return;
        }
        // SeqCst pairs with `wait_delivered`: either it sees this count, or
        // this sees its `wake_at`.
        let total = self.delivered[phase as usize].fetch_add(n, Ordering::SeqCst) + n;
        if total >= self.wake_at.load(Ordering::SeqCst) {
            self.wake_at.store(u64::MAX, Ordering::SeqCst);
            if let Some(t) = self.publisher.get() {
                t.unpark();
            }
        }
    }

    /// The publisher: sleep until saturation deliveries reach `target`, for
    /// at most `PARK`.
    fn wait_delivered(&self, target: u64) {
        self.wake_at.store(target, Ordering::SeqCst);
        if self.delivered[Phase::Saturation as usize].load(Ordering::SeqCst) < target {
            std::thread::park_timeout(PARK);
        }
        self.wake_at.store(u64::MAX, Ordering::SeqCst);
    }

    /// Nanoseconds since the epoch (the clock payload timestamps use).
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn delivered(&self, p: Phase) -> u64 {
        self.delivered[p as usize].load(Ordering::Relaxed)
    }

    fn up(&self) -> u64 {
        self.up.load(Ordering::Relaxed)
    }
}

/// How to publish.
#[derive(Debug, Clone)]
pub struct DriveCfg {
    pub in_flight: u64,
    pub saturation: Duration,
    pub rate: f64,
    pub rate_duration: Duration,
    pub size: usize,
    pub publish_url: String,
}

/// The saturation window as measured.
#[derive(Debug, Clone, Default)]
pub struct SatWindow {
    pub secs: f64,
    pub publishes: u64,
    pub deliveries: u64,
    pub lost: u64,
    pub cpu_us: Option<f64>,
    /// Cores this bench process kept busy (near 1.0 on one load core: the
    /// client, not the proxy, set the pace).
    pub bench_busy: Option<f64>,
}

/// The fixed-rate phase as measured.
#[derive(Debug, Clone, Default)]
pub struct RateWindow {
    pub secs: f64,
    pub publishes: u64,
    pub expected: u64,
    pub delivered: u64,
}

/// What the publisher thread found.
#[derive(Debug, Clone, Default)]
pub struct DriveReport {
    pub subscribed: u64,
    pub receiving: u64,
    pub rss_subscribed_kib: Option<u64>,
    pub publish_error: Option<String>,
    pub saturation: Option<SatWindow>,
    pub rate: Option<RateWindow>,
    pub answers: Option<PublishOutcome>,
}

struct Driver<'a> {
    cfg: &'a DriveCfg,
    board: &'a Board,
    stop: &'a AtomicBool,
    publisher: Publisher,
    answers: Option<PublishOutcome>,
    expected: [u64; 3],
    seq: u64,
}

/// Run the publisher's side to the end, then raise `stop`.
pub fn drive(
    cfg: &DriveCfg,
    board: &Board,
    stop: &AtomicBool,
    watch: &Watch,
    publisher: Publisher,
) -> DriveReport {
    let mut r = DriveReport::default();
    let _ = board.publisher.set(std::thread::current());
    let mut d = Driver {
        cfg,
        board,
        stop,
        publisher,
        answers: None,
        expected: [0; 3],
        seq: 0,
    };
    while board.settled.load(Ordering::Relaxed) < board.wanted && !d.stopped() {
        std::thread::sleep(Duration::from_millis(10));
    }
    r.subscribed = board.up();
    if r.subscribed == 0 && !d.stopped() {
        r.publish_error = Some("no session subscribed".into());
    } else if d.sleep_until(Instant::now() + SETTLE) {
        r.rss_subscribed_kib = watch.rss_kib();
        if let Err(e) = d.phases(&mut r, watch) {
            r.publish_error = Some(format!("{}: {e}", cfg.publish_url));
        }
    }
    r.answers = d.answers;
    stop.store(true, Ordering::Relaxed);
    r
}

impl Driver<'_> {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleep until `at` unless the stop is raised first (false then).
    fn sleep_until(&self, at: Instant) -> bool {
        loop {
            if self.stopped() {
                return false;
            }
            let now = Instant::now();
            if now >= at {
                return true;
            }
            std::thread::sleep((at - now).min(Duration::from_millis(50)));
        }
    }

    /// One publish of `phase`; it expects a delivery to every open session.
    fn publish(&mut self, phase: Phase) -> Result<(), String> {
        let up = self.board.up();
        let text = encode_payload(phase, self.seq, self.board.now_ns(), self.cfg.size);
        self.seq += 1;
        let outcome = self.publisher.publish(&text).map_err(|e| e.to_string())?;
        if let Some(o) = outcome {
            self.answers.get_or_insert_with(Default::default).add(&o);
        }
        self.expected[phase as usize] += up;
        Ok(())
    }

    /// Wait until `phase` has `target` deliveries, none came for `quiet`,
    /// `cap` passed or the stop was raised; the deliveries then.
    fn wait_for(&self, phase: Phase, target: u64, quiet: Duration, cap: Duration) -> u64 {
        let start = Instant::now();
        let (mut last, mut moved) = (self.board.delivered(phase), start);
        loop {
            let d = self.board.delivered(phase);
            let now = Instant::now();
            if d != last {
                (last, moved) = (d, now);
            }
            if d >= target || self.stopped() || now - moved > quiet || now - start > cap {
                return d;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn phases(&mut self, r: &mut DriveReport, watch: &Watch) -> Result<(), String> {
        self.probe(r)?;
        self.saturate(r, watch)?;
        self.fixed_rate(r)
    }

    /// Publish probes until one reaches every open session.
    fn probe(&mut self, r: &mut DriveReport) -> Result<(), String> {
        for _ in 0..PROBES {
            let before = self.board.delivered(Phase::Probe);
            let up = self.board.up();
            self.publish(Phase::Probe)?;
            let after = self.wait_for(Phase::Probe, before + up, PROBE_WAIT, PROBE_WAIT);
            r.receiving = (after - before).min(up);
            if r.receiving >= up || self.stopped() {
                break;
            }
        }
        if r.receiving == 0 && !self.stopped() {
            return Err("no subscribed session received a probe publish".into());
        }
        let all = self.expected[Phase::Probe as usize];
        let quiet = Duration::from_millis(300);
        self.wait_for(Phase::Probe, all, quiet, Duration::from_secs(2));
        Ok(())
    }

    fn saturate(&mut self, r: &mut DriveReport, watch: &Watch) -> Result<(), String> {
        let p = Phase::Saturation;
        let t0 = Instant::now();
        let end = t0 + self.cfg.saturation;
        let me = Watch::new(vec![std::process::id()]);
        let (cpu0, d0, me0) = (watch.cpu_ticks(), self.board.delivered(p), me.cpu_ticks());
        let (mut publishes, mut written_off) = (0u64, 0u64);
        let (mut last, mut moved) = (d0, t0);
        loop {
            let now = Instant::now();
            if now >= end || self.stopped() {
                break;
            }
            let up = self.board.up().max(1);
            let done = self.board.delivered(p);
            if done != last {
                (last, moved) = (done, now);
            }
            // Publish once outstanding + up <= in_flight * up, i.e. once
            // `done` reaches `ready`.
            let ready = (self.expected[p as usize] + up)
                .saturating_sub(self.cfg.in_flight * up + written_off);
            if done < ready {
                if now - moved > STALL {
                    written_off += self.expected[p as usize].saturating_sub(done + written_off);
                    moved = now;
                    continue;
                }
                self.board.wait_delivered(ready);
                continue;
            }
            self.publish(p)?;
            publishes += 1;
        }
        let t1 = Instant::now();
        let (cpu1, d1, me1) = (watch.cpu_ticks(), self.board.delivered(p), me.cpu_ticks());
        let expected = self.expected[p as usize];
        let drained = self.wait_for(p, expected, STALL, Duration::from_secs(30));
        r.saturation = Some(SatWindow {
            secs: (t1 - t0).as_secs_f64(),
            publishes,
            deliveries: d1 - d0,
            lost: expected.saturating_sub(drained),
            cpu_us: watch.us_per_op(cpu0, cpu1, d1 - d0),
            bench_busy: me.busy(me0, me1, (t1 - t0).as_secs_f64()),
        });
        Ok(())
    }

    fn fixed_rate(&mut self, r: &mut DriveReport) -> Result<(), String> {
        let p = Phase::Rate;
        let n = (self.cfg.rate * self.cfg.rate_duration.as_secs_f64())
            .ceil()
            .max(1.0) as u64;
        let t0 = Instant::now();
        let mut publishes = 0;
        for i in 0..n {
            let at = t0 + Duration::from_secs_f64(i as f64 / self.cfg.rate);
            if !self.sleep_until(at) {
                break;
            }
            self.publish(p)?;
            publishes += 1;
        }
        let expected = self.expected[p as usize];
        let quiet = Duration::from_secs(5);
        let delivered = self.wait_for(p, expected, quiet, Duration::from_secs(60));
        r.rate = Some(RateWindow {
            secs: n as f64 / self.cfg.rate,
            publishes,
            expected,
            delivered,
        });
        Ok(())
    }
}
