//! `wslb demo`: one command that shows the whole thing — a balancer on
//! 127.0.0.1:8080 and three echo backends that register themselves over the
//! control channel, a broadcast that reaches clients on every backend
//! (`demo_broadcast`) — and prints what to try. Children are this same
//! binary.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Flags of `wslb demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Where the balancer listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where the admin API listens.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin_listen: SocketAddr,
    /// How many echo backends to start.
    #[arg(long, default_value_t = 3)]
    pub backends: usize,
    /// Pick algorithm of the balancer.
    #[arg(long, default_value = "round-robin")]
    pub algorithm: String,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot find this program's path: {0}")]
    Exe(std::io::Error),
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    NotReady(String),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Kills every child when dropped.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(what: &str, args: &[String]) -> Result<Child, DemoError> {
    let exe = std::env::current_exe().map_err(DemoError::Exe)?;
    Command::new(exe)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| DemoError::Spawn {
            what: what.to_string(),
            source,
        })
}

/// A small blocking GET for the demo's own readiness checks.
fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// Runs the demo until Ctrl-C.
pub fn run(args: DemoArgs) -> Result<(), DemoError> {
    let token = format!("demo-{:016x}", fastrand::u64(..));
    let mut children = Children(Vec::new());
    children.0.push(spawn(
        "the balancer",
        &[
            "--log-level".into(),
            "warn".into(),
            "serve".into(),
            "--listen".into(),
            args.listen.to_string(),
            "--admin-listen".into(),
            args.admin_listen.to_string(),
            "--register-token".into(),
            token.clone(),
            "--algorithm".into(),
            args.algorithm.clone(),
            "--heartbeat-timeout".into(),
            "6s".into(),
        ],
    )?);
    let register = format!("ws://{}/_lb/register", args.listen);
    for i in 1..=args.backends {
        children.0.push(spawn(
            &format!("echo backend {i}"),
            &[
                "--log-level".into(),
                "warn".into(),
                "echo".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--name".into(),
                format!("echo-{i}"),
                "--register".into(),
                register.clone(),
                "--token".into(),
                token.clone(),
                "--id".into(),
                format!("echo-{i}"),
            ],
        )?);
    }
    // Wait until every backend has registered.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let up = http_get(args.admin_listen, "/api/backends")
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|v| v.as_array().map(|a| a.len()))
            .unwrap_or(0);
        if up >= args.backends {
            break;
        }
        if Instant::now() > deadline {
            return Err(DemoError::NotReady(format!(
                "only {up} of {} backends registered within 15 s",
                args.backends
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let lb = args.listen;
    let admin = args.admin_listen;
    // Ctrl-C from here on stops the children (no default death by signal).
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(DemoError::Signals)?;
    // Before the banner, so that its clients are gone when the pick
    // examples below are tried.
    for line in crate::cmd::demo_broadcast::show(lb, admin, 2 * args.backends) {
        println!("{line}");
    }
    println!();
    println!(
        "wslb demo is up: a balancer on {lb} and {n} echo backends that registered themselves.\n\
         \n\
         Try:\n\
         \x20 # the status page (pool, sessions, drain buttons): open it in a browser\n\
         \x20 http://{admin}/\n\
         \x20 # run it a few times: {alg} over echo-1..{n}\n\
         \x20 curl http://{lb}/\n\
         \x20 # POST bodies are echoed back\n\
         \x20 curl -d 'hello' http://{lb}/echo\n\
         \x20 # binding hand-out: which backend a client would get\n\
         \x20 curl http://{lb}/_lb/pick\n\
         \x20 # the pool, with active counts and reported load\n\
         \x20 curl http://{admin}/api/backends\n\
         \x20 # no new traffic to echo-1 (resume to undo)\n\
         \x20 curl -X POST http://{admin}/api/backends/echo-1/drain\n\
         \x20 # Prometheus metrics\n\
         \x20 curl http://{admin}/metrics\n\
         \x20 # a message to every WebSocket client ({exe} publish --help for more)\n\
         \x20 {exe} publish --admin http://{admin} --text hello\n\
         \x20 # WebSocket echo through the balancer\n\
         \x20 {exe} bench ws --url ws://{lb}/ -c 10 --duration 5\n\
         \n\
         Ctrl-C stops everything.",
        n = args.backends,
        alg = args.algorithm,
        exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "wslb".into()),
    );
    let _ = std::io::stdout().flush();
    let _ = signals.forever().next();
    println!("stopping");
    drop(children);
    Ok(())
}
