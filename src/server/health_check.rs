//! Active health checks of static backends (`--health-check PATH`): one
//! thread with its own small runtime checks every static backend each
//! interval, all at once, and moves their shared health state after `fall`
//! failures or `rise` passes in a row (see `pool::probe`). Registered
//! backends are left to their heartbeats.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::Shared;
use crate::pool::probe::{self, ProbeResult, ProbeStreak, Transition};
use crate::pool::{Backend, Source};
use crate::rt::notify::Phase;

/// Checks started at once, at most; a larger pool is checked in turns.
const CHECKS_AT_ONCE: usize = 256;
/// While checks are off, how often the configuration is looked at again.
const OFF_POLL: Duration = Duration::from_secs(1);

/// Starts the checker thread. It reads the live configuration before each
/// round, so a reload can turn checks on, off or change them; while they
/// are off it only sleeps.
pub(crate) fn spawn(shared: Arc<Shared>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("wslb-health".into())
        .spawn(move || {
            let runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build();
            match runtime {
                Ok(mut rt) => rt.block_on(run(shared)),
                Err(e) => tracing::error!(error = %e, "health checks: cannot start their runtime"),
            }
        })
        .map(|_| ())
}

/// Rounds of checks until the balancer drains.
async fn run(shared: Arc<Shared>) {
    // TLS backends are checked over TLS, verified like the proxy's own
    // connections (no configuration: their checks fail, saying why).
    let connector: Option<monoio_rustls::TlsConnector> =
        shared.backend_tls.clone().map(crate::tls::connector);
    let mut streaks: HashMap<Arc<str>, ProbeStreak> = HashMap::new();
    let mut checked = false;
    while shared.lifecycle.phase() == Phase::Running {
        let started = Instant::now();
        let Some(check) = shared.live.load().health_check.clone() else {
            if checked {
                // Turned off by a reload: the verdicts go, nobody stays out.
                for b in shared.pool.load().backends.iter() {
                    probe::forget(&b.stats);
                }
                streaks.clear();
                checked = false;
            }
            nap(&shared, started + OFF_POLL).await;
            continue;
        };
        checked = true;
        let request_path = check.path.as_str();
        let snapshot = shared.pool.load();
        let statics: Vec<Arc<Backend>> = snapshot
            .backends
            .iter()
            .filter(|b| b.source == Source::Static)
            .cloned()
            .collect();
        for batch in statics.chunks(CHECKS_AT_ONCE) {
            let tasks: Vec<_> = batch
                .iter()
                .map(|b| {
                    let request = probe::probe_request(request_path, host_of(b));
                    let tls = b.tls_name.clone().map(|name| (connector.clone(), name));
                    monoio::spawn(probe_once(b.addr, tls, request, check.timeout))
                })
                .collect();
            for (backend, task) in batch.iter().zip(tasks) {
                let result = task.await;
                let streak = streaks.entry(backend.id.clone()).or_default();
                report(
                    backend,
                    &result,
                    streak.record(result.passed(), &check, &backend.stats),
                );
            }
        }
        streaks.retain(|id, _| statics.iter().any(|b| &b.id == id));
        nap(&shared, started + check.interval).await;
    }
}

/// Sleeps until `deadline` in short steps, so a drain stops the thread soon.
async fn nap(shared: &Shared, deadline: Instant) {
    while shared.lifecycle.phase() == Phase::Running {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        monoio::time::sleep(left.min(Duration::from_millis(100))).await;
    }
}

/// The `Host` a check names: the authority of the static backend's URL as
/// given (its id; `localhost` stays a name).
fn host_of(b: &Backend) -> &str {
    let url: &str = &b.id;
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// Logs a result that changed the backend's health (failures that did not,
/// at debug level).
fn report(b: &Backend, result: &ProbeResult, change: Option<Transition>) {
    match change {
        Some(Transition::Fell) => tracing::warn!(
            id = %b.id,
            result = ?result,
            "health check: backend failing, out of the pool"
        ),
        Some(Transition::Rose) => tracing::info!(
            id = %b.id,
            "health check: backend passing again, back in the pool"
        ),
        None if !result.passed() => {
            tracing::debug!(id = %b.id, result = ?result, "health check failed")
        }
        None => {}
    }
}

/// The TLS side of a check: the connector and the name to verify.
type TlsTarget = (Option<monoio_rustls::TlsConnector>, Arc<str>);

/// One check: connect (and for a TLS backend, the verified handshake), send
/// the request, read up to the status line, all within `timeout`.
async fn probe_once(
    addr: SocketAddr,
    tls: Option<TlsTarget>,
    request: Vec<u8>,
    timeout: Duration,
) -> ProbeResult {
    let started = Instant::now();
    let result = match tls {
        None => match monoio::time::timeout(timeout, TcpStream::connect_addr(addr)).await {
            Ok(Ok(stream)) => {
                let left = timeout.saturating_sub(started.elapsed());
                monoio::time::timeout(left, exchange(stream, request)).await
            }
            Ok(Err(e)) => Ok(ProbeResult::Failed(format!("connect: {e}"))),
            Err(e) => Err(e),
        },
        Some((None, _)) => Ok(ProbeResult::Failed(
            "no CA certificates for TLS backends (see --backend-ca)".into(),
        )),
        Some((Some(connector), name)) => {
            match crate::tls::backend::open(&connector, addr, &name, timeout).await {
                Ok(stream) => {
                    let left = timeout.saturating_sub(started.elapsed());
                    monoio::time::timeout(left, exchange(stream, request)).await
                }
                Err(e) => Ok(ProbeResult::Failed(format!("tls: {e}"))),
            }
        }
    };
    match result {
        Ok(r) => r,
        Err(_) => ProbeResult::Failed(format!("no answer within {timeout:?}")),
    }
}

/// Writes the request and reads until the status line can be judged.
async fn exchange<S: AsyncReadRent + AsyncWriteRent>(
    mut stream: S,
    request: Vec<u8>,
) -> ProbeResult {
    let (written, _) = stream.write_all(request).await;
    if let Err(e) = written {
        return ProbeResult::Failed(format!("write: {e}"));
    }
    let mut head: Vec<u8> = Vec::with_capacity(512);
    loop {
        let spare = vec![0u8; 512];
        let (read, spare) = stream.read(spare).await;
        match read {
            Ok(0) => return ProbeResult::Failed("closed before a status line".into()),
            Ok(n) => head.extend_from_slice(&spare[..n]),
            Err(e) => return ProbeResult::Failed(format!("read: {e}")),
        }
        if let Some(result) = probe::judge(&head) {
            return result;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_is_the_urls_authority() {
        let addr: SocketAddr = "127.0.0.1:9001".parse().unwrap_or_else(|_| unreachable!());
        let b = Backend::new("http://127.0.0.1:9001", addr, 1, Source::Static);
        assert_eq!(host_of(&b), "127.0.0.1:9001");
        let b = Backend::new("https://localhost:8443/x", addr, 1, Source::Static);
        assert_eq!(host_of(&b), "localhost:8443");
    }
}
