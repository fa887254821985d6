//! The balancer side of the control channel: a WebSocket at `/_lb/register`
//! where backends authenticate, register, heartbeat, drain and leave. This is
//! the registry's only I/O; it runs on the worker that accepted the channel.

use std::sync::Arc;

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::env::Env;
use super::pool_events::{drain_switch, emit, PoolEvent};
use crate::pool::registry::hub::Mailbox;
use crate::pool::registry::protocol::{
    parse_client_message, resolve_binding_in, ClientMessage, ProtocolError, ServerMessage,
};
use crate::pool::registry::table::RegisterOutcome;
use crate::proto::http::auth::bearer_matches;
use crate::proto::http::ParsedRequest;
use crate::proto::ws::close::write_close_frame;
use crate::proto::ws::frame::{write_frame, FrameLimits, OpCode};
use crate::proto::ws::handshake::{accept_key, write_server_response};
use crate::proto::ws::message::MessageReader;
use crate::proto::ws::scanner::ScannerConfig;
use crate::proxy::client_write::ClientWriter;
use crate::proxy::ClientConn;

/// Largest control message accepted.
pub(crate) const MAX_CONTROL_MESSAGE: usize = 64 * 1024;

/// Whether the request may open a control channel: 401 for a wrong or
/// missing token; without a configured token, only a loopback control
/// listener is trusted (403 elsewhere).
pub(crate) fn authorize(
    env: &Env,
    data: &[u8],
    req: &ParsedRequest,
    on_control_listener: bool,
) -> Result<(), u16> {
    let cfg = &env.cfg;
    let given = req.authorization.clone().and_then(|r| data.get(r));
    let loopback_control = cfg.control_listen.is_some_and(|a| a.ip().is_loopback());
    access(
        cfg.register_token.as_deref(),
        given,
        on_control_listener && loopback_control,
    )
}

/// The decision behind [`authorize`]: with a token, the `Authorization`
/// value must be `Bearer TOKEN` (compared in constant time, without leaking
/// the token's length); without one, only a loopback control listener.
fn access(token: Option<&str>, given: Option<&[u8]>, trusted_listener: bool) -> Result<(), u16> {
    match token {
        Some(token) if bearer_matches(given, token) => Ok(()),
        Some(_) => Err(401),
        None if trusted_listener => Ok(()),
        None => Err(403),
    }
}

/// Writes toward the peer are bounded by the idle timeout; one that gets
/// nowhere (a peer that stopped reading) cuts the writer and ends the
/// channel, and nothing is written after it.
async fn send<W: AsyncWriteRent>(w: &mut ClientWriter<'_, W>, msg: &ServerMessage) -> bool {
    let json = msg.to_json();
    let mut out = Vec::with_capacity(json.len() + 10);
    write_frame(&mut out, true, OpCode::Text, None, json.as_bytes());
    w.write_vec(out).await.0.is_ok()
}

async fn close<W: AsyncWriteRent>(w: &mut ClientWriter<'_, W>, code: u16, reason: &str) {
    let mut out = Vec::with_capacity(reason.len() + 8);
    // Close reasons are limited to 123 bytes.
    let reason = &reason[..reason.len().min(120)];
    write_close_frame(&mut out, code, reason, None);
    let _ = w.write_vec(out).await;
}

/// The registration this channel speaks for.
struct Registration {
    id: String,
    bindings: Vec<(String, std::net::SocketAddr)>,
    weight: u32,
    metadata: Option<serde_json::Value>,
}

/// Runs one control channel after the handshake checks passed.
pub(crate) async fn serve_channel<S>(
    env: &Env,
    client: &mut ClientConn<S>,
    req: &ParsedRequest,
    key: &[u8],
) where
    S: AsyncReadRent + AsyncWriteRent,
{
    let mut out = Vec::with_capacity(256);
    write_server_response(&mut out, &accept_key(key), None, None);
    client.buf.consume(req.head_len);
    let mut w = ClientWriter::new(&mut client.w, &mut client.writer_cut, env.cfg.idle_timeout);
    if w.write_vec(out).await.0.is_err() {
        return;
    }
    let hub = &env.control_hub;
    let session = hub.new_session();
    let mailbox = Arc::new(Mailbox::default());
    let mut reader = MessageReader::new(ScannerConfig {
        limits: FrameLimits {
            max_payload: MAX_CONTROL_MESSAGE as u64,
            rsv_allowed: 0,
            expect_masked: Some(true),
        },
        max_message: MAX_CONTROL_MESSAGE as u64,
        validate_utf8: true,
    });
    let mut current: Option<Registration> = None;
    let timeout = env.cfg.heartbeat_timeout;
    // A channel that has not registered holds no table slot, and may not
    // stay open unregistered for longer than a heartbeat timeout either.
    let register_by = std::time::Instant::now() + timeout;
    'session: loop {
        // Everything buffered is handed to the reader, so a cancelled read
        // below never loses bytes.
        loop {
            let (used, msg) = match reader.feed(client.buf.data()) {
                Ok(r) => r,
                Err(e) => {
                    close(&mut w, e.close_code(), "protocol error").await;
                    break 'session;
                }
            };
            client.buf.consume(used);
            let Some(msg) = msg else { break };
            let refused = match msg.opcode {
                OpCode::Ping => {
                    let mut pong = Vec::with_capacity(msg.payload.len() + 2);
                    write_frame(&mut pong, true, OpCode::Pong, None, &msg.payload);
                    if w.write_vec(pong).await.0.is_err() {
                        break 'session;
                    }
                    continue;
                }
                OpCode::Close => {
                    close(&mut w, 1000, "").await;
                    break 'session;
                }
                OpCode::Text => {
                    let text = String::from_utf8_lossy(&msg.payload);
                    match handle_message(env, client.peer, &text, &mut current, session, &mailbox) {
                        Ok(Some(reply)) => {
                            if !send(&mut w, &reply).await {
                                break 'session;
                            }
                            continue;
                        }
                        Ok(None) => continue,
                        Err(Done::Deregistered) => {
                            close(&mut w, 1000, "deregistered").await;
                            break 'session;
                        }
                        Err(Done::Refused(e)) => e,
                    }
                }
                OpCode::Binary => ProtocolError::BinaryFrame,
                _ => continue,
            };
            tracing::warn!(peer = %client.peer, error = %refused, "control message refused");
            let message = refused.to_string();
            let _ = send(&mut w, &ServerMessage::Error { message }).await;
            let reason = match refused {
                ProtocolError::BinaryFrame => "binary frames are not supported",
                _ => "refused",
            };
            close(&mut w, refused.close_code(), reason).await;
            break 'session;
        }
        if !client.buf.is_empty() {
            continue;
        }
        let wait = match current {
            Some(_) => timeout,
            None => register_by.saturating_duration_since(std::time::Instant::now()),
        };
        let outcome = monoio::select! {
            r = monoio::time::timeout(wait, client.buf.read_from(&mut client.r, 4096)) => Some(r),
            m = mailbox.next() => {
                if !send(&mut w, &m).await {
                    break 'session;
                }
                None
            },
        };
        match outcome {
            None => client.buf = crate::rt::io::ReadBuf::with_capacity(4096),
            Some(Ok(Ok(n))) if n > 0 => {}
            Some(Err(_)) if current.is_none() => {
                close(&mut w, 1008, "register first").await;
                break;
            }
            Some(Err(_)) => {
                close(&mut w, 1001, "heartbeat timeout").await;
                break;
            }
            Some(_) => break,
        }
    }
    // However the channel ended (close, TCP end, silence, a refused message
    // or a binary frame), its registration leaves the pool now, unless a
    // newer channel has taken the id over.
    if let Some(reg) = current {
        if hub.detach(&reg.id, session) && env.registry.deregister(&reg.id) {
            reg.event(env, PoolEvent::Down);
        }
    }
}

impl Registration {
    /// Tells the hooks (if any) about this backend.
    fn event(&self, env: &Env, event: PoolEvent) {
        let url = self.bindings.first().map_or("", |(u, _)| u.as_str());
        emit(&env.hooks, &env.events, event, &self.id, url, true);
    }
}

enum Done {
    Deregistered,
    Refused(ProtocolError),
}

fn handle_message(
    env: &Env,
    peer: std::net::SocketAddr,
    text: &str,
    current: &mut Option<Registration>,
    session: u64,
    mailbox: &Arc<Mailbox>,
) -> Result<Option<ServerMessage>, Done> {
    let registry = &env.registry;
    let msg = parse_client_message(text, MAX_CONTROL_MESSAGE).map_err(Done::Refused)?;
    match msg {
        ClientMessage::Register {
            id,
            bindings,
            weight,
            metadata,
            ..
        } => {
            if current.as_ref().is_some_and(|c| c.id != id) {
                return Err(Done::Refused(ProtocolError::BadMessage {
                    kind: "register".into(),
                    reason: "a channel registers one backend id".into(),
                }));
            }
            let mut resolved = Vec::with_capacity(bindings.len());
            for b in &bindings {
                let allow = &env.cfg.allow_backend_cidr;
                resolved.push(resolve_binding_in(b, peer.ip(), allow).map_err(Done::Refused)?);
            }
            let urls: Vec<String> = resolved.iter().map(|(u, _)| u.clone()).collect();
            if !env
                .control_hub
                .claim(&id, session, peer.ip(), mailbox.clone())
            {
                return Err(Done::Refused(ProtocolError::IdHeldElsewhere(id)));
            }
            match registry.register(&id, resolved.clone(), weight, metadata.clone()) {
                RegisterOutcome::Rejected(e) => {
                    env.control_hub.detach(&id, session);
                    Err(Done::Refused(e))
                }
                outcome @ (RegisterOutcome::New | RegisterOutcome::Reregistered { .. }) => {
                    let reg = current.insert(Registration {
                        id: id.clone(),
                        bindings: resolved,
                        weight,
                        metadata,
                    });
                    match outcome {
                        RegisterOutcome::New => {
                            reg.event(env, PoolEvent::Up);
                            reg.event(env, PoolEvent::Ready);
                        }
                        // A re-registration ends a drain: ready again.
                        RegisterOutcome::Reregistered { was_draining: true } => {
                            reg.event(env, PoolEvent::Ready);
                        }
                        _ => {}
                    }
                    let interval = (env.cfg.heartbeat_timeout.as_millis() as u64 / 3).max(100);
                    Ok(Some(ServerMessage::Registered {
                        balancer_id: env.cfg.balancer_id.clone(),
                        id,
                        heartbeat_interval_ms: interval,
                        bindings: urls,
                    }))
                }
            }
        }
        other => {
            let Some(reg) = current.as_ref() else {
                return Err(Done::Refused(ProtocolError::BadMessage {
                    kind: "message".into(),
                    reason: "register first".into(),
                }));
            };
            match other {
                ClientMessage::Heartbeat { load } => {
                    if !registry.heartbeat(&reg.id, load) {
                        // Expired meanwhile (e.g. a long pause): join again,
                        // through the same checks (the table may be full).
                        let again = registry.register(
                            &reg.id,
                            reg.bindings.clone(),
                            reg.weight,
                            reg.metadata.clone(),
                        );
                        match again {
                            RegisterOutcome::Rejected(e) => return Err(Done::Refused(e)),
                            RegisterOutcome::New => {
                                reg.event(env, PoolEvent::Up);
                                reg.event(env, PoolEvent::Ready);
                            }
                            RegisterOutcome::Reregistered { .. } => {}
                        }
                        registry.heartbeat(&reg.id, load);
                    }
                    Ok(None)
                }
                ClientMessage::Drain | ClientMessage::Resume => {
                    let draining = matches!(other, ClientMessage::Drain);
                    let before = registry.switch_draining(&reg.id, draining);
                    if let Some(event) = before.and_then(|was| drain_switch(was, draining)) {
                        reg.event(env, event);
                    }
                    Ok(Some(if draining {
                        ServerMessage::Drain
                    } else {
                        ServerMessage::Resume
                    }))
                }
                ClientMessage::Deregister => {
                    if env.control_hub.detach(&reg.id, session) && registry.deregister(&reg.id) {
                        reg.event(env, PoolEvent::Down);
                    }
                    *current = None;
                    Err(Done::Deregistered)
                }
                ClientMessage::Register { .. } => Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::access;

    #[test]
    fn register_token_is_checked_with_the_constant_time_bearer_match() {
        let t = Some("s3cret");
        assert_eq!(access(t, Some(b"Bearer s3cret"), false), Ok(()));
        assert_eq!(access(t, Some(b"Bearer s3cret"), true), Ok(()));
        for wrong in [
            &b"Bearer s3cre"[..],
            b"Bearer s3cret ",
            b"Bearer s3cretX",
            b"bearer s3cret",
            b"s3cret",
            b"Bearer ",
            b"",
        ] {
            assert_eq!(access(t, Some(wrong), true), Err(401), "{wrong:?}");
        }
        assert_eq!(access(t, None, true), Err(401));
        // No token: only a loopback control listener is trusted.
        assert_eq!(access(None, None, true), Ok(()));
        assert_eq!(access(None, Some(b"Bearer x"), false), Err(403));
    }
}
