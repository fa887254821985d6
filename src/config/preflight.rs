//! A dry run of a balancer's start: everything [`crate::server`] would refuse
//! in a [`ServeConfig`] (bounds, static backends that do not parse, TLS
//! certificates that cannot be loaded) is found here without binding a
//! socket or starting a thread. `wslb check-config` and a reload use it to
//! refuse a configuration before anything changes.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use super::ServeConfig;
use crate::pool::registry::table::Wanted;
use crate::tls::TlsError;

/// What a configuration that passed [`ServeConfig::preflight`] resolves to.
#[derive(Debug)]
pub struct Preflight {
    /// The TLS listeners' configuration, certificates loaded (`None`: no
    /// TLS listener).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Each static backend's address, in the order of `backends`.
    pub backend_addrs: Vec<SocketAddr>,
    /// The client configuration for TLS backends (`None`: no CA could be
    /// loaded and no static backend needs one).
    pub backend_tls: Option<Arc<rustls::ClientConfig>>,
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
            let wanted = Wanted::check(url, *weight).map_err(|e| refuse(e.to_string()))?;
            if !seen.insert(wanted.id.clone()) {
                return Err(refuse("given more than once".into()));
            }
            backend_addrs.push(wanted.addr);
        }
        let tls = match &self.tls {
            Some(settings) => Some(crate::tls::build_server_config(settings)?),
            None => None,
        };
        let backend_tls = backend_tls_config(self)?;
        Ok(Preflight {
            tls,
            backend_addrs,
            backend_tls,
        })
    }
}

/// The client configuration for TLS backends: `--backend-ca` when given
/// (an error naming the file if it cannot be used), else the system roots,
/// which must be there when a static backend uses TLS; without them only
/// registered TLS backends lack one (their connects fail, saying why).
pub(crate) fn backend_tls_config(
    cfg: &ServeConfig,
) -> Result<Option<Arc<rustls::ClientConfig>>, TlsError> {
    use crate::tls::backend::backend_client_config;
    if let Some(ca) = &cfg.backend_ca {
        return Ok(Some(backend_client_config(Some(ca))?));
    }
    let static_tls = cfg
        .backends
        .iter()
        .any(|(url, _)| crate::pool::registry::binding::tls_host(url).is_some());
    match backend_client_config(None) {
        Ok(c) => Ok(Some(c)),
        Err(e) if static_tls => Err(e),
        Err(e) => {
            tracing::debug!(error = %e, "no CA certificates for TLS backends");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{CertPair, TlsSettings};

    fn with_backends(urls: &[&str]) -> ServeConfig {
        ServeConfig {
            listen: vec!["127.0.0.1:1".parse().expect("addr")],
            backends: urls.iter().map(|u| (u.to_string(), 1)).collect(),
            ..ServeConfig::default()
        }
    }

    #[test]
    fn static_backends_are_parsed_as_the_pool_does() {
        let ok = with_backends(&["http://127.0.0.1:9001", "ws://localhost:9002"])
            .preflight()
            .expect("valid");
        let ports: Vec<u16> = ok.backend_addrs.iter().map(SocketAddr::port).collect();
        assert_eq!(ports, [9001, 9002]);
        assert!(ok.tls.is_none());
        for (urls, bad) in [
            (&["http://127.0.0.1:1", "http://db.internal:80"][..], 1),
            (&["http://127.0.0.1:99999"][..], 0),
            (&["http://127.0.0.1:1", "http://127.0.0.1:1"][..], 1),
        ] {
            match with_backends(urls).preflight() {
                Err(PreflightError::Backend { index, .. }) => assert_eq!(index, bad, "{urls:?}"),
                other => panic!("{urls:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn certificates_are_loaded_and_validate_runs() {
        let mut cfg = with_backends(&[]);
        cfg.tls_listen = vec!["127.0.0.1:2".parse().expect("addr")];
        cfg.tls = Some(TlsSettings {
            default_cert: Some(CertPair {
                cert: "/nonexistent/wslb/cert.pem".into(),
                key: "/nonexistent/wslb/key.pem".into(),
            }),
            sni: Vec::new(),
        });
        assert!(matches!(
            cfg.preflight(),
            Err(PreflightError::Tls(TlsError::Read { .. }))
        ));
        let nothing = ServeConfig::default();
        assert!(matches!(
            nothing.preflight(),
            Err(PreflightError::Invalid(_))
        ));
    }
}
