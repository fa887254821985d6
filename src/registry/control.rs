//! The balancer side of the control channel: a WebSocket at `/_lb/register`
//! where backends authenticate, register, heartbeat, drain and leave. This is
//! the registry's only I/O; it runs on the worker that accepted the channel.

use std::sync::Arc;

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::hub::Mailbox;
use super::protocol::{
    parse_client_message, resolve_binding, ClientMessage, ProtocolError, ServerMessage,
};
use super::table::RegisterOutcome;
use crate::http::{error_response, ParsedRequest};
use crate::proxy::io::{write_static, write_vec};
use crate::proxy::ClientConn;
use crate::server::worker::WorkerCtx;
use crate::ws::close::write_close_frame;
use crate::ws::frame::{write_frame, FrameLimits, OpCode};
use crate::ws::handshake::{accept_key, write_server_response};
use crate::ws::message::MessageReader;
use crate::ws::scanner::ScannerConfig;

/// Largest control message accepted.
pub const MAX_CONTROL_MESSAGE: usize = 64 * 1024;

/// Whether the request may open a control channel: 401 for a wrong or
/// missing token; without a configured token, only a loopback control
/// listener is trusted (403 elsewhere).
pub fn authorize(
    ctx: &WorkerCtx,
    data: &[u8],
    req: &ParsedRequest,
    on_control_listener: bool,
) -> Result<(), u16> {
    let cfg = &ctx.shared.cfg;
    match &cfg.register_token {
        Some(token) => {
            let given = req.authorization.clone().map(|r| &data[r]);
            let expected = format!("Bearer {token}");
            match given {
                Some(g) if constant_time_eq(g, expected.as_bytes()) => Ok(()),
                _ => Err(401),
            }
        }
        None => {
            let loopback = cfg.control_listen.is_some_and(|a| a.ip().is_loopback());
            if on_control_listener && loopback {
                Ok(())
            } else {
                Err(403)
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn send<W: AsyncWriteRent>(w: &mut W, msg: &ServerMessage) -> bool {
    let json = msg.to_json();
    let mut out = Vec::with_capacity(json.len() + 10);
    write_frame(&mut out, true, OpCode::Text, None, json.as_bytes());
    write_vec(w, out).await.0.is_ok()
}

async fn close<W: AsyncWriteRent>(w: &mut W, code: u16, reason: &str) {
    let mut out = Vec::with_capacity(reason.len() + 8);
    // Close reasons are limited to 123 bytes.
    let reason = &reason[..reason.len().min(120)];
    write_close_frame(&mut out, code, reason, None);
    let _ = write_vec(w, out).await;
}

/// The registration this channel speaks for.
struct Registration {
    id: String,
    bindings: Vec<(String, std::net::SocketAddr)>,
    weight: u32,
    metadata: Option<serde_json::Value>,
}

/// Runs one control channel after the handshake checks passed.
pub async fn serve_channel<S>(
    ctx: &WorkerCtx,
    client: &mut ClientConn<S>,
    req: &ParsedRequest,
    key: &[u8],
) where
    S: AsyncReadRent + AsyncWriteRent,
{
    let mut out = Vec::with_capacity(256);
    write_server_response(&mut out, &accept_key(key), None, None);
    client.buf.consume(req.head_len);
    if write_vec(&mut client.w, out).await.0.is_err() {
        return;
    }
    let shared = &ctx.shared;
    let hub = &shared.control_hub;
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
    let timeout = shared.cfg.heartbeat_timeout;
    let end = 'session: loop {
        // Everything buffered is handed to the reader, so a cancelled read
        // below never loses bytes.
        loop {
            let (used, msg) = match reader.feed(client.buf.data()) {
                Ok(r) => r,
                Err(e) => {
                    close(&mut client.w, e.close_code(), "protocol error").await;
                    break 'session Ending::Error;
                }
            };
            client.buf.consume(used);
            let Some(msg) = msg else { break };
            match msg.opcode {
                OpCode::Ping => {
                    let mut pong = Vec::with_capacity(msg.payload.len() + 2);
                    write_frame(&mut pong, true, OpCode::Pong, None, &msg.payload);
                    let _ = write_vec(&mut client.w, pong).await;
                }
                OpCode::Close => {
                    close(&mut client.w, 1000, "").await;
                    break 'session Ending::Closed;
                }
                OpCode::Text => {
                    let text = String::from_utf8_lossy(&msg.payload);
                    match handle_message(ctx, client.peer, &text, &mut current, session, &mailbox) {
                        Ok(Some(reply)) => {
                            if !send(&mut client.w, &reply).await {
                                break 'session Ending::Closed;
                            }
                        }
                        Ok(None) => {}
                        Err(Done::Deregistered) => {
                            close(&mut client.w, 1000, "deregistered").await;
                            break 'session Ending::Deregistered;
                        }
                        Err(Done::Refused(e)) => {
                            tracing::warn!(peer = %client.peer, error = %e, "control message refused");
                            let _ = send(
                                &mut client.w,
                                &ServerMessage::Error {
                                    message: e.to_string(),
                                },
                            )
                            .await;
                            close(&mut client.w, e.close_code(), "refused").await;
                            break 'session Ending::Error;
                        }
                    }
                }
                _ => {}
            }
        }
        if !client.buf.is_empty() {
            continue;
        }
        let outcome = monoio::select! {
            r = monoio::time::timeout(timeout, client.buf.read_from(&mut client.r, 4096)) => Some(r),
            m = mailbox.next() => {
                if !send(&mut client.w, &m).await {
                    break 'session Ending::Closed;
                }
                None
            },
        };
        match outcome {
            None => client.buf = crate::proxy::io::ReadBuf::with_capacity(4096),
            Some(Ok(Ok(n))) if n > 0 => {}
            Some(Err(_)) => {
                close(&mut client.w, 1001, "heartbeat timeout").await;
                break Ending::Closed;
            }
            Some(_) => break Ending::Closed,
        }
    };
    if let Some(reg) = current {
        if hub.detach(&reg.id, session) {
            match end {
                // A refused message leaves the pool as it was: the backend
                // stays until it deregisters or its heartbeats stop.
                Ending::Error => {}
                Ending::Closed | Ending::Deregistered => {
                    shared.registry.deregister(&reg.id);
                }
            }
        }
    }
}

enum Ending {
    Closed,
    Deregistered,
    Error,
}

enum Done {
    Deregistered,
    Refused(ProtocolError),
}

fn handle_message(
    ctx: &WorkerCtx,
    peer: std::net::SocketAddr,
    text: &str,
    current: &mut Option<Registration>,
    session: u64,
    mailbox: &Arc<Mailbox>,
) -> Result<Option<ServerMessage>, Done> {
    let shared = &ctx.shared;
    let registry = &shared.registry;
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
                resolved.push(resolve_binding(b, peer.ip()).map_err(Done::Refused)?);
            }
            let urls: Vec<String> = resolved.iter().map(|(u, _)| u.clone()).collect();
            match registry.register(&id, resolved.clone(), weight, metadata.clone()) {
                RegisterOutcome::Rejected(e) => Err(Done::Refused(e)),
                RegisterOutcome::New | RegisterOutcome::Reregistered => {
                    shared.control_hub.attach(&id, session, mailbox.clone());
                    *current = Some(Registration {
                        id: id.clone(),
                        bindings: resolved,
                        weight,
                        metadata,
                    });
                    let interval = (shared.cfg.heartbeat_timeout.as_millis() as u64 / 3).max(100);
                    Ok(Some(ServerMessage::Registered {
                        balancer_id: shared.cfg.balancer_id.clone(),
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
                        // Expired meanwhile (e.g. a long pause): join again.
                        let _ = registry.register(
                            &reg.id,
                            reg.bindings.clone(),
                            reg.weight,
                            reg.metadata.clone(),
                        );
                        registry.heartbeat(&reg.id, load);
                    }
                    Ok(None)
                }
                ClientMessage::Drain => {
                    registry.set_draining(&reg.id, true);
                    Ok(Some(ServerMessage::Drain))
                }
                ClientMessage::Resume => {
                    registry.set_draining(&reg.id, false);
                    Ok(Some(ServerMessage::Resume))
                }
                ClientMessage::Deregister => {
                    if shared.control_hub.detach(&reg.id, session) {
                        registry.deregister(&reg.id);
                    }
                    *current = None;
                    Err(Done::Deregistered)
                }
                ClientMessage::Register { .. } => Ok(None),
            }
        }
    }
}

/// Answers a refused control request.
pub async fn refuse<W: AsyncWriteRent>(w: &mut W, status: u16) {
    let _ = write_static(w, error_response(status)).await;
}
