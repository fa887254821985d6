//! Admin API routes: `GET /api/backends`, `POST /api/backends/{id}/drain`,
//! `POST /api/backends/{id}/resume`, `GET /api/status`, `GET /metrics`,
//! `GET /healthz`; bearer-token check when `--admin-token` is set.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpStream;

use crate::http::{reply, BodyTracker, ForwardInfo, Limits, Method, ParsedRequest};
use crate::proxy::io::{read_request_head, write_vec, ReadBuf};
use crate::registry::protocol::ServerMessage;
use crate::registry::BackendInfo;
use crate::server::Shared;

pub async fn serve(shared: Arc<Shared>, mut stream: TcpStream, peer: SocketAddr) {
    let limits = Limits {
        max_header_bytes: 16 * 1024,
        max_headers: 64,
    };
    let fwd = ForwardInfo {
        client_ip: peer.ip(),
        tls: false,
    };
    let mut buf = ReadBuf::with_capacity(4096);
    let mut scratch = Vec::new();
    loop {
        let Some(req) = read_request_head(
            &mut stream,
            &mut buf,
            &limits,
            &fwd,
            &mut scratch,
            Some(Duration::from_secs(30)),
        )
        .await
        else {
            return;
        };
        // Bodies are not used by any route: skip them.
        let mut tracker = BodyTracker::new(req.body);
        let head = buf.data()[..req.head_len].to_vec();
        buf.consume(req.head_len);
        while !tracker.is_done() {
            if buf.is_empty() {
                match buf.read_from(&mut stream, 4096).await {
                    Ok(n) if n > 0 => {}
                    _ => return,
                }
            }
            match tracker.scan(buf.data()) {
                Ok(p) => buf.consume(p.consumed),
                Err(_) => return,
            }
        }
        let (status, ctype, body) = route(&shared, &head, &req);
        let mut out = Vec::with_capacity(body.len() + 128);
        reply::write_response(
            &mut out,
            status,
            ctype,
            &[],
            body.as_bytes(),
            req.keep_alive,
        );
        if write_vec(&mut stream, out).await.0.is_err() || !req.keep_alive {
            return;
        }
    }
}

fn json(status: u16, value: serde_json::Value) -> (u16, &'static str, String) {
    (status, "application/json", value.to_string())
}

fn route(shared: &Shared, head: &[u8], req: &ParsedRequest) -> (u16, &'static str, String) {
    if let Some(token) = &shared.cfg.admin_token {
        let given = req.authorization.clone().map(|r| &head[r]);
        if given != Some(format!("Bearer {token}").as_bytes()) {
            return json(
                401,
                serde_json::json!({"error": "missing or wrong admin token"}),
            );
        }
    }
    let target = String::from_utf8_lossy(&head[req.path.clone()]).into_owned();
    let path = target.split('?').next().unwrap_or_default();
    match (req.method, path) {
        (Method::Get, "/healthz") => (200, "text/plain", "ok\n".into()),
        (Method::Get, "/api/backends") => match serde_json::to_value(shared.registry.list()) {
            Ok(v) => json(200, v),
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
        (Method::Get, "/metrics") => (200, "text/plain; version=0.0.4", metrics(shared)),
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
            if !shared.registry.set_draining(&id, draining) {
                return json(
                    404,
                    serde_json::json!({"error": "no such backend", "id": id}),
                );
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

/// Per-backend series: name, Prometheus type, value.
type Series = (&'static str, &'static str, fn(&BackendInfo) -> u64);

const BACKEND_SERIES: [Series; 4] = [
    ("wslb_backend_active", "gauge", |b| u64::from(b.active)),
    ("wslb_backend_reported_load", "gauge", |b| {
        u64::from(b.reported_load)
    }),
    ("wslb_backend_requests_total", "counter", |b| {
        b.requests_total
    }),
    ("wslb_backend_failures_total", "counter", |b| {
        b.failures_total
    }),
];

fn metrics(shared: &Shared) -> String {
    let mut out = String::with_capacity(1024);
    let _ = writeln!(out, "# TYPE wslb_open_connections gauge");
    let _ = writeln!(
        out,
        "wslb_open_connections {}",
        shared.open_connections.load(Ordering::Relaxed)
    );
    let list = shared.registry.list();
    for (name, kind, value) in BACKEND_SERIES {
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for b in &list {
            let _ = writeln!(out, "{name}{{id=\"{}\"}} {}", escape(&b.id), value(b));
        }
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
