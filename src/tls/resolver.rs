//! Certificate choice by SNI: exact, ASCII case-insensitive host match, then
//! the default certificate, else no certificate (the handshake fails).

use std::collections::HashMap;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::load::load_certified_key;
use super::{TlsError, TlsSettings};

/// Validates an SNI host name and returns it lower-cased, without a
/// trailing dot. Wildcards and IP addresses are refused: SNI carries DNS
/// names only, and matching is exact.
pub(crate) fn normalize_host(host: &str) -> Result<String, TlsError> {
    let bad = || TlsError::BadSniHost(host.to_string());
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    if trimmed.is_empty() || trimmed.contains('*') || trimmed.parse::<std::net::IpAddr>().is_ok() {
        return Err(bad());
    }
    rustls::pki_types::DnsName::try_from(trimmed).map_err(|_| bad())?;
    Ok(trimmed.to_ascii_lowercase())
}

/// The server's certificate resolver.
#[derive(Debug)]
pub(crate) struct SniResolver {
    by_host: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    /// Loads every certificate named in `settings` (errors name the file).
    pub(crate) fn load(
        settings: &TlsSettings,
        provider: &CryptoProvider,
    ) -> Result<Self, TlsError> {
        if settings.default_cert.is_none() && settings.sni.is_empty() {
            return Err(TlsError::NoCertificateConfigured);
        }
        let default = settings
            .default_cert
            .as_ref()
            .map(|pair| load_certified_key(pair, provider))
            .transpose()?;
        let mut by_host = HashMap::with_capacity(settings.sni.len());
        for (host, pair) in &settings.sni {
            let host = normalize_host(host)?;
            if by_host.contains_key(&host) {
                return Err(TlsError::DuplicateSniHost(host));
            }
            let key = load_certified_key(pair, provider)?;
            by_host.insert(host, key);
        }
        Ok(Self { by_host, default })
    }

    fn lookup(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = sni {
            let name = name.strip_suffix('.').unwrap_or(name);
            let hit = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                self.by_host.get(&name.to_ascii_lowercase())
            } else {
                self.by_host.get(name)
            };
            if let Some(key) = hit {
                return Some(key.clone());
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = client_hello.server_name();
        let found = self.lookup(sni);
        if found.is_none() {
            tracing::debug!(sni = ?sni, "tls: no certificate for SNI and no default; refusing handshake");
        }
        found
    }
}
