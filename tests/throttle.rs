//! `--throttle-bps`: each client connection moves at most N bytes per
//! second in each direction (counted separately), on HTTP bodies and both
//! WebSocket relays, by sleeping, not spinning: the proxy's CPU time while
//! a throttled transfer runs stays far below the transfer's wall time.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use common::client::HttpConn;
use common::proc::{echo, serve, Proc};
use common::ws_client::WsConn;

const MIB: usize = 1 << 20;

/// CPU seconds (user + system) process `pid` used so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may hold spaces): state is the
    // first, utime the 12th, stime the 13th.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

/// Runs `transfer` against `lb`; returns its wall time, after checking the
/// proxy's CPU time stayed well under it (no busy loop while waiting).
fn timed(lb: &Proc, transfer: impl FnOnce()) -> Duration {
    let cpu_before = cpu_secs(lb.child.id());
    let start = Instant::now();
    transfer();
    let wall = start.elapsed();
    let cpu = cpu_secs(lb.child.id()) - cpu_before;
    eprintln!("transfer: {wall:?} wall, {cpu:.3}s proxy CPU");
    assert!(
        cpu < wall.as_secs_f64() / 4.0,
        "the proxy used {cpu:.2}s of CPU in {wall:?}: it must sleep, not spin"
    );
    wall
}

fn assert_paced(what: &str, wall: Duration) {
    // 1 MiB (less the first burst) at 256 KiB/s is about 3.9 s.
    assert!(
        (3.0..8.0).contains(&wall.as_secs_f64()),
        "{what} took {wall:?}, expected about 4 s"
    );
}

fn download(addr: SocketAddr) {
    let mut c = HttpConn::connect(addr);
    c.send(format!("GET /bytes/{MIB} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    let head = c.read_head().expect("head");
    assert_eq!(head.status, 200);
    assert_eq!(c.count_body(MIB as u64), MIB as u64);
}

/// POSTs 1 MiB to `addr`; returns the response's body length.
fn upload(addr: SocketAddr) -> usize {
    let mut c = HttpConn::connect(addr);
    let body = vec![b'u'; MIB];
    let mut request =
        format!("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {MIB}\r\n\r\n").into_bytes();
    request.extend_from_slice(&body);
    // Written from another thread: an echo answers while it reads.
    let mut w = c.stream.try_clone().expect("clone");
    let writer = std::thread::spawn(move || w.write_all(&request).is_ok());
    let r = c.read_response(false).expect("response");
    assert!(writer.join().expect("writer"));
    assert_eq!(r.status, 200);
    r.body.len()
}

/// A backend that reads a request body whole and answers `ok`.
fn sink() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(20))).ok();
                let mut buf = Vec::new();
                let mut tmp = vec![0u8; 65536];
                let head_end = loop {
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                    match s.read(&mut tmp) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let mut got = buf.len() - head_end;
                while got < len {
                    match s.read(&mut tmp) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got += n,
                    }
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
            });
        }
    });
    addr
}

#[test]
fn http_bodies_are_paced_each_way() {
    let e = echo("alpha");
    let free = serve(&[&e], &[]);
    let start = Instant::now();
    download(free.http());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );

    let lb = serve(&[&e], &["--throttle-bps", "256k", "--workers", "1"]);
    assert_paced("a download", timed(&lb, || download(lb.http())));

    let sink = sink();
    let args = ["--backend", &format!("http://{sink}")];
    let to_sink = common::proc::Proc::start(
        &[
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--no-pin",
                "--workers",
                "1",
            ][..],
            &["--admin-listen", "off", "--throttle-bps", "256k"][..],
            &args[..],
        ]
        .concat(),
    );
    assert_paced(
        "an upload",
        timed(&to_sink, || assert_eq!(upload(to_sink.http()), 3)),
    );

    // Both ways at once (an echo): each direction has its own budget, so
    // this takes about as long as one way (a shared one would take 7.8 s).
    let wall = timed(&lb, || assert_eq!(upload(lb.http()), MIB));
    assert_paced("an echo", wall);
    assert!(wall < Duration::from_millis(6500), "{wall:?}");
}

/// Sends 1 MiB in 32 KiB binary messages and reads each echo back.
fn ws_echo(addr: SocketAddr) {
    let mut ws = WsConn::connect(addr);
    let msg = vec![9u8; 32 * 1024];
    for _ in 0..MIB / msg.len() {
        assert!(ws.send_binary(&msg));
        assert_eq!(ws.recv_msg().payload.len(), msg.len());
    }
}

#[test]
fn websocket_relays_are_paced() {
    let e = echo("alpha");
    for mode in ["inspect", "tunnel"] {
        let lb = serve(
            &[&e],
            &[
                "--throttle-bps",
                "256k",
                "--workers",
                "1",
                "--ws-mode",
                mode,
            ],
        );
        let wall = timed(&lb, || ws_echo(lb.http()));
        assert_paced(&format!("a WebSocket echo ({mode})"), wall);
    }
    let free = serve(&[&e], &["--ws-mode", "tunnel"]);
    let start = Instant::now();
    ws_echo(free.http());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}
