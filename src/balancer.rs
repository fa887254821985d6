//! The library face: build a balancer, start it, drain it and wait for it.
//!
//! ```no_run
//! use wslb::{Algorithm, Balancer};
//!
//! let lb = Balancer::builder()
//!     .listen("127.0.0.1:8080")
//!     .backend("http://127.0.0.1:9001")
//!     .algorithm(Algorithm::FewestConnections)
//!     .start()?;
//! println!("serving on {:?}", lb.local_addrs());
//! lb.handle().drain();
//! lb.wait();
//! # Ok::<(), wslb::Error>(())
//! ```
//!
//! A running balancer takes a new configuration without a restart
//! ([`Handle::reload`]): certificates, static backends, the algorithm,
//! limits and timeouts change; no connection is dropped.
//!
//! ```no_run
//! # fn demo(lb: &wslb::Balancer) {
//! let handle = lb.handle();
//! let mut cfg = handle.config();
//! cfg.backends = vec![("http://127.0.0.1:9002".into(), 3)];
//! match handle.reload(cfg) {
//!     Ok(summary) => println!("added {:?}", summary.backends.added),
//!     Err(refused) => eprintln!("kept the running configuration: {refused}"),
//! }
//! # }
//! ```

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::ServeConfig;
use crate::hooks::Hooks;
use crate::pool::Algorithm;
use crate::proxy::ListenerKind;
use crate::rt::notify::Phase;
use crate::server::{ReloadError, ReloadSource, ReloadSummary, Running, ServeError, Shared};
use crate::tls::{CertPair, TlsSettings};

/// Why a balancer could not be built or started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is invalid (the message names it).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The balancer could not start (bind, TLS, threads, runtime).
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The admin API could not start.
    #[error("admin API: {0}")]
    Admin(std::io::Error),
}

/// Builds a [`Balancer`]; every setting not given keeps the default that
/// `wslb serve` documents for its flag.
pub struct Builder {
    cfg: ServeConfig,
    listen: Vec<SocketAddr>,
    tls: Option<CertPair>,
    hooks: Option<Arc<dyn Hooks>>,
    reload_source: Option<ReloadSource>,
    error: Option<String>,
}

impl Builder {
    fn fail(mut self, e: String) -> Self {
        self.error.get_or_insert(e);
        self
    }

    /// Listens on `addr` (`"0.0.0.0:443"`, `"[::]:80"`; port 0 picks a free
    /// port, see [`Balancer::local_addrs`]). Repeatable. With [`Builder::tls`]
    /// these listeners terminate TLS.
    pub fn listen(mut self, addr: impl ToSocketAddrs) -> Self {
        match addr.to_socket_addrs() {
            Ok(addrs) => {
                self.listen.extend(addrs);
                self
            }
            Err(e) => self.fail(format!("listen address: {e}")),
        }
    }

    /// Terminates TLS on the [`Builder::listen`] addresses with this
    /// certificate chain and private key (PEM files).
    pub fn tls(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls = Some(CertPair {
            cert: cert.into(),
            key: key.into(),
        });
        self
    }

    /// Adds a static backend (`http://HOST:PORT`, weight 1). Repeatable.
    pub fn backend(self, url: &str) -> Self {
        self.weighted_backend(url, 1)
    }

    /// Adds a static backend with a weight (1 to 1000).
    pub fn weighted_backend(mut self, url: &str, weight: u32) -> Self {
        self.cfg.backends.push((url.to_string(), weight));
        self
    }

    /// How backends are picked.
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.cfg.algorithm = algorithm;
        self
    }

    /// Lets backends register themselves over the control channel
    /// (`/_lb/register`) with this bearer token.
    pub fn register_token(mut self, token: impl Into<String>) -> Self {
        self.cfg.register_token = Some(token.into());
        self
    }

    /// Worker threads (one runtime each); the default is one per core.
    pub fn workers(mut self, workers: usize) -> Self {
        self.cfg.workers = workers;
        self
    }

    /// Serves the admin API (JSON, metrics) on `addr`, with an optional
    /// bearer token.
    pub fn admin(mut self, addr: SocketAddr, token: Option<String>) -> Self {
        self.cfg.admin_listen = Some(addr);
        self.cfg.admin_token = token;
        self
    }

    /// Calls these hooks on every event (see [`Hooks`]).
    pub fn hooks(mut self, hooks: impl Hooks) -> Self {
        self.hooks = Some(Arc::new(hooks));
        self
    }

    /// Gives the balancer a way to read its configuration again, used by
    /// [`Handle::reload_from_source`] and the admin API's
    /// `POST /api/reload`.
    pub fn reload_source(
        mut self,
        source: impl Fn() -> Result<ServeConfig, String> + Send + Sync + 'static,
    ) -> Self {
        self.reload_source = Some(Arc::new(source));
        self
    }

    /// Changes any other setting on the full configuration.
    pub fn configure(mut self, change: impl FnOnce(&mut ServeConfig)) -> Self {
        change(&mut self.cfg);
        self
    }

    /// The configuration as it stands (the listen addresses and TLS
    /// certificate are added by [`Builder::start`]).
    pub fn config(&self) -> &ServeConfig {
        &self.cfg
    }

    /// Validates the settings, binds every listener and starts the workers
    /// (and the admin API when set); returns once they accept.
    pub fn start(self) -> Result<Balancer, Error> {
        if let Some(e) = self.error {
            return Err(Error::Config(e));
        }
        let mut cfg = self.cfg;
        match self.tls {
            Some(pair) => {
                cfg.tls_listen.extend(self.listen);
                let mut settings = cfg.tls.take().unwrap_or(TlsSettings {
                    default_cert: None,
                    sni: Vec::new(),
                });
                settings.default_cert = Some(pair);
                cfg.tls = Some(settings);
            }
            None => cfg.listen.extend(self.listen),
        }
        let lb = Balancer::start(cfg, self.hooks)?;
        if let Some(source) = self.reload_source {
            lb.running.shared().reloads.set_source(source);
        }
        Ok(lb)
    }
}

/// A running balancer.
pub struct Balancer {
    running: Running,
    admin: Option<SocketAddr>,
}

impl Balancer {
    /// A builder with every default.
    pub fn builder() -> Builder {
        Builder {
            cfg: ServeConfig::default(),
            listen: Vec::new(),
            tls: None,
            hooks: None,
            reload_source: None,
            error: None,
        }
    }

    /// Starts a balancer from a full configuration (what `wslb serve` does).
    /// With [`ServeConfig::upgrade`], it first takes the listening sockets
    /// of the balancer serving on [`ServeConfig::upgrade_socket`] and, once
    /// it serves on them, tells that one to drain.
    pub fn start(cfg: ServeConfig, hooks: Option<Arc<dyn Hooks>>) -> Result<Balancer, Error> {
        cfg.validate().map_err(Error::Config)?;
        let mut upgrade =
            crate::server::upgrade::Upgrade::begin(&cfg).map_err(ServeError::Upgrade)?;
        let admin_listen = cfg.admin_listen;
        let admin_open = cfg.admin_token.is_none();
        let admin_listener = match admin_listen {
            Some(addr) => {
                let l = match upgrade.take_admin(addr) {
                    Some(l) => l,
                    None => crate::server::listener::bind_single(addr)
                        .map_err(|source| ServeError::Bind { addr, source })?,
                };
                let bound = l
                    .local_addr()
                    .map_err(|source| ServeError::Bind { addr, source })?;
                upgrade.keep_admin(&l, bound);
                Some((l, bound))
            }
            None => None,
        };
        let mut running = crate::server::start(cfg, hooks, upgrade.inherited())?;
        let admin = match admin_listener {
            Some((l, bound)) => {
                if !bound.ip().to_canonical().is_loopback() && admin_open {
                    tracing::warn!(
                        addr = %bound,
                        "the admin API listens beyond loopback without --admin-token: \
                         anyone who can reach it can drain backends"
                    );
                }
                if let Err(e) = crate::admin::spawn(running.shared().clone(), l) {
                    running.drain();
                    running.wait();
                    return Err(Error::Admin(e));
                }
                Some(bound)
            }
            None => None,
        };
        let handover = running.take_handover();
        if let Err(e) = upgrade.finish(running.shared(), handover) {
            running.drain();
            running.wait();
            return Err(ServeError::Upgrade(e).into());
        }
        Ok(Balancer { running, admin })
    }

    /// Where the balancer serves: each listener's kind (`"http"`, `"https"`,
    /// `"control"`) and bound address.
    pub fn local_addrs(&self) -> Vec<(&'static str, SocketAddr)> {
        self.running
            .listeners()
            .iter()
            .map(|(kind, addr)| (kind.as_str(), *addr))
            .collect()
    }

    /// The first plain (or else TLS) serving address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        let find = |k| {
            self.running
                .listeners()
                .iter()
                .find(|(kind, _)| *kind == k)
                .map(|(_, a)| *a)
        };
        find(ListenerKind::Plain).or_else(|| find(ListenerKind::Tls))
    }

    /// The admin API's bound address, when it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// A handle that can drain the balancer from any thread.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.running.shared().clone(),
        }
    }

    /// Waits until the balancer has drained and every worker has stopped.
    pub fn wait(self) {
        self.running.wait();
    }
}

/// Controls a running balancer from any thread.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    /// Stops accepting, lets in-flight requests finish and WebSocket
    /// sessions end within the drain timeout, then closes the rest with
    /// 1001. Idempotent.
    pub fn drain(&self) {
        self.shared.lifecycle.advance(Phase::Draining);
    }

    /// Reopens the access log file (after logrotate renamed it: new
    /// lines go to a new file at the configured path). Nothing for stderr
    /// or `off`.
    pub fn reopen_access_log(&self) {
        self.shared.telemetry.access_log.reopen();
    }

    /// Whether a drain has started.
    pub fn is_draining(&self) -> bool {
        self.shared.lifecycle.phase() >= Phase::Draining
    }

    /// Whether every worker has stopped.
    pub fn is_stopped(&self) -> bool {
        self.shared.lifecycle.phase() >= Phase::Stopped
    }

    /// The configuration as the latest reload left it (the one the
    /// balancer started with before any): change it and give it to
    /// [`Handle::reload`].
    pub fn config(&self) -> ServeConfig {
        ServeConfig::clone(&self.shared.live.load())
    }

    /// Applies a new configuration without a restart and without closing a
    /// connection: certificate files are read again (new TLS handshakes use
    /// them), static backends are added, removed or reweighted (kept ones
    /// keep their counters; removed ones take no new picks while their
    /// sessions go on; registered backends are not touched), and the
    /// algorithm, stickiness, limits and timeouts apply to what starts
    /// next. Settings only a restart can change (listen addresses, workers,
    /// pinning, the admin and control listeners, the relay mode, the
    /// registry's size and heartbeat timeout, the balancer id, the upgrade
    /// socket, the backend CA file, the access log's destination and
    /// format) keep their running values and are named in
    /// [`ReloadSummary::needs_restart`].
    ///
    /// A configuration that cannot be applied whole (a missing or corrupt
    /// certificate, a refused backend URL, an invalid value) is refused
    /// with the reason and nothing changes. Reads files: call it from a
    /// thread of your own, not from inside a worker.
    pub fn reload(&self, cfg: ServeConfig) -> Result<ReloadSummary, ReloadError> {
        crate::server::reload::reload(&self.shared, cfg)
    }

    /// Reads the configuration through the reload source and applies it as
    /// [`Handle::reload`] does ([`ReloadError::NoSource`] without one).
    pub fn reload_from_source(&self) -> Result<ReloadSummary, ReloadError> {
        crate::server::reload::reload_from_source(&self.shared)
    }

    /// Gives the balancer a way to read its configuration again (a file,
    /// the command line), used by [`Handle::reload_from_source`] and the
    /// admin API's `POST /api/reload`; replaces any earlier one.
    pub fn set_reload_source(
        &self,
        source: impl Fn() -> Result<ServeConfig, String> + Send + Sync + 'static,
    ) {
        self.shared.reloads.set_source(Arc::new(source));
    }
}
