//! Soak: many WebSocket echo sessions through the real balancer (2 workers,
//! 3 real `wslb echo` backends) for a while, with backends killed and
//! restarted on their ports, then a SIGTERM. Checks every echo (in order,
//! unchanged, never twice), the close codes the balancer sends (1012/1001
//! mid-session, 1001 on shutdown), a clean exit, and that the balancer's
//! RSS at the end is within 10% of its RSS after warm-up.
//!
//! Ignored by default; `WSLB_SOAK_SECS` (60) and `WSLB_SOAK_SESSIONS` (2000)
//! size it: `cargo test --test soak -- --ignored --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::client::rss_kib;
use common::proc::{echo, serve, Proc};
use common::ws_session::{Got, Session};
use wslb::proto::ws::frame::OpCode;

/// Client threads; each drives its share of the sessions in rounds.
const THREADS: usize = 8;
/// Messages each session has in flight per round.
const WINDOW: u64 = 2;
/// A round of a thread takes at least this long (keeps the load modest on
/// a shared 2-core machine: 2000 sessions make about 10k messages/s).
const ROUND: Duration = Duration::from_millis(400);
/// An echo or a close must come within this.
const STALL: Duration = Duration::from_secs(10);
const DRAIN: Duration = Duration::from_secs(3);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The message number `seq` of session `id`: text or binary, 24 to ~520
/// bytes, content unique to (id, seq).
fn message(id: usize, seq: u64) -> (OpCode, Vec<u8>) {
    let mut p = format!("s{id:05}-n{seq:010}-").into_bytes();
    let mut x = (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seq.wrapping_mul(0xbf58_476d);
    let len = 24 + (x % 500) as usize;
    while p.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        p.push(b'a' + ((x >> 58) % 26) as u8);
    }
    let op = if seq.is_multiple_of(2) {
        OpCode::Text
    } else {
        OpCode::Binary
    };
    (op, p)
}

#[derive(Default)]
struct Stats {
    connects: AtomicU64,
    refused: AtomicU64,
    sent: AtomicU64,
    echoed: AtomicU64,
    /// Sent, not echoed, and the session closed (1012/1001) meanwhile.
    unechoed_at_close: AtomicU64,
    closes: Mutex<BTreeMap<u16, u64>>,
    final_closes: Mutex<BTreeMap<u16, u64>>,
    failures: Mutex<Vec<String>>,
}

impl Stats {
    fn fail(&self, what: String) {
        let mut f = self.failures.lock().expect("failures");
        if f.len() < 50 {
            f.push(what);
        }
    }
}

/// One session slot: its id, its connection if open, its sequence numbers.
struct Slot {
    id: usize,
    conn: Option<Session>,
    next_send: u64,
    next_echo: u64,
}

const RUN: u8 = 0;
const HOLD: u8 = 1;
const CLOSING: u8 = 2;

struct Shared {
    addr: SocketAddr,
    phase: AtomicU8,
    /// Threads that finished a first full round (all their sessions open).
    warm: AtomicUsize,
    /// Threads holding all their sessions open with traffic stopped.
    held: AtomicUsize,
    held_sessions: AtomicUsize,
    stats: Stats,
}

fn open(sh: &Shared, slot: &mut Slot) {
    if slot.conn.is_some() {
        return;
    }
    match Session::connect(sh.addr, STALL) {
        Ok(s) => {
            sh.stats.connects.fetch_add(1, Relaxed);
            slot.conn = Some(s);
            slot.next_echo = slot.next_send;
        }
        Err(_) => {
            sh.stats.refused.fetch_add(1, Relaxed);
        }
    }
}

/// Reads the echoes of one round's window; a close ends the session.
fn collect(sh: &Shared, slot: &mut Slot) {
    let Some(mut conn) = slot.conn.take() else {
        return;
    };
    let st = &sh.stats;
    while slot.next_echo < slot.next_send {
        match conn.recv() {
            Got::Msg(m) => {
                let (op, want) = message(slot.id, slot.next_echo);
                if m.opcode != op || m.payload != want {
                    let head = String::from_utf8_lossy(&m.payload[..m.payload.len().min(20)]);
                    st.fail(format!(
                        "session {} expected #{} got {:?} {head:?} ({} bytes)",
                        slot.id,
                        slot.next_echo,
                        m.opcode,
                        m.payload.len()
                    ));
                    return;
                }
                st.echoed.fetch_add(1, Relaxed);
                slot.next_echo += 1;
            }
            Got::Close(code) => {
                *st.closes.lock().expect("closes").entry(code).or_default() += 1;
                if code != 1012 && code != 1001 {
                    st.fail(format!("session {} closed with {code}", slot.id));
                }
                st.unechoed_at_close
                    .fetch_add(slot.next_send - slot.next_echo, Relaxed);
                conn.reply_close(code);
                return;
            }
            Got::Eof => {
                st.fail(format!(
                    "session {}: connection ended without a close",
                    slot.id
                ));
                return;
            }
            Got::Timeout => {
                st.fail(format!("session {}: no echo within {STALL:?}", slot.id));
                return;
            }
            Got::Bad(e) => {
                st.fail(format!("session {}: {e}", slot.id));
                return;
            }
        }
    }
    slot.conn = Some(conn);
}

fn client_thread(sh: Arc<Shared>, ids: std::ops::Range<usize>) {
    let mut slots: Vec<Slot> = ids
        .map(|id| Slot {
            id,
            conn: None,
            next_send: 0,
            next_echo: 0,
        })
        .collect();
    let mut first = true;
    while sh.phase.load(Relaxed) == RUN {
        let started = Instant::now();
        for slot in &mut slots {
            open(&sh, slot);
            if let Some(conn) = slot.conn.as_mut() {
                for _ in 0..WINDOW {
                    let (op, p) = message(slot.id, slot.next_send);
                    slot.next_send += 1;
                    sh.stats.sent.fetch_add(1, Relaxed);
                    if !conn.send(op, &p) {
                        // The balancer may be closing it: its close tells.
                        break;
                    }
                }
            }
        }
        for slot in &mut slots {
            collect(&sh, slot);
        }
        if first && slots.iter().all(|s| s.conn.is_some()) {
            first = false;
            sh.warm.fetch_add(1, Relaxed);
        }
        std::thread::sleep(ROUND.saturating_sub(started.elapsed()));
    }
    // Hold: every session open, no traffic.
    let deadline = Instant::now() + Duration::from_secs(20);
    while slots.iter().any(|s| s.conn.is_none()) && Instant::now() < deadline {
        for slot in &mut slots {
            open(&sh, slot);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let open_now = slots.iter().filter(|s| s.conn.is_some()).count();
    sh.held_sessions.fetch_add(open_now, Relaxed);
    sh.held.fetch_add(1, Relaxed);
    while sh.phase.load(Relaxed) != CLOSING {
        std::thread::sleep(Duration::from_millis(20));
    }
    for slot in &mut slots {
        let Some(mut conn) = slot.conn.take() else {
            continue;
        };
        let code = match conn.recv() {
            Got::Close(code) => code,
            Got::Eof => 0,
            _ => 1,
        };
        *sh.stats
            .final_closes
            .lock()
            .expect("final")
            .entry(code)
            .or_default() += 1;
    }
}

fn restart_echo(port: u16, name: &str) -> Proc {
    let listen = format!("127.0.0.1:{port}");
    Proc::start(&["echo", "--listen", &listen, "--name", name])
}

#[test]
#[ignore = "soak: minutes of load; run with --ignored"]
fn soak_echo_sessions_through_backend_kills_and_shutdown() {
    let secs = env_or("WSLB_SOAK_SECS", 60).max(10);
    let sessions = env_or("WSLB_SOAK_SESSIONS", 2000).max(THREADS as u64) as usize;
    let mut backends: Vec<Proc> = (0..3).map(|i| echo(&format!("soak-{i}"))).collect();
    let ports: Vec<u16> = backends.iter().map(|b| b.http().port()).collect();
    let drain = format!("{}s", DRAIN.as_secs());
    let refs: Vec<&Proc> = backends.iter().collect();
    let mut lb = serve(
        &refs,
        &[
            "--workers",
            "2",
            "--max-connections-per-ip",
            "0",
            "--drain-timeout",
            &drain,
        ],
    );
    let pid = lb.child.id();
    let sh = Arc::new(Shared {
        addr: lb.http(),
        phase: AtomicU8::new(RUN),
        warm: AtomicUsize::new(0),
        held: AtomicUsize::new(0),
        held_sessions: AtomicUsize::new(0),
        stats: Stats::default(),
    });
    let per = sessions.div_ceil(THREADS);
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let sh = sh.clone();
            let ids = (t * per).min(sessions)..((t + 1) * per).min(sessions);
            std::thread::spawn(move || client_thread(sh, ids))
        })
        .collect();
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    while sh.warm.load(Relaxed) < THREADS {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "sessions never all opened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Warm-up: a few rounds with every session open, then one backend kill
    // and the reconnect storm it causes (its peak, old sessions not yet
    // freed while their replacements open, is a high-water mark the
    // allocator keeps), then a few rounds again. RSS growth after this is
    // what repeated kills and traffic add.
    std::thread::sleep(Duration::from_secs(2));
    backends[0].kill();
    std::thread::sleep(Duration::from_secs(1));
    backends[0] = restart_echo(ports[0], "soak-0");
    std::thread::sleep(Duration::from_secs(3));
    let rss_start = rss_kib(pid);
    let kills = (secs / 10).max(2);
    let span = end.saturating_duration_since(Instant::now());
    for k in 0..kills {
        let at = end - span + span * (k as u32 + 1) / (kills as u32 + 1);
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        let i = k as usize % backends.len();
        backends[i].kill();
        std::thread::sleep(Duration::from_secs(1));
        backends[i] = restart_echo(ports[i], &format!("soak-{i}"));
    }
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    sh.phase.store(HOLD, Relaxed);
    while sh.held.load(Relaxed) < THREADS {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let the last round's buffers go back before measuring.
    std::thread::sleep(Duration::from_secs(1));
    let rss_end = rss_kib(pid);
    let held = sh.held_sessions.load(Relaxed);
    lb.signal(libc::SIGTERM);
    sh.phase.store(CLOSING, Relaxed);
    let exit = lb.wait_exit(DRAIN + Duration::from_secs(5));
    for t in threads {
        t.join().expect("client thread");
    }
    let st = &sh.stats;
    let closes = st.closes.lock().expect("closes").clone();
    let final_closes = st.final_closes.lock().expect("final").clone();
    println!(
        "soak: {secs}s, {sessions} sessions (held at end {held}), connects {}, refused {}, \
         messages sent {} echoed {} unechoed-at-close {}, mid-session closes {closes:?}, \
         shutdown closes {final_closes:?}, backend kills {} (1 in warm-up), \
         RSS start {rss_start} KiB end {rss_end} KiB, exit {exit:?}",
        st.connects.load(Relaxed),
        st.refused.load(Relaxed),
        st.sent.load(Relaxed),
        st.echoed.load(Relaxed),
        st.unechoed_at_close.load(Relaxed),
        kills + 1,
    );
    let failures = st.failures.lock().expect("failures").clone();
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
    let sent = st.sent.load(Relaxed);
    let accounted = st.echoed.load(Relaxed) + st.unechoed_at_close.load(Relaxed);
    // What the last round sent before HOLD was collected in that round.
    assert_eq!(sent, accounted, "messages neither echoed nor closed");
    assert_eq!(held, sessions, "not every session was open at the end");
    assert_eq!(
        final_closes.get(&1001).copied().unwrap_or(0),
        held as u64,
        "shutdown closes: {final_closes:?}"
    );
    assert_eq!(exit, Some(0), "balancer exit after SIGTERM");
    assert!(
        rss_end * 10 <= rss_start * 11,
        "RSS grew from {rss_start} KiB to {rss_end} KiB"
    );
}
