//! `wslb serve`: builds the shared state, binds every listener, starts one
//! pinned worker per core, and turns SIGTERM/SIGINT into a graceful drain.

pub mod listener;
pub mod per_ip;
mod refuse;
pub mod worker;

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;

use crate::config::ServeConfig;
use crate::pool::registry::hub::ControlHub;
use crate::pool::registry::Registry;
use crate::pool::SharedPool;
use crate::rt::notify::{Lifecycle, Phase};
use listener::{bind_set, ListenerKind};

/// Process-wide state shared by every worker (read-mostly; counters atomic).
pub struct Shared {
    pub cfg: ServeConfig,
    pub pool: Arc<SharedPool>,
    pub registry: Arc<Registry>,
    pub lifecycle: Lifecycle,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub open_connections: AtomicUsize,
    pub control_hub: ControlHub,
    /// Client connections open per IP address (`--max-connections-per-ip`).
    pub per_ip: per_ip::PerIpTable,
    /// Connections refused because their address was at that limit.
    pub per_ip_refused: AtomicU64,
}

/// Why `wslb serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("backend: {0}")]
    Backend(String),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot start worker thread: {0}")]
    Thread(std::io::Error),
    #[error("{0}")]
    Runtime(String),
}

/// Runs the balancer until SIGTERM/SIGINT and the drain that follows.
pub fn run_serve(cfg: ServeConfig) -> Result<(), ServeError> {
    // Signal handlers first: they need descriptors of their own, which a
    // flood of connections could otherwise take once workers accept.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(ServeError::Signals)?;
    let pool = Arc::new(SharedPool::new());
    let registry = Arc::new(Registry::new(pool.clone()).with_max_backends(cfg.max_backends));
    for (url, weight) in &cfg.backends {
        registry
            .add_static(url, *weight)
            .map_err(|e| ServeError::Backend(format!("{url}: {e}")))?;
    }
    let tls = match &cfg.tls {
        Some(settings) => Some(crate::tls::build_server_config(settings)?),
        None => None,
    };
    let workers = cfg.workers;
    let mut sets = Vec::new();
    let control: Vec<std::net::SocketAddr> = cfg.control_listen.into_iter().collect();
    for (addrs, kind) in [
        (&cfg.listen, ListenerKind::Plain),
        (&cfg.tls_listen, ListenerKind::Tls),
        (&control, ListenerKind::Control),
    ] {
        for addr in addrs {
            let set = bind_set(*addr, kind, workers).map_err(|source| ServeError::Bind {
                addr: *addr,
                source,
            })?;
            sets.push(set);
        }
    }
    let shared = Arc::new(Shared {
        lifecycle: Lifecycle::new(workers),
        pool,
        registry,
        tls,
        open_connections: AtomicUsize::new(0),
        control_hub: ControlHub::new(),
        per_ip: per_ip::PerIpTable::new(),
        per_ip_refused: AtomicU64::new(0),
        cfg,
    });

    let admin_addr = match shared.cfg.admin_listen {
        Some(addr) => {
            if !addr.ip().to_canonical().is_loopback() && shared.cfg.admin_token.is_none() {
                tracing::warn!(
                    %addr,
                    "the admin API listens beyond loopback without --admin-token: \
                     anyone who can reach it can drain backends"
                );
            }
            let l =
                listener::bind_single(addr).map_err(|source| ServeError::Bind { addr, source })?;
            let bound = l
                .local_addr()
                .map_err(|source| ServeError::Bind { addr, source })?;
            crate::admin::spawn(shared.clone(), l)
                .map_err(|e| ServeError::Runtime(format!("admin API: cannot start: {e}")))?;
            Some(bound)
        }
        None => None,
    };
    spawn_expiry(shared.clone()).map_err(ServeError::Thread)?;

    let lines: Vec<(&'static str, std::net::SocketAddr)> = sets
        .iter()
        .map(|set| (set.kind.as_str(), set.addr))
        .collect();
    let mut per_worker: Vec<Vec<(ListenerKind, std::net::TcpListener)>> =
        (0..workers).map(|_| Vec::new()).collect();
    for set in sets {
        for (i, l) in set.per_worker.into_iter().enumerate() {
            per_worker[i].push((set.kind, l));
        }
    }
    let cores = if shared.cfg.pin {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let go = Arc::new(std::sync::Barrier::new(workers + 1));
    let mut handles = Vec::new();
    for (i, listeners) in per_worker.into_iter().enumerate() {
        let shared = shared.clone();
        let core = (!cores.is_empty()).then(|| cores[i % cores.len()]);
        let started = worker::Started {
            report: started_tx.clone(),
            go: go.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("wslb-worker-{i}"))
            .spawn(move || worker::run_worker(i, shared, listeners, core, started))
            .map_err(ServeError::Thread)?;
        handles.push(handle);
    }
    drop(started_tx);
    // Every worker's runtime is up before the balancer says it is ready.
    for _ in 0..workers {
        match started_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ServeError::Runtime(e)),
            Err(_) => return Err(ServeError::Runtime("a worker ended before starting".into())),
        }
    }
    go.wait();

    // Machine-readable lines for scripts and tests, then "ready".
    {
        let mut out = std::io::stdout().lock();
        for (kind, addr) in &lines {
            let _ = writeln!(out, "listening {kind} {addr}");
            tracing::info!(kind, %addr, "listening");
        }
        if let Some(addr) = admin_addr {
            let _ = writeln!(out, "listening admin {addr}");
            tracing::info!(api = %crate::admin::describe(addr), "admin API");
        }
        let _ = writeln!(out, "ready");
        let _ = out.flush();
    }

    let signal_shared = shared.clone();
    std::thread::Builder::new()
        .name("wslb-signals".into())
        .spawn(move || {
            let mut count = 0;
            for sig in signals.forever() {
                count += 1;
                if count == 1 {
                    tracing::info!(signal = sig, "shutting down: draining");
                    signal_shared.lifecycle.advance(Phase::Draining);
                } else {
                    tracing::warn!("second signal: exiting now");
                    std::process::exit(1);
                }
            }
        })
        .map_err(ServeError::Thread)?;

    for h in handles {
        let _ = h.join();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Drops registered backends whose heartbeats stopped, twice a heartbeat
/// timeout's resolution, until the process drains.
fn spawn_expiry(shared: Arc<Shared>) -> std::io::Result<()> {
    let timeout_ms = shared.cfg.heartbeat_timeout.as_millis() as u64;
    let tick = std::time::Duration::from_millis((timeout_ms / 4).clamp(50, 1000));
    std::thread::Builder::new()
        .name("wslb-registry".into())
        .spawn(move || {
            while shared.lifecycle.phase() == Phase::Running {
                std::thread::sleep(tick);
                let gone = shared
                    .registry
                    .expire(crate::pool::clock::now_ms(), timeout_ms);
                for id in gone {
                    tracing::warn!(id, "backend missed its heartbeats: removed from the pool");
                }
            }
        })
        .map(|_| ())
}
