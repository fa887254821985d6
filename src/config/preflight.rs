//! A dry run of a balancer's start: everything [`crate::server`] would refuse
//! in a [`ServeConfig`] (bounds, static backends that do not parse, TLS
//! certificates that cannot be loaded) is found here without binding a
//! socket or starting a thread. `wslb check-config` and a reload use it to
//! refuse a configuration before anything changes.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use super::ServeConfig;
use crate::pool::registry::binding::{parse_binding, Fill};
use crate::pool::registry::protocol::{validate_id, validate_weight};
use crate::tls::TlsError;

/// What a configuration that passed [`ServeConfig::preflight`] resolves to.
#[derive(Debug)]
pub struct Preflight {
    /// The TLS listeners' configuration, certificates loaded (`None`: no
    /// TLS listener).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Each static backend's address, in the order of `backends`.
    pub backend_addrs: Vec<SocketAddr>,
}

/// Why a configuration would not start.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// A setting or a combination of settings is invalid (the message names
    /// the `wslb serve` flag).
    #[error("{0}")]
    Invalid(String),
    /// A static backend would be refused by the pool.
    #[error("backend {url:?}: {reason}")]
    Backend {
        /// Its position in [`ServeConfig::backends`].
        index: usize,
        /// The URL as given.
        url: String,
        /// Why it is refused.
        reason: String,
    },
    /// A certificate or key cannot be loaded or used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl ServeConfig {
    /// Checks this configuration the way starting a balancer does
    /// ([`ServeConfig::validate`], each static backend as the pool parses
    /// it, the TLS certificates loaded and matched with their keys), with
    /// no socket bound and nothing started.
    pub fn preflight(&self) -> Result<Preflight, PreflightError> {
        self.validate().map_err(PreflightError::Invalid)?;
        let mut seen = HashSet::new();
        let mut backend_addrs = Vec::with_capacity(self.backends.len());
        for (index, (url, weight)) in self.backends.iter().enumerate() {
            let refuse = |reason: String| PreflightError::Backend {
                index,
                url: url.clone(),
                reason,
            };
            let id = url.trim();
            validate_id(id).map_err(|e| refuse(e.to_string()))?;
            validate_weight(u64::from(*weight)).map_err(|e| refuse(e.to_string()))?;
            let (_, addr) = parse_binding(id, Fill::Static).map_err(|e| refuse(e.to_string()))?;
            if !seen.insert(id) {
                return Err(refuse("given more than once".into()));
            }
            backend_addrs.push(addr);
        }
        let tls = match &self.tls {
            Some(settings) => Some(crate::tls::build_server_config(settings)?),
            None => None,
        };
        Ok(Preflight { tls, backend_addrs })
    }
}
