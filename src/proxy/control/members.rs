//! One control channel's state and what each backend message does to it:
//! registration, heartbeats, drain/resume and leaving (the registry side),
//! and, for a channel registered with `"v": 2`, operations and event
//! requests handed to [`super::ops`].

use std::net::SocketAddr;
use std::sync::Arc;

use super::ops::{op_refused, ChannelOps};
use crate::pool::registry::hub::Mailbox;
use crate::pool::registry::protocol::{
    parse_client_message, resolve_binding_in, ClientMessage, ProtocolError, ServerMessage,
    MAX_CONTROL_MESSAGE, MAX_V2_CONTROL_MESSAGE, PROTOCOL_VERSION,
};
use crate::pool::registry::table::RegisterOutcome;
use crate::proxy::env::Env;
use crate::proxy::pool_events::{drain_switch, emit, PoolEvent};

/// The registration a channel speaks for.
pub(super) struct Registration {
    pub(super) id: String,
    bindings: Vec<(String, SocketAddr)>,
    weight: u32,
    metadata: Option<serde_json::Value>,
    /// The protocol version of the last `register`.
    v: u32,
}

impl Registration {
    /// Tells the hooks (if any) about this backend.
    fn event(&self, env: &Env, event: PoolEvent) {
        let url = self.bindings.first().map_or("", |(u, _)| u.as_str());
        emit(&env.hooks, &env.events, event, &self.id, url, true);
    }
}

/// Why a channel ends after a message.
pub(super) enum Done {
    /// The backend left (`deregister`).
    Deregistered,
    /// A message was refused: `error`, then close.
    Refused(ProtocolError),
}

/// One channel: its session number, mailbox, registration and operations.
pub(super) struct Channel {
    pub(super) session: u64,
    pub(super) mailbox: Arc<Mailbox>,
    pub(super) current: Option<Registration>,
    ops: ChannelOps,
}

/// The registration a v2 message needs: refused (and the channel closed)
/// before `register`, or on a channel that registered with `"v": 1`.
fn v2_registration<'a>(
    current: &'a Option<Registration>,
    kind: &str,
) -> Result<&'a Registration, Done> {
    match current {
        None => Err(Done::Refused(ProtocolError::BadMessage {
            kind: kind.into(),
            reason: "register first".into(),
        })),
        Some(reg) if reg.v < 2 => Err(Done::Refused(ProtocolError::BadMessage {
            kind: kind.into(),
            reason: format!("a v2 message: register with \"v\": {PROTOCOL_VERSION} to use it"),
        })),
        Some(reg) => Ok(reg),
    }
}

impl Channel {
    pub(super) fn new(env: &Env) -> Channel {
        Channel {
            session: env.control_hub.new_session(),
            mailbox: Arc::new(Mailbox::default()),
            current: None,
            ops: ChannelOps::new(),
        }
    }

    /// The largest message accepted now.
    pub(super) fn max_message(&self) -> usize {
        match &self.current {
            Some(reg) if reg.v >= 2 => MAX_V2_CONTROL_MESSAGE,
            _ => MAX_CONTROL_MESSAGE,
        }
    }

    /// Acts on one text message: the reply to send, if any, or why the
    /// channel ends.
    pub(super) fn handle(
        &mut self,
        env: &Env,
        peer: SocketAddr,
        text: &str,
    ) -> Result<Option<ServerMessage>, Done> {
        let msg = match parse_client_message(text, self.max_message()) {
            Ok(m) => m,
            Err(ProtocolError::BadOp { kind, reason }) => {
                // A bad operation is answered and the channel goes on, once
                // the channel may send operations at all.
                v2_registration(&self.current, &kind)?;
                let e = ProtocolError::BadOp { kind, reason };
                return Ok(Some(op_refused(None, 400, e.to_string())));
            }
            Err(e) => return Err(Done::Refused(e)),
        };
        match msg {
            ClientMessage::Register {
                v,
                id,
                bindings,
                weight,
                metadata,
            } => self.register(env, peer, v, id, bindings, weight, metadata),
            ClientMessage::Op {
                name,
                reference,
                body,
            } => {
                let reg = v2_registration(&self.current, name.name())?;
                let mailbox = &self.mailbox;
                Ok(self.ops.start(env, &reg.id, name, reference, body, mailbox))
            }
            ClientMessage::Events { messages, enabled } => {
                let reg = v2_registration(&self.current, "events")?;
                let mailbox = &self.mailbox;
                self.ops.events(env, &reg.id, messages, enabled, mailbox);
                Ok(None)
            }
            other => self.member_message(env, other),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn register(
        &mut self,
        env: &Env,
        peer: SocketAddr,
        v: u32,
        id: String,
        bindings: Vec<String>,
        weight: u32,
        metadata: Option<serde_json::Value>,
    ) -> Result<Option<ServerMessage>, Done> {
        if self.current.as_ref().is_some_and(|c| c.id != id) {
            return Err(Done::Refused(ProtocolError::BadMessage {
                kind: "register".into(),
                reason: "a channel registers one backend id".into(),
            }));
        }
        let mut resolved = Vec::with_capacity(bindings.len());
        let cfg = env.cfg();
        for b in &bindings {
            let allow = &cfg.allow_backend_cidr;
            resolved.push(resolve_binding_in(b, peer.ip(), allow).map_err(Done::Refused)?);
        }
        let urls: Vec<String> = resolved.iter().map(|(u, _)| u.clone()).collect();
        let hub = &env.control_hub;
        if !hub.claim(&id, self.session, peer.ip(), self.mailbox.clone()) {
            return Err(Done::Refused(ProtocolError::IdHeldElsewhere(id)));
        }
        match env
            .registry
            .register(&id, resolved.clone(), weight, metadata.clone())
        {
            RegisterOutcome::Rejected(e) => {
                hub.detach(&id, self.session);
                Err(Done::Refused(e))
            }
            outcome @ (RegisterOutcome::New | RegisterOutcome::Reregistered { .. }) => {
                let reg = self.current.insert(Registration {
                    id: id.clone(),
                    bindings: resolved,
                    weight,
                    metadata,
                    v,
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
                let interval = (env.cfg().heartbeat_timeout.as_millis() as u64 / 3).max(100);
                Ok(Some(ServerMessage::Registered {
                    v: PROTOCOL_VERSION,
                    balancer_id: env.cfg().balancer_id.clone(),
                    id,
                    heartbeat_interval_ms: interval,
                    bindings: urls,
                }))
            }
        }
    }

    /// Heartbeat, drain, resume, deregister: only after `register`.
    fn member_message(
        &mut self,
        env: &Env,
        msg: ClientMessage,
    ) -> Result<Option<ServerMessage>, Done> {
        let registry = &env.registry;
        let Some(reg) = self.current.as_ref() else {
            return Err(Done::Refused(ProtocolError::BadMessage {
                kind: "message".into(),
                reason: "register first".into(),
            }));
        };
        match msg {
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
                let draining = matches!(msg, ClientMessage::Drain);
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
                if env.control_hub.detach(&reg.id, self.session) && registry.deregister(&reg.id) {
                    reg.event(env, PoolEvent::Down);
                }
                self.current = None;
                Err(Done::Deregistered)
            }
            ClientMessage::Register { .. }
            | ClientMessage::Op { .. }
            | ClientMessage::Events { .. } => Ok(None),
        }
    }

    /// The channel ended (however it did): its registration leaves the
    /// pool now, unless a newer channel has taken the id over; its
    /// operations and events stop.
    pub(super) fn end(self, env: &Env) {
        if let Some(reg) = &self.current {
            if env.control_hub.detach(&reg.id, self.session) && env.registry.deregister(&reg.id) {
                reg.event(env, PoolEvent::Down);
            }
        }
    }
}
