//! The client connection's keep-alive loop: read a request head (see
//! request_head.rs for its timeouts), answer what the balancer answers itself,
//! pick a backend and run the exchange, retrying where that is safe, and
//! hand WebSocket upgrades to the relay (and event streams asked for
//! instead of a WebSocket, with `--fallback sse`, to the fallback).

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::access::{request_done, RequestLine, RequestRecord};
use super::backend::{connect, pick, pick_pinned, sticky_key, BackendConn, ConnectError, Tried};
use super::client_write::ClientWriter;
use super::env::Env;
use super::exchange::{exchange, ExchangeEnd, ExchangeError, ExchangeOpts, RequestSide};
use super::handoff::Upgrade;
use super::hook_calls::{before_forward, Handshake, ResponseHook};
use super::metrics::Refusal;
use super::outcome::ExchangeFacts;
use super::refusal::{backend_failure, check_origin, refused, refused_by_hook, upgrade_refusal};
use super::request_body::BodyDeadline;
use super::request_head::{read_head, HeadWait};
use super::sse;
use super::ClientConn;
use crate::config::Fallback;
use crate::pool::health::{record_failure, record_success, HealthPolicy};
use crate::proto::http::edit;
use crate::proto::http::{ForwardInfo, Limits, ParsedRequest};
use crate::proto::ws::handshake::check_upgrade_request;
use crate::proxy::conns::ConnKind;

/// What the connection turns into after its HTTP requests.
pub(crate) enum Handoff {
    /// A WebSocket session to relay.
    Session(Upgrade),
    /// A fallback session the backend accepted: this connection is its stream.
    Fallback(Upgrade, Box<sse::Opening>),
    /// A fallback session's stream coming back (`Last-Event-ID`).
    Resume(sse::Resume),
}

/// Serves requests on one client connection until it closes, or until a
/// WebSocket upgrade succeeds or an event stream starts (returned, so the
/// caller can free this request machinery before a session that may last
/// hours).
pub(crate) async fn run<S>(env: &Env, client: &mut ClientConn<S>) -> Option<Handoff>
where
    S: AsyncReadRent + AsyncWriteRent + 'static,
{
    let cfg = env.cfg();
    let limits = Limits {
        max_header_bytes: cfg.max_header_bytes,
        max_headers: 100,
    };
    // Once per connection: whether the peer's forwarding fields are kept.
    let client_ip = client.peer.ip().to_canonical();
    let fwd = ForwardInfo {
        client_ip,
        tls: client.tls,
        trusted: crate::config::cidr_list_contains(&cfg.trusted_proxies, client_ip),
    }
    .prepared();
    let mut head = Vec::with_capacity(1024);
    let mut scratch = Vec::new();
    let mut resp_out = Vec::with_capacity(1024);
    // The request line, copied for the access log when it is on.
    let mut line = RequestLine::default();
    if env.log.is_on() {
        line.set_peer(client.peer);
    }
    // The first request must come within the header timeout of the accept;
    // later ones may wait the keep-alive idle time.
    let mut first = true;
    loop {
        head.clear();
        let wait = read_head(env, client, &limits, &fwd, &mut head, first).await;
        first = false;
        let mut req = match wait {
            HeadWait::Request(req) => req,
            HeadWait::Close => return None,
            HeadWait::Refuse(status) => {
                let mut rec = RequestRecord::begin(client);
                client.answer(status, cfg.idle_timeout).await;
                rec.status = status;
                line.clear();
                request_done(env, client, rec, &line, 0);
                return None;
            }
        };
        let mut rec = RequestRecord::begin(client);
        if env.log.is_on() {
            line.copy(client.buf.data(), req.path.clone());
        }
        let path = &client.buf.data()[req.path.clone()];
        if path.starts_with(b"/_lb/") || client.control {
            let keep = super::endpoints::serve(env, client, &req).await;
            rec.status = client.answered.get();
            request_done(env, client, rec, &line, req.head_len);
            if keep {
                continue;
            }
            return None;
        }
        // A client that cannot open a WebSocket asks for an event stream.
        let mut fallback = None;
        if cfg.fallback == Fallback::Sse && !req.upgrade_websocket {
            // (Nothing of the answer is held across the refusal's write.)
            let refusal = match sse::prepare(env, client.buf.data(), &req) {
                Ok(sse::Prepared::No) => None,
                Ok(sse::Prepared::Open(o)) => {
                    fallback = Some(o);
                    None
                }
                Ok(sse::Prepared::Resume(resume)) => {
                    client.buf.consume(req.head_len);
                    client.answered.set(200);
                    rec.status = 200;
                    request_done(env, client, rec, &line, req.head_len);
                    return Some(Handoff::Resume(resume));
                }
                Err(status) => Some(status),
            };
            if let Some(status) = refusal {
                client.answer(status, cfg.idle_timeout).await;
                rec.status = status;
                request_done(env, client, rec, &line, req.head_len);
                return None;
            }
        }
        let upgrade = req.upgrade_websocket || fallback.is_some();
        if upgrade {
            let checked = check_origin(env, client, &req, fallback.is_some())
                .map_err(|s| (s, Refusal::Origin))
                .and_then(|()| {
                    if fallback.is_some() {
                        return Ok(());
                    }
                    check_upgrade_request(client.buf.data(), &req)
                        .map_err(|s| (s, upgrade_refusal(s)))
                });
            if let Err((status, why)) = checked {
                refused(env, client, &req, status, why);
                client.answer(status, cfg.idle_timeout).await;
                rec.status = status;
                request_done(env, client, rec, &line, req.head_len);
                return None;
            }
        }
        // Hooks see the request after the balancer's own checks.
        let mut pin = None;
        if let Some(hooks) = &env.hooks {
            let raw = &client.buf.data()[..req.head_len];
            let (peer, tls) = (client.peer, client.tls);
            match before_forward(&**hooks, raw, peer, tls, upgrade, &mut head) {
                Handshake::Go { pin: p } => pin = p,
                Handshake::Refuse {
                    answer,
                    status,
                    reason,
                } => {
                    refused_by_hook(env, client, &req, status, &reason);
                    let _ = client.writer(cfg.idle_timeout).write_vec(answer).await;
                    rec.status = status;
                    request_done(env, client, rec, &line, req.head_len);
                    return None;
                }
            }
        }
        if upgrade {
            // The backend learns the session's id; a client cannot name one.
            let name = &cfg.conn_id_header;
            edit::remove_fields(&mut head, std::slice::from_ref(name));
            let local = fallback
                .as_ref()
                .map_or(client.handle.id, |f| f.entry.handle.id);
            let id = env.router.ids.format(local);
            edit::append_fields(&mut head, [(name.as_str(), id.as_str())]);
        }
        let bufs = (&mut scratch, &mut resp_out);
        // A fallback asks the backend for a WebSocket upgrade of the
        // balancer's own making.
        if let Some(f) = &fallback {
            f.edit_head(&mut head);
            req.upgrade_websocket = true;
        }
        let (pin, fb) = (pin.as_deref(), fallback.is_some());
        let end = proxy_request(env, client, &req, &head, pin, bufs, &mut rec, fb).await;
        if rec.status == 0 {
            rec.status = client.answered.get();
        }
        request_done(env, client, rec, &line, req.head_len);
        match end {
            RequestEnd::KeepAlive => {}
            RequestEnd::Close => return None,
            RequestEnd::Upgraded(upgrade) => {
                return Some(match fallback {
                    Some(f) => Handoff::Fallback(upgrade, f),
                    None => Handoff::Session(upgrade),
                })
            }
        }
        if client.writer_cut || env.draining.is_fired() || client.handle.try_next().is_some() {
            return None;
        }
    }
}

/// How a proxied request ended for the client connection.
enum RequestEnd {
    KeepAlive,
    Close,
    /// The backend accepted a WebSocket upgrade: relay the session.
    Upgraded(Upgrade),
}

impl From<bool> for RequestEnd {
    fn from(keep: bool) -> Self {
        if keep {
            RequestEnd::KeepAlive
        } else {
            RequestEnd::Close
        }
    }
}

/// Proxies one request, noting what the access log and metrics need in
/// `rec` (the status when a backend answered; the balancer's own answers
/// are left in `client.answered`).
#[allow(clippy::too_many_arguments)]
async fn proxy_request<S>(
    env: &Env,
    client: &mut ClientConn<S>,
    req: &ParsedRequest,
    head: &[u8],
    pin: Option<&str>,
    (scratch, resp_out): (&mut Vec<u8>, &mut Vec<u8>),
    rec: &mut RequestRecord,
    fallback: bool,
) -> RequestEnd
where
    S: AsyncReadRent + AsyncWriteRent + 'static,
{
    let cfg = env.cfg();
    let policy = HealthPolicy::default();
    // How much of the body is already here, and is all of it?
    let mut probe = crate::proto::http::BodyTracker::new(req.body);
    let after_head = &client.buf.data()[req.head_len..];
    let (buffered_body, whole_body) = match probe.scan(after_head) {
        Ok(p) => (p.consumed, probe.is_done()),
        Err(e) => {
            client.answer(e.status(), cfg.idle_timeout).await;
            return RequestEnd::Close;
        }
    };
    let replayable = whole_body && !req.expect_continue;
    // Closing after this request may leave part of its body unread.
    client.linger = !whole_body;
    let key = sticky_key(&cfg.sticky, &client.buf.data()[..req.head_len], client.peer);
    let snap = env.pool.borrow_mut().current().clone();
    let mut tried = Tried::default();
    let mut last_status = 503;
    let upgrade = req.upgrade_websocket;
    // The upgrade's path, for the session.
    let mut upgrade_path = upgrade.then(|| {
        let target = String::from_utf8_lossy(&client.buf.data()[req.path.clone()]);
        Box::<str>::from(target.split('?').next().unwrap_or_default())
    });
    let idempotent = req.method.is_idempotent();
    // A pooled connection the backend had closed earns one retry that
    // --max-retries does not count; after it the request only takes fresh
    // connections (the rest of that pool is suspect, and a request that
    // makes the backend close must not be replayed once per pooled one).
    let mut stale_retried = false;
    loop {
        if tried.count() > cfg.max_retries {
            break;
        }
        // One clock read for the pick and the idle pool.
        let now = crate::pool::clock::now_ms();
        let picked = match pin {
            Some(id) => pick_pinned(&snap, id, &tried, now),
            None => pick(&env.picker, &snap, key, &tried, now),
        };
        let Some((idx, backend)) = picked else {
            break;
        };
        tried.push(idx);
        rec.attempts += 1;
        rec.backend = Some(backend.clone());
        let guard = backend.stats.begin();
        let pooled = if upgrade || stale_retried {
            None
        } else {
            // Only a request that may be sent twice skips the liveness peek.
            env.idle.take(&backend, replayable && idempotent, now)
        };
        let mut conn: BackendConn = match pooled {
            Some(c) => c,
            None => match connect(
                &backend,
                env.backend_tls.as_ref(),
                cfg.backend_connect_timeout,
            )
            .await
            {
                Ok(c) => c,
                Err(ConnectError::Local(e)) => {
                    // Out of descriptors or ports here: no backend is to
                    // blame and none would do better. Shed the request.
                    if let Some(held) = env.exhaustion_log.allow() {
                        tracing::warn!(error = %e, held, "cannot open a backend connection: out of local resources");
                    }
                    last_status = 503;
                    break;
                }
                Err(e) => {
                    let ejected = failed(env, &backend.stats, &policy);
                    tracing::warn!(backend = %backend.id, error = ?e, ejected, "backend connect failed");
                    last_status = if matches!(e, ConnectError::Timeout) {
                        504
                    } else {
                        502
                    };
                    continue;
                }
            },
        };
        let response_hook = env
            .hooks
            .as_deref()
            .filter(|_| !upgrade)
            .map(|hooks| ResponseHook {
                hooks,
                peer: client.peer,
                tls: client.tls,
                forwarded: head,
            });
        let facts = ExchangeFacts::default();
        let opts = ExchangeOpts {
            limits: Limits {
                max_header_bytes: cfg.max_header_bytes,
                max_headers: 100,
            },
            head_timeout: if upgrade {
                cfg.ws_handshake_timeout
            } else {
                cfg.backend_timeout
            },
            read_timeout: cfg.backend_timeout,
            client_timeout: cfg.idle_timeout,
            body_deadline: BodyDeadline {
                grace: cfg.client_body_timeout,
                min_rate: cfg.client_body_min_rate,
            },
            client_keep_alive: req.keep_alive && !env.draining.is_fired(),
            draining: &env.draining,
            response_hook: response_hook.as_ref(),
            rate: client.rate.as_deref(),
            facts: &facts,
            backend_timer: &client.backend_timer,
            fallback,
        };
        let side = RequestSide {
            r: &mut client.r,
            buf: &mut client.buf,
            req,
            head,
            buffered_body,
            replayable,
        };
        let mut client_w = ClientWriter::new(
            &mut client.w,
            &mut client.writer_cut,
            &client.timer,
            cfg.idle_timeout,
        )
        .counting(&client.sent);
        let BackendConn { r, w, buf, .. } = &mut conn;
        let result = exchange(side, &mut client_w, r, w, buf, scratch, resp_out, opts).await;
        let head_at = facts.head_at.get();
        if head_at != 0 {
            rec.backend_us = Some(crate::rt::clock::micros_between(rec.start(), head_at));
            rec.status = facts.status.get();
        }
        match result {
            Ok(ExchangeEnd::Done {
                backend_reusable,
                client_keep_alive,
            }) => {
                record_success(&backend.stats);
                if replayable {
                    client.buf.consume(req.head_len + buffered_body);
                }
                drop(guard);
                if backend_reusable {
                    env.idle.put(conn);
                }
                return client_keep_alive.into();
            }
            Ok(ExchangeEnd::Upgraded(switched)) => {
                record_success(&backend.stats);
                client.buf.consume(req.head_len);
                if !fallback {
                    client.handle.set_kind(ConnKind::WebSocket);
                } else {
                    rec.status = 200;
                }
                return RequestEnd::Upgraded(Upgrade {
                    conn,
                    switched,
                    guard,
                    path: upgrade_path.take().unwrap_or_default(),
                    backend: backend.id.clone(),
                });
            }
            Err(ExchangeError::ClosedEarly) if replayable && conn.reused && !stale_retried => {
                // A pooled connection the backend had closed: not this
                // backend's fault, and not counted; once, on a fresh one.
                tracing::debug!(backend = %backend.id, "retrying on a fresh connection");
                stale_retried = true;
                tried = tried.without(idx);
                last_status = 502;
                continue;
            }
            Err(ExchangeError::ClosedEarly) if replayable && idempotent => {
                // Safe to send again: a counted retry.
                if !conn.reused {
                    failed(env, &backend.stats, &policy);
                }
                tracing::debug!(backend = %backend.id, "retrying request");
                last_status = 502;
                continue;
            }
            // Gone, or stopped reading (a write toward it got nowhere for
            // the idle timeout): not the backend's fault; its connection,
            // maybe mid-response, is dropped.
            Err(ExchangeError::ClientGone) => return RequestEnd::Close,
            Err(ExchangeError::ClientTimeout { response_started }) => {
                // The client's fault: the backend is not blamed.
                tracing::debug!(peer = %client.peer, "request body too slow");
                if !response_started {
                    client.answer(408, cfg.idle_timeout).await;
                }
                return RequestEnd::Close;
            }
            Err(ExchangeError::Timeout { response_started }) => {
                tracing::warn!(backend = %backend.id, "backend timed out");
                if !response_started {
                    refused(env, client, req, 504, backend_failure(504));
                    client.answer(504, cfg.idle_timeout).await;
                }
                return RequestEnd::Close;
            }
            Err(ExchangeError::ClosedEarly) => {
                // Closed or reset before answering: the backend's fault,
                // unless it was a pooled connection it had let go.
                if !conn.reused {
                    failed(env, &backend.stats, &policy);
                }
                refused(env, client, req, 502, backend_failure(502));
                client.answer(502, cfg.idle_timeout).await;
                return RequestEnd::Close;
            }
            Err(ExchangeError::ClosedDuringBody) => {
                // Maybe its own body timeout with a slow client: no blame,
                // and the body cannot be sent again anyway.
                tracing::debug!(backend = %backend.id, "backend closed during the request body");
                refused(env, client, req, 502, backend_failure(502));
                client.answer(502, cfg.idle_timeout).await;
                return RequestEnd::Close;
            }
            Err(ExchangeError::Failed {
                response_started,
                detail,
            }) => {
                tracing::warn!(backend = %backend.id, detail, "backend failed");
                failed(env, &backend.stats, &policy);
                if !response_started {
                    refused(env, client, req, 502, backend_failure(502));
                    client.answer(502, cfg.idle_timeout).await;
                }
                return RequestEnd::Close;
            }
        }
    }
    if tried.count() == 0 {
        last_status = 503;
    }
    refused(env, client, req, last_status, backend_failure(last_status));
    client.answer(last_status, cfg.idle_timeout).await;
    RequestEnd::Close
}

/// Notes a backend's failure (passive health), counting an ejection;
/// returns whether it was ejected.
fn failed(env: &Env, stats: &crate::pool::BackendStats, policy: &HealthPolicy) -> bool {
    let ejected = record_failure(stats, policy, crate::pool::clock::now_ms());
    if ejected {
        env.metrics.shared.ejections.add(1);
    }
    ejected
}
