//! The server: builds the shared state, binds every listener and starts one
//! pinned worker per core; a drain stops them gracefully.

pub(crate) mod accept;
mod health_check;
pub(crate) mod listener;
pub(crate) mod per_ip;
mod refuse;
pub(crate) mod reload;
mod tasks;
pub(crate) mod upgrade;
pub(crate) mod worker;

pub use upgrade::UpgradeError;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;

use crate::config::ServeConfig;
use crate::pool::registry::hub::ControlHub;
use crate::pool::registry::Registry;
use crate::pool::SharedPool;
use crate::proxy::pool_events::{emit, emit_all_up, PoolEvent};
use crate::proxy::ListenerKind;
use crate::rt::live::Published;
use crate::rt::notify::{Lifecycle, Phase};
pub use reload::{BackendChanges, ReloadError, ReloadSource, ReloadSummary, Reweighted};

/// Process-wide state shared by every worker (read-mostly; counters atomic).
pub(crate) struct Shared {
    /// The configuration the balancer started with: what only a restart
    /// changes (listeners, workers, admin) is read here.
    pub cfg: Arc<ServeConfig>,
    /// The configuration as the latest reload left it (workers copy it).
    pub live: Arc<Published<ServeConfig>>,
    /// The TLS listeners' configuration as the latest reload left it.
    pub live_tls: Arc<Published<Option<Arc<rustls::ServerConfig>>>>,
    /// One reload at a time, and the reload source.
    pub reloads: reload::Reloads,
    pub pool: Arc<SharedPool>,
    pub registry: Arc<Registry>,
    pub lifecycle: Lifecycle,
    pub open_connections: AtomicUsize,
    pub control_hub: Arc<ControlHub>,
    /// Client connections open per IP address (`--max-connections-per-ip`).
    pub per_ip: per_ip::PerIpTable,
    /// Connections refused because their address was at that limit.
    pub per_ip_refused: AtomicU64,
    /// The embedding program's hooks, if any.
    pub hooks: Option<Arc<dyn crate::hooks::Hooks>>,
    /// Every worker's messaging inbox, and the connection id scheme.
    pub router: Arc<crate::hub::Router>,
    /// Live events for their readers (`GET /api/events`, control channels).
    pub events: Arc<crate::hub::EventBus>,
    /// A successor took the listening sockets (`--upgrade`): the admin
    /// listener stops accepting with the workers.
    pub handed_over: AtomicBool,
    /// Client configuration for TLS backends (`None`: no CA could be
    /// loaded and none is needed by a static backend).
    pub backend_tls: Option<Arc<rustls::ClientConfig>>,
    /// Every worker's metrics, and the access log.
    pub telemetry: Arc<crate::proxy::metrics::Telemetry>,
}

/// Why the balancer could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// A listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A static backend's URL was refused.
    #[error("backend: {0}")]
    Backend(String),
    /// A thread could not be started.
    #[error("cannot start worker thread: {0}")]
    Thread(std::io::Error),
    /// A worker's runtime could not be built.
    #[error("{0}")]
    Runtime(String),
    /// The upgrade hand-over failed (`--upgrade`, `--upgrade-socket`).
    #[error(transparent)]
    Upgrade(#[from] UpgradeError),
    /// The access log file could not be opened.
    #[error("access log: {0}")]
    AccessLog(std::io::Error),
}

/// A started balancer: its workers run until [`Running::drain`] and the
/// drain that follows; [`Running::wait`] joins them.
pub(crate) struct Running {
    shared: Arc<Shared>,
    workers: Vec<std::thread::JoinHandle<()>>,
    listeners: Vec<(ListenerKind, std::net::SocketAddr)>,
    /// Duplicates of the listening sockets, for a successor.
    handover: upgrade::Handover,
}

impl Running {
    /// The state every worker shares (for the admin API).
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Every serving listener with the address it is bound to (port 0
    /// resolved), in the order the configuration gives them.
    pub(crate) fn listeners(&self) -> &[(ListenerKind, std::net::SocketAddr)] {
        &self.listeners
    }

    /// The listening sockets kept for a successor (taken once).
    pub(crate) fn take_handover(&mut self) -> upgrade::Handover {
        std::mem::take(&mut self.handover)
    }

    /// Stops accepting, lets in-flight work finish within the drain
    /// timeout, then closes what is left (WebSocket sessions with 1001).
    pub(crate) fn drain(&self) {
        self.shared.lifecycle.advance(Phase::Draining);
    }

    /// Waits until every worker has stopped (after a drain).
    pub(crate) fn wait(self) {
        for h in self.workers {
            let _ = h.join();
        }
        self.shared.lifecycle.advance(Phase::Stopped);
        // Event streams end with the balancer.
        self.shared.events.shut();
        // The last lines are written, unless the destination is stuck.
        let log = &self.shared.telemetry.access_log;
        log.finish(std::time::Duration::from_secs(1));
        tracing::info!("stopped");
    }
}

/// Builds the shared state, binds every listener (or takes the one handed
/// over for its address, see [`upgrade`]) and starts the workers; returns
/// once every worker's runtime is up and accepting.
pub(crate) fn start(
    cfg: ServeConfig,
    hooks: Option<Arc<dyn crate::hooks::Hooks>>,
    inherited: &mut upgrade::Inherited,
) -> Result<Running, ServeError> {
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
    let backend_tls = crate::config::preflight::backend_tls_config(&cfg)?;
    let workers = cfg.workers;
    let access_log =
        crate::rt::access_log::AccessLog::start(&cfg.access_log, cfg.access_log_format)
            .map_err(ServeError::AccessLog)?;
    let mut sets = Vec::new();
    let control: Vec<std::net::SocketAddr> = cfg.control_listen.into_iter().collect();
    for (addrs, kind) in [
        (&cfg.listen, ListenerKind::Plain),
        (&cfg.tls_listen, ListenerKind::Tls),
        (&control, ListenerKind::Control),
    ] {
        for addr in addrs {
            let set =
                listener::take_or_bind(inherited, *addr, kind, workers).map_err(|source| {
                    ServeError::Bind {
                        addr: *addr,
                        source,
                    }
                })?;
            sets.push(set);
        }
    }
    let shared = Arc::new(Shared {
        lifecycle: Lifecycle::new(workers),
        pool,
        registry,
        live_tls: Arc::new(Published::new(tls)),
        reloads: reload::Reloads::default(),
        live: Arc::new(Published::new(cfg.clone())),
        open_connections: AtomicUsize::new(0),
        control_hub: Arc::new(ControlHub::new()),
        per_ip: per_ip::PerIpTable::new(),
        per_ip_refused: AtomicU64::new(0),
        hooks,
        router: Arc::new(crate::hub::Router::new(
            workers,
            crate::hub::ConnIds::random(),
        )),
        events: Arc::new(crate::hub::EventBus::new()),
        handed_over: AtomicBool::new(false),
        backend_tls,
        telemetry: Arc::new(crate::proxy::metrics::Telemetry::new(workers, access_log)),
        cfg: Arc::new(cfg),
    });
    spawn_expiry(shared.clone()).map_err(ServeError::Thread)?;
    health_check::spawn(shared.clone()).map_err(ServeError::Thread)?;

    let listeners: Vec<(ListenerKind, std::net::SocketAddr)> =
        sets.iter().map(|set| (set.kind, set.addr)).collect();
    let mut per_worker: Vec<Vec<(ListenerKind, std::net::TcpListener)>> =
        (0..workers).map(|_| Vec::new()).collect();
    let mut handover = upgrade::Handover::default();
    for set in sets {
        for (i, l) in set.per_worker {
            if shared.cfg.upgrade_socket.is_some() {
                handover.keep(listener::role_of(set.kind), i, set.addr, &l);
            }
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
        let theirs = shared.clone();
        let core = (!cores.is_empty()).then(|| cores[i % cores.len()]);
        let started = worker::Started {
            report: started_tx.clone(),
            go: go.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("wslb-worker-{i}"))
            .spawn(move || worker::run_worker(i, theirs, listeners, core, started));
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                // Release the workers already waiting at the barrier.
                shared.lifecycle.advance(Phase::Draining);
                return Err(ServeError::Thread(e));
            }
        }
    }
    drop(started_tx);
    // Every worker's runtime is up before the balancer says it is ready.
    let mut failed = None;
    for _ in 0..workers {
        match started_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = failed.or(Some(e)),
            Err(_) => {
                failed = failed.or(Some("a worker ended before starting".to_string()));
                break;
            }
        }
    }
    if let Some(e) = failed {
        // Every worker waits at the barrier, failed or not: release them
        // into a drain that stops them at once.
        shared.lifecycle.advance(Phase::Draining);
        go.wait();
        for h in handles {
            let _ = h.join();
        }
        return Err(ServeError::Runtime(e));
    }
    // The static backends joined, on this thread, before any traffic.
    emit_all_up(&shared.hooks, &shared.events, &shared.pool);
    go.wait();
    Ok(Running {
        shared,
        workers: handles,
        listeners,
        handover,
    })
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
                    .expire_backends(crate::pool::clock::now_ms(), timeout_ms);
                for (id, url) in gone {
                    tracing::warn!(id, "backend missed its heartbeats: removed from the pool");
                    emit(
                        &shared.hooks,
                        &shared.events,
                        PoolEvent::Down,
                        &id,
                        &url,
                        true,
                    );
                }
            }
        })
        .map(|_| ())
}
