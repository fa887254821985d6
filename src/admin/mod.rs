//! The admin listener: a small JSON API (backends, drain, resume, status),
//! Prometheus metrics, a health check, the live event stream and a status
//! page (`GET /`), on its own thread and runtime so it never competes with
//! the workers' hot path.

mod events;
mod messaging;
mod metrics;
mod page;
mod routes;
mod slots;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::rt::notify::Phase;
use crate::server::accept::Acceptor;
use crate::server::Shared;

/// Starts the admin API on `listener` in a thread of its own; returns once
/// its runtime is up (so a descriptor shortage later cannot stop it). It
/// serves until every worker has stopped.
pub(crate) fn spawn(shared: Arc<Shared>, listener: std::net::TcpListener) -> std::io::Result<()> {
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("wslb-admin".into())
        .spawn(move || {
            let rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                .enable_timer()
                .build();
            match rt {
                Ok(mut rt) => {
                    let _ = started_tx.send(Ok(()));
                    rt.block_on(accept_loop(shared, listener))
                }
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                }
            }
        })?;
    started_rx
        .recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("admin thread ended before starting")))
}

async fn accept_loop(shared: Arc<Shared>, listener: std::net::TcpListener) {
    let listener = match monoio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "admin: cannot adopt listener");
            return;
        }
    };
    let slots = slots::Slots::new(shared.cfg.admin_max_connections);
    let refusals = crate::rt::throttle::Throttle::new(1000);
    let slot = shared.lifecycle.outside_slot();
    // Accept until the workers stop, or until they drain when a successor
    // took this listener over (it answers from then on); what is accepted
    // is served either way, and the runtime stays up until the workers stop.
    let stop_accepting = || async {
        shared.lifecycle.wait_for(slot, Phase::Draining).await;
        if !shared.handed_over.load(Ordering::Acquire) {
            shared.lifecycle.wait_for(slot, Phase::Stopped).await;
        }
    };
    let mut acceptor = Acceptor::new(listener);
    loop {
        let Some(accepted) = acceptor.accept_unless(stop_accepting()).await else {
            break;
        };
        match accepted {
            Ok((stream, peer)) => match slots.admit() {
                Some(slot) => {
                    monoio::spawn(routes::serve(shared.clone(), stream, peer, slot));
                }
                None => {
                    // Every slot is serving a request: close at once.
                    drop(stream);
                    if let Some(held) = refusals.allow() {
                        tracing::warn!(%peer, held, "admin: every connection busy, closing a new one");
                    }
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, "admin accept error");
                monoio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    shared.lifecycle.wait_for(slot, Phase::Stopped).await;
    end_streams(&shared).await;
}

/// Ends the event streams (the balancer stopped) and gives them a moment
/// to close their connections before this runtime stops.
async fn end_streams(shared: &Shared) {
    shared.events.shut();
    for _ in 0..100 {
        if !shared.events.active() {
            return;
        }
        monoio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Percent-decodes a path segment (`%2F` -> `/`); None if malformed.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The URL of the admin API's backend list for an admin listener bound to
/// `addr` (for logs and scripts).
pub fn api_url(addr: SocketAddr) -> String {
    format!("http://{addr}/api/backends")
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_ids_with_slashes() {
        assert_eq!(
            percent_decode("http%3A%2F%2F127.0.0.1%3A9001").as_deref(),
            Some("http://127.0.0.1:9001")
        );
        assert_eq!(percent_decode("plain-id").as_deref(), Some("plain-id"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
    }
}
