//! Admin API routes: `GET /api/backends`, `POST /api/backends/{id}/drain`,
//! `POST /api/backends/{id}/resume`, `POST /api/reload`, `GET /api/status`, `GET /metrics`,
//! `GET /healthz`; bearer-token check (on the head, before any body) when
//! `--admin-token` is set; one deadline per request. `GET /api/events`
//! hands the connection to the event stream (`events.rs`), which no
//! request deadline cuts.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use monoio::io::AsyncWriteRent;
use monoio::net::TcpStream;

use super::slots::SlotGuard;
use crate::hub::events::Interest;
use crate::pool::registry::protocol::ServerMessage;
use crate::proto::http::auth::bearer_matches;
use crate::proto::http::{reply, BodyTracker, ForwardInfo, Limits, Method, ParsedRequest};
use crate::proxy::pool_events::{drain_switch, emit_member};
use crate::rt::io::{drain_briefly, read_request_head, write_vec, ReadBuf};
use crate::server::Shared;

/// What to do after one request.
enum Next {
    KeepAlive,
    Close,
    /// Stream events (the request asked for `GET /api/events`).
    Events(Interest),
}

/// Serves one admin connection until it closes, misses its deadline or is
/// evicted to make room for a newer one (see `slots`).
pub(super) async fn serve(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    peer: SocketAddr,
    slot: SlotGuard,
) {
    let evicted = slot.evicted();
    let events = monoio::select! {
        _ = evicted.wait() => None,
        e = serve_requests(&shared, &mut stream, peer, &slot) => e,
    };
    if let Some(interest) = events {
        super::events::stream(&shared, stream, interest, &slot).await;
    }
}

async fn serve_requests(
    shared: &Shared,
    stream: &mut TcpStream,
    peer: SocketAddr,
    slot: &SlotGuard,
) -> Option<Interest> {
    let mut conn = Conn {
        buf: ReadBuf::with_capacity(4096),
        scratch: Vec::new(),
        fwd: ForwardInfo {
            client_ip: peer.ip(),
            tls: false,
            // The rewritten head is not used here.
            trusted: true,
        },
    };
    loop {
        // One deadline for each request, from the moment the connection
        // starts waiting for it: keep-alive idle time, head, body and answer
        // together. A trickle of bytes cannot stretch it.
        slot.waiting();
        let deadline = shared.cfg.admin_request_timeout;
        match monoio::time::timeout(deadline, one_request(shared, stream, &mut conn, slot)).await {
            Ok(Next::KeepAlive) => {}
            Ok(Next::Events(interest)) => return Some(interest),
            Ok(Next::Close) | Err(_) => return None,
        }
    }
}

/// Per-connection buffers.
struct Conn {
    buf: ReadBuf,
    scratch: Vec<u8>,
    fwd: ForwardInfo,
}

async fn one_request(
    shared: &Shared,
    stream: &mut TcpStream,
    conn: &mut Conn,
    slot: &SlotGuard,
) -> Next {
    let limits = Limits {
        max_header_bytes: 16 * 1024,
        max_headers: 64,
    };
    let Some(req) = read_request_head(
        stream,
        &mut conn.buf,
        &limits,
        &conn.fwd,
        &mut conn.scratch,
        None,
    )
    .await
    else {
        return Next::Close;
    };
    let head = conn.buf.data()[..req.head_len].to_vec();
    conn.buf.consume(req.head_len);
    // The status page holds no data: it is served without the token.
    if super::page::wanted(&req, &head[req.path.clone()]) {
        let written = super::page::serve(stream, req.keep_alive).await;
        return if written && req.keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        };
    }
    // The token is checked on the head alone: nobody without it gets to
    // make the listener wait for a body.
    if let Some(token) = &shared.cfg.admin_token {
        let given = req.authorization.clone().map(|r| &head[r]);
        if !bearer_matches(given, token) {
            let body = serde_json::json!({"error": "missing or wrong admin token"}).to_string();
            if respond(stream, 401, JSON, body, false).await {
                let _ = stream.shutdown().await;
                drain_briefly(stream, &mut conn.buf, 16 * 1024, Duration::from_millis(250)).await;
            }
            return Next::Close;
        }
        slot.busy();
    }
    let target = String::from_utf8_lossy(&head[req.path.clone()]).into_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let hub_answer = if let Some(verb) = super::messaging::verb_of(req.method, path) {
        let body = match read_body(shared, stream, conn, &req).await {
            Ok(body) => body,
            Err(Some(status)) => {
                let msg = match status {
                    411 => "a Content-Length body is required",
                    _ => "the body is over the limit",
                };
                let body = serde_json::json!({"error": msg}).to_string();
                respond(stream, status, JSON, body, false).await;
                return Next::Close;
            }
            Err(None) => return Next::Close,
        };
        slot.busy();
        Some(super::messaging::operate(shared, verb, &body).await)
    } else if req.method == Method::Get && path == "/api/connections" {
        Some(super::messaging::connections(shared, query).await)
    } else {
        None
    };
    if let Some((status, value)) = hub_answer {
        let body = value.to_string();
        return if respond(stream, status, JSON, body, req.keep_alive).await && req.keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        };
    }
    // Bodies are not used by any other route: skip them.
    let mut tracker = BodyTracker::new(req.body);
    while !tracker.is_done() {
        if conn.buf.is_empty() {
            match conn.buf.read_from(stream, 4096).await {
                Ok(n) if n > 0 => {}
                _ => return Next::Close,
            }
        }
        match tracker.scan(conn.buf.data()) {
            Ok(p) => conn.buf.consume(p.consumed),
            Err(_) => return Next::Close,
        }
    }
    slot.busy();
    let (status, ctype, body) = match super::events::request(req.method, &target, slot) {
        Some(Ok(interest)) => return Next::Events(interest),
        Some(Err(answer)) => answer,
        None => route(shared, &head, &req),
    };
    if !respond(stream, status, ctype, body, req.keep_alive).await || !req.keep_alive {
        return Next::Close;
    }
    Next::KeepAlive
}

/// Reads a messaging request's body whole (a Content-Length one, within
/// the limit). `Err(Some(status))`: refuse with that status; `Err(None)`:
/// the connection broke.
async fn read_body(
    shared: &Shared,
    stream: &mut TcpStream,
    conn: &mut Conn,
    req: &ParsedRequest,
) -> Result<Vec<u8>, Option<u16>> {
    let len = match req.body {
        crate::proto::http::BodyKind::Empty => 0,
        crate::proto::http::BodyKind::Length(n) if n <= super::messaging::max_body(shared) => n,
        crate::proto::http::BodyKind::Length(_) => return Err(Some(413)),
        _ => return Err(Some(411)),
    };
    let len = usize::try_from(len).map_err(|_| Some(413))?;
    let mut body = Vec::with_capacity(len.min(1 << 20));
    while body.len() < len {
        if conn.buf.is_empty() {
            match conn.buf.read_from(stream, 64 * 1024).await {
                Ok(n) if n > 0 => {}
                _ => return Err(None),
            }
        }
        let take = (len - body.len()).min(conn.buf.data().len());
        body.extend_from_slice(&conn.buf.data()[..take]);
        conn.buf.consume(take);
    }
    Ok(body)
}

/// The content type of every JSON answer.
const JSON: &str = "application/json";

/// Writes one answer; false when the write failed.
async fn respond(
    stream: &mut TcpStream,
    status: u16,
    ctype: &str,
    body: String,
    keep_alive: bool,
) -> bool {
    let mut out = Vec::with_capacity(body.len() + 128);
    reply::write_response(&mut out, status, ctype, &[], body.as_bytes(), keep_alive);
    write_vec(stream, out).await.0.is_ok()
}

fn json(status: u16, value: serde_json::Value) -> (u16, &'static str, String) {
    (status, JSON, value.to_string())
}

fn route(shared: &Shared, head: &[u8], req: &ParsedRequest) -> (u16, &'static str, String) {
    let target = String::from_utf8_lossy(&head[req.path.clone()]).into_owned();
    let path = target.split('?').next().unwrap_or_default();
    match (req.method, path) {
        (Method::Get, "/healthz") => (200, "text/plain", "ok\n".into()),
        (Method::Get, "/api/backends") => match serde_json::to_value(shared.registry.list()) {
            Ok(v) => json(200, with_latency(shared, v)),
            Err(e) => json(500, serde_json::json!({"error": e.to_string()})),
        },
        (Method::Get, "/api/status") => json(
            200,
            serde_json::json!({
                "balancer_id": shared.cfg.balancer_id,
                "version": env!("CARGO_PKG_VERSION"),
                "workers": shared.cfg.workers,
                "open_connections": shared.open_connections.load(Ordering::Relaxed),
                "backends": shared.registry.len(),
                "control_channels": shared.control_hub.connected(),
                "pool_generation": shared.pool.generation(),
            }),
        ),
        (Method::Get, "/metrics") => (
            200,
            "text/plain; version=0.0.4",
            super::metrics::render(shared),
        ),
        (Method::Post, "/api/reload") => match crate::server::reload::reload_from_source(shared) {
            Ok(summary) => match serde_json::to_value(summary) {
                Ok(v) => json(200, v),
                Err(e) => json(500, serde_json::json!({"error": e.to_string()})),
            },
            Err(e @ crate::server::ReloadError::NoSource) => {
                json(501, serde_json::json!({"error": e.to_string()}))
            }
            Err(e) => json(400, serde_json::json!({"error": e.to_string()})),
        },
        (Method::Post, p) if p.starts_with("/api/backends/") => {
            let rest = &p["/api/backends/".len()..];
            let (id, draining) = if let Some(id) = rest.strip_suffix("/drain") {
                (id, true)
            } else if let Some(id) = rest.strip_suffix("/resume") {
                (id, false)
            } else {
                return json(404, serde_json::json!({"error": "unknown action"}));
            };
            let Some(id) = super::percent_decode(id) else {
                return json(400, serde_json::json!({"error": "bad backend id encoding"}));
            };
            let Some(was_draining) = shared.registry.switch_draining(&id, draining) else {
                return json(
                    404,
                    serde_json::json!({"error": "no such backend", "id": id}),
                );
            };
            if let Some(event) = drain_switch(was_draining, draining) {
                emit_member(&shared.hooks, &shared.events, &shared.pool, event, &id);
            }
            let notice = if draining {
                ServerMessage::Drain
            } else {
                ServerMessage::Resume
            };
            let notified = shared.control_hub.send(&id, notice);
            let state = if draining { "draining" } else { "up" };
            json(
                200,
                serde_json::json!({"id": id, "state": state, "notified": notified}),
            )
        }
        _ => json(404, serde_json::json!({"error": "not found"})),
    }
}

/// Adds each backend's `latency_ms` (moving average of its time to a
/// response head; null before its first answer) to the listing.
fn with_latency(shared: &Shared, mut list: serde_json::Value) -> serde_json::Value {
    let latency = super::metrics::latency_ms(shared);
    if let Some(items) = list.as_array_mut() {
        for item in items {
            let ms = item
                .get("id")
                .and_then(|id| id.as_str())
                .and_then(|id| latency.get(id).copied());
            if let Some(obj) = item.as_object_mut() {
                obj.insert("latency_ms".into(), serde_json::json!(ms));
            }
        }
    }
    list
}
