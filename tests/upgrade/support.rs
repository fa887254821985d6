//! Helpers of the upgrade tests: fixed loopback addresses shared by the old
//! and the new balancer, starting `wslb serve` (with or without
//! `--upgrade`), and client loops that keep connecting during an upgrade and
//! record every failure they see.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::proc::Proc;
use crate::common::ws_client::{Event, WsConn};
use wslb::proto::ws::frame::OpCode;

/// The time of day (UTC, to the millisecond): failures carry it, to be
/// read beside the balancers' logs (`WSLB_TEST_LOG=info`).
pub fn wall_clock() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let day = now.as_millis() % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03} UTC",
        day / 3_600_000,
        day / 60_000 % 60,
        day / 1000 % 60,
        day % 1000
    )
}

/// A free loopback address (bound, read, released).
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// The addresses every balancer of one test listens on, and its upgrade
/// socket path (removed when dropped).
pub struct Site {
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub control: SocketAddr,
    pub socket: PathBuf,
    pub backend: String,
}

impl Site {
    pub fn new(backend: &Proc) -> Site {
        static N: AtomicU64 = AtomicU64::new(0);
        let socket = std::env::temp_dir().join(format!(
            "wslb-upgrade-{}-{}.sock",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        Site {
            http: free_addr(),
            admin: free_addr(),
            control: free_addr(),
            socket,
            backend: format!("http://{}", backend.http()),
        }
    }

    /// `wslb serve` arguments for this site, `extra` appended.
    pub fn args(&self, workers: usize, upgrade: bool, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "serve",
            "--listen",
            &self.http.to_string(),
            "--admin-listen",
            &self.admin.to_string(),
            "--control-listen",
            &self.control.to_string(),
            "--no-pin",
            "--workers",
            &workers.to_string(),
            "--backend",
            &self.backend,
            "--upgrade-socket",
            &self.socket.to_string_lossy(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if !extra.contains(&"--drain-timeout") {
            args.extend(["--drain-timeout".to_string(), "1s".to_string()]);
        }
        if upgrade {
            args.push("--upgrade".into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// Starts a balancer on this site and waits for "ready".
    pub fn start(&self, workers: usize, upgrade: bool, extra: &[&str]) -> Proc {
        let args = self.args(workers, upgrade, extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Proc::start(&refs)
    }

    /// Runs a balancer that is expected to fail; returns its exit code and
    /// what it wrote on stderr (it must end within 15 s).
    pub fn fail(&self, workers: usize, extra: &[&str]) -> (Option<i32>, String) {
        self.fail_as(workers, extra, None)
    }

    /// Like [`Site::fail`], run as user and group `uid` when given.
    pub fn fail_as(
        &self,
        workers: usize,
        extra: &[&str],
        uid: Option<u32>,
    ) -> (Option<i32>, String) {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wslb"));
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        let mut child = cmd
            .args(self.args(workers, true, extra))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn wslb");
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status, err)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// What the client loops saw.
#[derive(Default)]
pub struct Tally {
    pub http_ok: AtomicU64,
    pub ws_ok: AtomicU64,
    pub tls_ok: AtomicU64,
    pub failures: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what);
    }

    pub fn failures(&self) -> Vec<String> {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Client loops against `addr` until stopped: `http` threads each opening
/// a new connection per request, `ws` threads each opening a session per
/// round (one echoed message, then a normal close).
pub struct Traffic {
    pub tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Traffic {
    pub fn start(addr: SocketAddr, http: usize, ws: usize) -> Traffic {
        Self::start_with_tls(addr, http, ws, None)
    }

    /// One thread asking the admin API at `addr` for `/healthz`, each time
    /// on a new connection.
    pub fn admin(addr: SocketAddr) -> Traffic {
        Self::start_on(addr, "/healthz", 1, 0, None)
    }

    /// Like [`Traffic::start`], plus one thread doing HTTPS requests (each
    /// on a new connection) to `tls` when given.
    pub fn start_with_tls(
        addr: SocketAddr,
        http: usize,
        ws: usize,
        tls: Option<(SocketAddr, Arc<rustls::ClientConfig>)>,
    ) -> Traffic {
        Self::start_on(addr, "/", http, ws, tls)
    }

    fn start_on(
        addr: SocketAddr,
        path: &'static str,
        http: usize,
        ws: usize,
        tls: Option<(SocketAddr, Arc<rustls::ClientConfig>)>,
    ) -> Traffic {
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let tls_threads = usize::from(tls.is_some());
        for i in 0..http + ws + tls_threads {
            let (tally, stop, tls) = (tally.clone(), stop.clone(), tls.clone());
            let is_ws = i >= http && i < http + ws;
            let is_tls = i >= http + ws;
            threads.push(std::thread::spawn(move || {
                // Bounded even if never stopped.
                let end = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    let outcome = match &tls {
                        Some((at, config)) if is_tls => {
                            tls_round(*at, config.clone()).map(|()| &tally.tls_ok)
                        }
                        _ if is_ws => ws_round(addr).map(|()| &tally.ws_ok),
                        _ => http_round(addr, path).map(|()| &tally.http_ok),
                    };
                    match outcome {
                        Ok(counter) => {
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => tally.fail(format!("{e} (at {})", wall_clock())),
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }));
        }
        Traffic {
            tally,
            stop,
            threads,
        }
    }

    /// Stops the loops and waits for them.
    pub fn stop(self) -> Arc<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        self.tally
    }
}

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.set_write_timeout(Some(Duration::from_secs(5))).ok();
    Ok(s)
}

/// One request on a new connection; Ok only for a whole 200 answer.
pub fn http_round(addr: SocketAddr, path: &str) -> Result<(), String> {
    let mut s = connect(addr)?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| format!("http write: {e}"))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .map_err(|e| format!("http read: {e} after {} bytes", out.len()))?;
    let text = String::from_utf8_lossy(&out);
    if !text.starts_with("HTTP/1.1 200") || !text.contains("\r\n\r\n") {
        return Err(format!("http answer: {:?}", text.lines().next()));
    }
    Ok(())
}

/// One HTTPS request on a new connection (server name "localhost").
pub fn tls_round(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Result<(), String> {
    let name = rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, connect(addr)?);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("tls write: {e}"))?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => {}
        // A peer that closes without close_notify still sent its answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(format!("tls read: {e} after {} bytes", out.len())),
    }
    let text = String::from_utf8_lossy(&out);
    if !text.starts_with("HTTP/1.1 200") {
        return Err(format!("tls answer: {:?}", text.lines().next()));
    }
    Ok(())
}

/// One WebSocket session on a new connection: open, one echo, close.
pub fn ws_round(addr: SocketAddr) -> Result<(), String> {
    let s = connect(addr)?;
    let mut ws = WsConn::try_connect_on(s, "/", &[])
        .map_err(|r| format!("ws upgrade: status {} {:?}", r.status, r.head))?;
    if !ws.send_text("hello") {
        return Err("ws send".into());
    }
    match ws.recv() {
        Event::Msg(m) if m.opcode == OpCode::Text && m.payload == b"hello" => {}
        other => return Err(format!("ws echo: {other:?}")),
    }
    ws.send_close(1000, "");
    match ws.recv_close() {
        Some((1000, _)) => Ok(()),
        other => Err(format!("ws close: {other:?}")),
    }
}

/// Waits until `cond` holds (polling), at most `within`.
pub fn eventually(within: Duration, cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}
