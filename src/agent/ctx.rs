//! What one balancer's task works with: the agent's shared state, which
//! balancer it is, and the configuration. The watchdog builds it and the
//! session reads it (watchdog -> session -> ctx).

use std::cell::Cell;
use std::sync::Arc;

use super::config::AgentConfig;
use super::handle::Shared;
use super::url::BalancerUrl;

/// What one balancer's task works with.
pub(crate) struct Ctx {
    /// State shared with the application's [`super::AgentHandle`].
    pub(crate) shared: Arc<Shared>,
    /// This balancer's index in `cfg.balancers` (and in the link states).
    pub(crate) index: usize,
    /// The balancer this task talks to.
    pub(crate) url: BalancerUrl,
    /// The whole agent configuration.
    pub(crate) cfg: Arc<AgentConfig>,
    /// The TLS connector for `wss://` balancers.
    pub(crate) tls: Option<monoio_rustls::TlsConnector>,
    /// The protocol version to register with: 2, or 1 once this balancer
    /// refused 2 (an older one).
    pub(crate) version: Cell<u32>,
}
