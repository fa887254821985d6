//! The admin API's messaging routes: `POST /api/publish`, `/api/send`,
//! `/api/ping`, `/api/close`, `/api/subscribe`, `/api/unsubscribe` (JSON
//! bodies, see `hub::ops`), answered with `{"matched", "delivered",
//! "skipped", "dropped"}` (and `"pongs"` for a ping); and
//! `GET /api/connections`, the live sessions, filtered and paginated.

use serde_json::{json, Value};

use crate::hub::ops::{parse_op, Filter, OpKind, Verb};
use crate::proto::http::Method;
use crate::proxy::hub_worker::{list_sessions, perform};
use crate::server::Shared;

/// Sessions listed per page unless `limit` says otherwise.
const DEFAULT_PAGE: usize = 100;
/// The largest page.
const MAX_PAGE: usize = 1000;

/// The messaging operation a request is for, if it is one.
pub(super) fn verb_of(method: Method, path: &str) -> Option<Verb> {
    if method != Method::Post {
        return None;
    }
    Verb::from_name(path.strip_prefix("/api/")?)
}

/// The largest body a messaging request may have: the largest message,
/// base64-encoded, with room for the filters.
pub(super) fn max_body(shared: &Shared) -> u64 {
    let msg = shared.live.load().max_message_size;
    msg.saturating_mul(4) / 3 + 4 + 1024 * 1024
}

/// Runs one operation from a request body.
pub(super) async fn operate(shared: &Shared, verb: Verb, body: &[u8]) -> (u16, Value) {
    let op = match parse_op(verb, body, shared.live.load().max_message_size) {
        Ok(op) => op,
        Err(e) => return (e.status(), json!({"error": e.to_string()})),
    };
    // A ping's wait must fit in the admin request's own deadline.
    let deadline = shared.cfg.admin_request_timeout.as_millis() as u64;
    if let OpKind::Ping { timeout_ms } = op.kind {
        if timeout_ms + 500 > deadline {
            let msg = format!(
                "timeout_ms must be under --admin-request-timeout ({deadline} ms) by 500 ms"
            );
            return (400, json!({"error": msg}));
        }
    }
    match perform(&shared.router, op).await {
        Ok(outcome) => match serde_json::to_value(outcome) {
            Ok(v) => (200, v),
            Err(e) => (500, json!({"error": e.to_string()})),
        },
        Err(e) => (e.status(), json!({"error": e.to_string()})),
    }
}

/// `GET /api/connections?backend=&channel=&path_prefix=&subprotocol=&offset=&limit=`.
pub(super) async fn connections(shared: &Shared, query: &str) -> (u16, Value) {
    let mut filter = Filter::default();
    let mut offset = 0usize;
    let mut limit = DEFAULT_PAGE;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(value) = super::percent_decode(&raw.replace('+', " ")) else {
            return (400, json!({"error": format!("bad encoding in {key}")}));
        };
        let number = || value.parse::<usize>().ok();
        match key {
            "backend" => filter.backend = Some(value.clone()),
            "channel" => filter.channel = Some(value.clone()),
            "path_prefix" => filter.path_prefix = Some(value.clone()),
            "subprotocol" => filter.subprotocol = Some(value.clone()),
            "offset" => match number() {
                Some(n) => offset = n,
                None => return (400, json!({"error": "offset must be a number"})),
            },
            "limit" => match number() {
                Some(n) if (1..=MAX_PAGE).contains(&n) => limit = n,
                _ => {
                    return (
                        400,
                        json!({"error": format!("limit must be 1 to {MAX_PAGE}")}),
                    )
                }
            },
            _ => return (400, json!({"error": format!("unknown parameter {key}")})),
        }
    }
    match list_sessions(&shared.router, filter, offset, limit).await {
        Ok((sessions, total)) => {
            let end = offset.saturating_add(sessions.len()) as u64;
            let next = (end < total).then_some(end);
            (
                200,
                json!({
                    "total": total,
                    "offset": offset,
                    "limit": limit,
                    "next_offset": next,
                    "sessions": sessions,
                }),
            )
        }
        Err(e) => (e.status(), json!({"error": e.to_string()})),
    }
}
