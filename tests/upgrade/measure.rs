//! The upgrade measured under load (not a default test: run it with
//! `scripts/upgrade_check.sh`): WebSocket sessions open on the old process,
//! a backend registered over the control channel, client loops connecting
//! all along; prints refused or reset connects, failed requests, sessions
//! closed with 1001 and reconnected, and how long the registered backend
//! was missing from the new process's pool.

use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::admin::backends;
use crate::common::proc::{echo, Proc};
use crate::common::ws_client::WsConn;
use crate::support::{eventually, Site, Traffic};

const TOKEN: &str = "upgrade-t0ken";

fn registered(admin: std::net::SocketAddr) -> bool {
    std::panic::catch_unwind(|| backends(admin))
        .map(|l| l.iter().any(|b| b["id"] == "reg-be"))
        .unwrap_or(false)
}

#[test]
#[ignore = "a measurement: scripts/upgrade_check.sh"]
fn measure_an_upgrade_under_load() {
    let n: usize = std::env::var("WSLB_UPGRADE_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let static_be = echo("static-be");
    let site = Site::new(&static_be);
    let extra = [
        "--register-token",
        TOKEN,
        "--max-connections-per-ip",
        "0",
        "--drain-timeout",
        "3s",
    ];
    let mut old = site.start(2, false, &extra);
    let control = format!("ws://{}/_lb/register", site.control);
    let _reg_be = Proc::start(&[
        "echo",
        "--listen",
        "127.0.0.1:0",
        "--name",
        "reg-be",
        "--register",
        &control,
        "--token",
        TOKEN,
        "--id",
        "reg-be",
        "--auto-restart",
        "100ms",
        "--max-backoff",
        "1s",
    ]);
    assert!(eventually(Duration::from_secs(10), || registered(
        site.admin
    )));

    let opened = Instant::now();
    let mut sessions: Vec<WsConn<TcpStream>> = Vec::with_capacity(n);
    for i in 0..n {
        match TcpStream::connect(site.http)
            .map_err(|e| e.to_string())
            .and_then(|s| WsConn::try_connect_on(s, "/", &[]).map_err(|r| format!("{r:?}")))
        {
            Ok(ws) => sessions.push(ws),
            Err(e) => panic!("session {i} did not open: {e}"),
        }
    }
    let open_time = opened.elapsed();

    let traffic = Traffic::start(site.http, 2, 1);
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let _new = site.start(2, true, &extra);
    let ready = started.elapsed();
    let reg_from = Instant::now();
    let back = eventually(Duration::from_secs(10), || registered(site.admin));
    let reg_gap = reg_from.elapsed();

    let mut closes = std::collections::BTreeMap::<String, usize>::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    for s in &mut sessions {
        let left = deadline.saturating_duration_since(Instant::now());
        s.set_read_timeout(left.max(Duration::from_millis(10)));
        let key = match s.recv_close() {
            Some((code, _)) => code.to_string(),
            None => "no close frame".to_string(),
        };
        *closes.entry(key).or_default() += 1;
    }
    let closed_after = started.elapsed();
    let exit = old.wait_exit(Duration::from_secs(20));
    let old_gone = started.elapsed();
    drop(sessions);

    let again = Instant::now();
    let mut reconnected = 0;
    let mut kept = Vec::with_capacity(n);
    for _ in 0..n {
        if let Ok(ws) = TcpStream::connect(site.http)
            .map_err(|e| e.to_string())
            .and_then(|s| WsConn::try_connect_on(s, "/", &[]).map_err(|r| format!("{r:?}")))
        {
            reconnected += 1;
            kept.push(ws);
        }
    }
    let reconnect_time = again.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let tally = traffic.stop();
    let failures = tally.failures();
    let count = |what: &str| failures.iter().filter(|f| f.contains(what)).count();

    println!("upgrade under load ({n} WebSocket sessions, 2 HTTP + 1 WebSocket connect loops):");
    println!("  sessions opened on the old process in {open_time:?}");
    println!("  successor ready {ready:?} after start");
    println!("  registered backend back in the new pool: {back} after {reg_gap:?}");
    println!("  old sessions' closes: {closes:?} (all read {closed_after:?} after the start)");
    println!("  old process exit: {exit:?}, {old_gone:?} after the start");
    println!("  sessions reconnected to the new process: {reconnected}/{n} in {reconnect_time:?}");
    println!(
        "  connect loop: {} HTTP requests and {} WebSocket sessions ok; \
         failures: {} (refused {}, reset {}, other {})",
        tally.http_ok.load(Ordering::Relaxed),
        tally.ws_ok.load(Ordering::Relaxed),
        failures.len(),
        count("refused"),
        count("reset"),
        failures.len() - count("refused") - count("reset"),
    );
    for f in failures.iter().take(10) {
        println!("    {f}");
    }
    assert!(failures.is_empty(), "failures during the upgrade");
    assert_eq!(closes.get("1001").copied(), Some(n), "{closes:?}");
    assert_eq!(reconnected, n);
    assert_eq!(exit, Some(0));
}
