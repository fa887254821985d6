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
use crate::rt::log_line::LocalLog;
use crate::rt::notify::LocalEvent;
use crate::rt::throttle::Throttle;

/// Everything a connection task needs from the worker that runs it.
pub(crate) struct Env {
    /// The worker's index (0-based).
    pub worker: usize,
    /// The validated configuration.
    pub cfg: Arc<ServeConfig>,
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
    /// This worker's counters and histograms.
    pub metrics: LocalMetrics,
    /// This worker's access log buffer.
    pub log: LocalLog,
}

/// What every worker's environment shares with the others.
#[derive(Clone)]
pub(crate) struct Common {
    pub cfg: Arc<ServeConfig>,
    pub pool: Arc<SharedPool>,
    pub registry: Arc<Registry>,
    pub control_hub: Arc<ControlHub>,
    pub hooks: Option<Arc<dyn Hooks>>,
    pub router: Arc<Router>,
    pub events: Arc<EventBus>,
    pub telemetry: Arc<Telemetry>,
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
        Env {
            worker,
            pool: RefCell::new(LocalPool::new(pool)),
            picker: Picker::new(cfg.algorithm, seed),
            idle: IdlePool::new(cfg.backend_idle_timeout),
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
            metrics: LocalMetrics::new(block),
            log: LocalLog::new(telemetry.access_log.clone()),
            cfg,
        }
    }
}
