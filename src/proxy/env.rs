//! The proxy flow's environment: what one worker lends every connection it
//! serves (configuration, pool view and picker, pooled backend connections,
//! the connection table, the drain signal, the registry for the control
//! channel). The server builds one per worker; tests build one by hand.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use super::backend::IdlePool;
use super::channels::ChannelIndex;
use super::conns::ConnTable;
use super::metrics::{LocalMetrics, Telemetry};
use crate::config::ServeConfig;
use crate::hooks::{Hooks, MessageMode};
use crate::hub::{EventBus, Router};
use crate::pool::registry::hub::ControlHub;
use crate::pool::registry::Registry;
use crate::pool::{LocalPool, Picker, SharedPool};
use crate::rt::live::{LocalCopy, Published};
use crate::rt::log_line::LocalLog;
use crate::rt::notify::LocalEvent;
use crate::rt::ready_read::ReadPool;
use crate::rt::throttle::Throttle;

/// Everything a connection task needs from the worker that runs it.
pub(crate) struct Env {
    /// The worker's index (0-based).
    pub worker: usize,
    /// This worker's copy of the validated configuration (read it with
    /// [`Env::cfg`]); a reload replaces it.
    cfg_copy: LocalCopy<ServeConfig>,
    /// This worker's view of the pool, refreshed when the registry publishes.
    pub pool: RefCell<LocalPool>,
    /// This worker's pick state (rng, round-robin position).
    pub picker: Picker,
    /// Kept-alive backend connections, per backend address.
    pub idle: IdlePool,
    /// Live client connections of this worker.
    pub conns: Rc<ConnTable>,
    /// Fired when the worker starts draining.
    pub draining: LocalEvent,
    /// Throttles warnings about local resource exhaustion.
    pub exhaustion_log: Throttle,
    /// The registry, for the control channel (`/_lb/register`).
    pub registry: Arc<Registry>,
    /// Which control session speaks for which backend.
    pub control_hub: Arc<ControlHub>,
    /// The embedding program's hooks, if any.
    pub hooks: Option<Arc<dyn Hooks>>,
    /// What `on_message` asked to be given (`Off` without hooks).
    pub message_mode: MessageMode,
    /// Every worker's messaging inbox, and the connection id scheme.
    pub router: Arc<Router>,
    /// Live events for their readers.
    pub events: Arc<EventBus>,
    /// Channel membership of this worker's sessions.
    pub channels: ChannelIndex,
    /// Verified TLS to `https://` and `wss://` backends (`None`: no CA
    /// certificates could be loaded; such backends then fail to connect).
    pub backend_tls: Option<monoio_rustls::TlsConnector>,
    /// This worker's counters and histograms.
    pub metrics: LocalMetrics,
    /// This worker's access log buffer.
    pub log: LocalLog,
    /// Read buffers lent to sessions only while they have bytes to handle.
    pub reads: ReadPool,
}

/// What every worker's environment shares with the others.
#[derive(Clone)]
pub(crate) struct Common {
    /// The configuration, as the latest reload left it.
    pub cfg: Arc<Published<ServeConfig>>,
    pub pool: Arc<SharedPool>,
    pub registry: Arc<Registry>,
    pub control_hub: Arc<ControlHub>,
    pub hooks: Option<Arc<dyn Hooks>>,
    pub router: Arc<Router>,
    pub events: Arc<EventBus>,
    pub telemetry: Arc<Telemetry>,
}

#[cfg(test)]
impl Common {
    /// What one worker of a test balancer shares: the given configuration,
    /// pool and registry, no hooks, no access log.
    pub(crate) fn for_test(
        cfg: Arc<Published<ServeConfig>>,
        pool: Arc<SharedPool>,
        registry: Arc<Registry>,
    ) -> Common {
        let off = crate::rt::access_log::AccessLog::start(
            &crate::config::AccessLogTarget::Off,
            crate::config::AccessLogFormat::Text,
        )
        .expect("an access log that is off");
        Common {
            cfg,
            pool,
            registry,
            control_hub: Arc::new(ControlHub::new()),
            hooks: None,
            router: Arc::new(Router::new(1, crate::hub::ConnIds::random())),
            events: Arc::new(EventBus::new()),
            telemetry: Arc::new(Telemetry::new(1, off)),
        }
    }
}

impl Env {
    /// The environment of worker `worker` over what the workers share.
    pub(crate) fn new(worker: usize, common: Common) -> Self {
        let Common {
            cfg,
            pool,
            registry,
            control_hub,
            hooks,
            router,
            events,
            telemetry,
        } = common;
        let block = telemetry.workers.get(worker).cloned().unwrap_or_default();
        let seed = 0x9e37_79b9_7f4a_7c15
            ^ (worker as u64).wrapping_mul(0x1000_0000_01b3)
            ^ fastrand::u64(..);
        let cfg_copy = LocalCopy::new(cfg);
        let first = cfg_copy.get();
        Env {
            worker,
            pool: RefCell::new(LocalPool::new(pool)),
            picker: Picker::new(first.algorithm, seed),
            idle: IdlePool::new(first.backend_idle_timeout),
            conns: Rc::new(ConnTable::new(worker)),
            draining: LocalEvent::new(),
            exhaustion_log: Throttle::new(1000),
            registry,
            control_hub,
            message_mode: hooks
                .as_ref()
                .map_or(MessageMode::Off, |h| h.message_mode()),
            hooks,
            router,
            events,
            channels: ChannelIndex::default(),
            backend_tls: None,
            metrics: LocalMetrics::new(block),
            log: LocalLog::new(telemetry.access_log.clone()),
            reads: ReadPool::default(),
            cfg_copy,
        }
    }

    /// The configuration as the latest reload left it (one atomic load;
    /// a copy when a reload moved it, and then the picker and the idle
    /// pool take its algorithm and timeout). A connection that keeps the
    /// value keeps the settings it started with.
    #[inline]
    pub(crate) fn cfg(&self) -> Rc<ServeConfig> {
        match self.cfg_copy.refresh() {
            Some(fresh) => {
                self.picker.set_algorithm(fresh.algorithm);
                self.idle.set_max_idle(fresh.backend_idle_timeout);
                fresh
            }
            None => self.cfg_copy.current(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Algorithm;

    #[test]
    fn a_published_configuration_reaches_the_worker_and_its_picker() {
        let live = Arc::new(Published::new(ServeConfig::default()));
        let pool = Arc::new(SharedPool::new());
        let registry = Arc::new(Registry::new(pool.clone()));
        let env = Env::new(0, Common::for_test(live.clone(), pool, registry));
        let started = env.cfg();
        assert_eq!(env.picker.algorithm(), Algorithm::Random);
        live.publish(ServeConfig {
            algorithm: Algorithm::RoundRobin,
            max_retries: 9,
            ..ServeConfig::default()
        });
        let now = env.cfg();
        assert_eq!(now.max_retries, 9);
        assert_eq!(env.picker.algorithm(), Algorithm::RoundRobin);
        assert_eq!(
            started.max_retries, 2,
            "a connection keeps what it started with"
        );
        assert!(
            Rc::ptr_eq(&now, &env.cfg()),
            "no copy until the next reload"
        );
    }
}
