//! Upgrades refused before any session existed: the origin policy, the
//! reasons given, and their report (the `handshake_refused` event and the
//! refusal counter).

use monoio::io::AsyncWriteRent;

use super::env::Env;
use super::metrics::Refusal;
use super::pool_events::{emit_event, wants};
use super::ClientConn;
use crate::hub::EventKind;
use crate::proto::http::ParsedRequest;

/// Reports an upgrade refused before any session existed for `why`:
/// counted, and the `handshake_refused` event when someone listens; `req`'s
/// head is still at the front of the client's buffer. Nothing for a request
/// that was not an upgrade.
pub(crate) fn refused<S: AsyncWriteRent>(
    env: &Env,
    client: &ClientConn<S>,
    req: &ParsedRequest,
    status: u16,
    why: Refusal,
) {
    report(env, client, req, status, why, why.reason());
}

/// Reports an upgrade a hook refused, with the hook's reason.
pub(crate) fn refused_by_hook<S: AsyncWriteRent>(
    env: &Env,
    client: &ClientConn<S>,
    req: &ParsedRequest,
    status: u16,
    reason: &str,
) {
    report(env, client, req, status, Refusal::Hook, reason);
}

fn report<S: AsyncWriteRent>(
    env: &Env,
    client: &ClientConn<S>,
    req: &ParsedRequest,
    status: u16,
    why: Refusal,
    reason: &str,
) {
    if !req.upgrade_websocket {
        return;
    }
    let slot = Refusal::ALL.iter().position(|&r| r == why).unwrap_or(0);
    env.metrics.shared.refusals[slot].add(1);
    if !wants(env) {
        return;
    }
    let target = client.buf.data().get(req.path.clone()).unwrap_or_default();
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    emit_event(&env.hooks, &env.events, || EventKind::HandshakeRefused {
        client: client.peer.to_string(),
        path: String::from_utf8_lossy(path).into_owned(),
        status,
        reason: reason.to_string(),
    });
}

/// Why `check_upgrade_request` refused, by its status.
pub(crate) fn upgrade_refusal(status: u16) -> Refusal {
    if status == 426 {
        Refusal::Version
    } else {
        Refusal::Malformed
    }
}

/// Why an upgrade was answered `status` when no backend took it.
pub(crate) fn backend_failure(status: u16) -> Refusal {
    match status {
        502 => Refusal::BackendFailed,
        504 => Refusal::BackendTimeout,
        _ => Refusal::NoBackend,
    }
}

/// The allowed-origins policy, applied before any backend is chosen.
///
/// A fallback stream (`fallback`) without `Origin` passes: browsers send
/// none on a same-origin `GET`, so only a cross-origin page names one, and
/// that one is checked. (A WebSocket handshake always carries it.)
pub(crate) fn check_origin<S: AsyncWriteRent>(
    env: &Env,
    client: &ClientConn<S>,
    req: &ParsedRequest,
    fallback: bool,
) -> Result<(), u16> {
    let cfg = env.cfg();
    let policy = &cfg.allowed_origins;
    if policy.is_empty() {
        return Ok(());
    }
    let data = client.buf.data();
    let allowed = match req.origin.clone() {
        Some(r) => policy.allows(&data[r]),
        None => fallback,
    };
    if allowed {
        Ok(())
    } else {
        Err(403)
    }
}
