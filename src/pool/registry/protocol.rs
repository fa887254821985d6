//! Control-channel messages (JSON text frames, one object each, tagged by
//! `"type"`), their validation, and binding resolution. See docs/PROTOCOL.md.
//!
//! Protocol v2 adds the messaging operations (`publish`, `send`, `ping`,
//! `close`, `subscribe`, `unsubscribe`: their bodies are checked by the hub
//! one layer up, here only the `type` and the `ref` are), `events`, and the
//! balancer's `result`, `op_error` and `event` answers.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::binding::{parse_binding, Fill};
use crate::hub::ops::Verb;
pub(crate) use ops::op_json;
use ops::op_message;

#[path = "protocol_ops.rs"]
mod ops;
pub(crate) use super::binding::{resolve_binding, resolve_binding_in, split_authority};
pub(crate) use super::error::ProtocolError;

/// The protocol version this balancer speaks (`"v"` in `register` and
/// `registered`).
pub(crate) const PROTOCOL_VERSION: u32 = 2;
/// The oldest version still accepted in `register`.
pub(crate) const MIN_PROTOCOL_VERSION: u32 = 1;
/// Largest control message before a `"v": 2` registration (and on a v1
/// channel).
pub(crate) const MAX_CONTROL_MESSAGE: usize = 64 * 1024;
/// Largest control message on a channel registered with `"v": 2` (an
/// operation carries a whole message to deliver).
pub(crate) const MAX_V2_CONTROL_MESSAGE: usize = 1024 * 1024;
/// Longest `ref` string, bytes.
pub(crate) const MAX_REF_LEN: usize = 64;
/// Weights accepted from backends and static configuration.
pub(crate) const MAX_WEIGHT: u32 = 1000;
/// Longest backend id, bytes.
pub(crate) const MAX_ID_LEN: usize = 128;
/// Most bindings one backend may register.
pub(crate) const MAX_BINDINGS: usize = 16;

/// Backend -> balancer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ClientMessage {
    /// Join (or re-join) the pool. `bindings` are as sent, normalised to
    /// strings (`{"port": 9001}` and `9001` become `":9001"`); resolve them
    /// against the peer address with [`resolve_binding`].
    Register {
        v: u32,
        id: String,
        bindings: Vec<String>,
        weight: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        metadata: Option<Value>,
    },
    /// The backend's own connection count, from every source.
    Heartbeat { load: u32 },
    /// Stop sending new connections; existing ones continue.
    Drain,
    /// Take new connections again.
    Resume,
    /// Leave the pool now.
    Deregister,
    /// A messaging operation (v2): `body` is the whole message (its `type`
    /// and `ref` included, which the hub's parser ignores).
    #[serde(skip)]
    Op {
        /// Which operation.
        name: Verb,
        /// The caller's reference, echoed in the answer.
        reference: Option<Value>,
        /// The message as sent.
        body: Map<String, Value>,
    },
    /// Start (or change, or with `enabled: false` stop) the events about
    /// this backend's own sessions (v2).
    Events {
        /// Message metadata too.
        messages: bool,
        /// False: stop.
        #[serde(skip_serializing_if = "is_true")]
        enabled: bool,
    },
}

fn is_true(b: &bool) -> bool {
    *b
}

impl ClientMessage {
    pub(crate) fn to_json(&self) -> String {
        match self {
            ClientMessage::Op {
                name,
                reference,
                body,
            } => op_json(*name, reference.as_ref(), body),
            other => to_json_or_error(other),
        }
    }
}

/// Balancer -> backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ServerMessage {
    /// Registration accepted; send heartbeats at this interval.
    Registered {
        /// The balancer's protocol version (absent, so 1, from older ones).
        #[serde(default = "version_one")]
        v: u32,
        balancer_id: String,
        id: String,
        heartbeat_interval_ms: u64,
        /// The bindings as resolved (port-only forms filled in).
        #[serde(default)]
        bindings: Vec<String>,
    },
    /// A message was refused; the text says why.
    Error { message: String },
    /// The balancer has stopped sending new connections to this backend.
    Drain,
    /// The balancer sends new connections to this backend again.
    Resume,
    /// How an operation went (v2), summed over the balancer's workers.
    Result {
        /// The operation's `ref`, if it had one.
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
        matched: u64,
        delivered: u64,
        skipped: u64,
        dropped: u64,
        /// Pongs back in time (ping only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pongs: Option<u64>,
    },
    /// An operation was refused (v2); the channel stays open. `status` is
    /// the admin API's answer for the same refusal (400, 404, 429, 504).
    OpError {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
        status: u16,
        message: String,
    },
    /// Something happened to one of this backend's sessions (v2, after
    /// `events`): the event's fields, its kind under `"event"`.
    Event {
        #[serde(flatten)]
        fields: Map<String, Value>,
    },
}

fn version_one() -> u32 {
    1
}

impl ServerMessage {
    pub(crate) fn to_json(&self) -> String {
        to_json_or_error(self)
    }
}

fn to_json_or_error<T: Serialize>(msg: &T) -> String {
    serde_json::to_string(msg)
        .unwrap_or_else(|_| r#"{"type":"error","message":"internal encoding error"}"#.to_string())
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawBinding {
    Text(String),
    Port(u16),
    Object { port: u16 },
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum RawClient {
    Register {
        v: Option<Value>,
        id: String,
        bindings: Vec<RawBinding>,
        weight: Option<u64>,
        metadata: Option<Value>,
    },
    Heartbeat {
        load: u32,
    },
    Drain {},
    Resume {},
    Deregister {},
    Events {
        #[serde(default)]
        messages: bool,
        #[serde(default = "yes")]
        enabled: bool,
    },
}

fn yes() -> bool {
    true
}

const CLIENT_TYPES: &[&str] = &[
    "register",
    "heartbeat",
    "drain",
    "resume",
    "deregister",
    "events",
    "publish",
    "send",
    "ping",
    "close",
    "subscribe",
    "unsubscribe",
];
const SERVER_TYPES: &[&str] = &[
    "registered",
    "error",
    "drain",
    "resume",
    "result",
    "op_error",
    "event",
];

/// Size, JSON and `"type"` checks shared by both directions.
fn precheck(text: &str, max_len: usize, known: &[&str]) -> Result<(Value, String), ProtocolError> {
    if text.len() > max_len {
        return Err(ProtocolError::TooLarge {
            len: text.len(),
            max: max_len,
        });
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| ProtocolError::BadJson(e.to_string()))?;
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .ok_or(ProtocolError::MissingType)?
        .to_string();
    if !known.contains(&kind.as_str()) {
        return Err(ProtocolError::UnknownType(kind));
    }
    Ok((value, kind))
}

fn bad_message(kind: &str, e: serde_json::Error) -> ProtocolError {
    ProtocolError::BadMessage {
        kind: kind.to_string(),
        reason: e.to_string(),
    }
}

/// Parse and validate one backend -> balancer message.
pub(crate) fn parse_client_message(
    text: &str,
    max_len: usize,
) -> Result<ClientMessage, ProtocolError> {
    let (value, kind) = precheck(text, max_len, CLIENT_TYPES)?;
    if let Some(name) = Verb::from_name(&kind) {
        return op_message(name, value);
    }
    let raw: RawClient = serde_json::from_value(value).map_err(|e| bad_message(&kind, e))?;
    Ok(match raw {
        RawClient::Register {
            v,
            id,
            bindings,
            weight,
            metadata,
        } => {
            let v = match v {
                Some(Value::Number(n)) => match n.as_u64() {
                    Some(v)
                        if (u64::from(MIN_PROTOCOL_VERSION)..=u64::from(PROTOCOL_VERSION))
                            .contains(&v) =>
                    {
                        v as u32
                    }
                    _ => return Err(ProtocolError::UnsupportedVersion(n.to_string())),
                },
                Some(other) => return Err(ProtocolError::UnsupportedVersion(other.to_string())),
                None => return Err(ProtocolError::UnsupportedVersion("(missing \"v\")".into())),
            };
            validate_id(&id)?;
            let weight = validate_weight(weight.unwrap_or(1))?;
            if bindings.is_empty() {
                return Err(ProtocolError::EmptyBindings);
            }
            if bindings.len() > MAX_BINDINGS {
                return Err(ProtocolError::TooManyBindings(bindings.len()));
            }
            let bindings: Vec<String> = bindings
                .into_iter()
                .map(|b| match b {
                    RawBinding::Text(s) => s.trim().to_string(),
                    RawBinding::Port(p) | RawBinding::Object { port: p } => format!(":{p}"),
                })
                .collect();
            for b in &bindings {
                // Syntax check now; the peer address is filled in later.
                // Syntax and the ranges refused whatever the peer; the peer
                // address and the allow-list are applied when resolving.
                let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
                parse_binding(
                    b,
                    Fill::Peer {
                        ip: local,
                        allow: &[],
                    },
                )?;
            }
            ClientMessage::Register {
                v,
                id,
                bindings,
                weight,
                metadata,
            }
        }
        RawClient::Heartbeat { load } => ClientMessage::Heartbeat { load },
        RawClient::Drain {} => ClientMessage::Drain,
        RawClient::Resume {} => ClientMessage::Resume,
        RawClient::Deregister {} => ClientMessage::Deregister,
        RawClient::Events { messages, enabled } => ClientMessage::Events { messages, enabled },
    })
}

/// Parse one balancer -> backend message (for agents).
pub(crate) fn parse_server_message(
    text: &str,
    max_len: usize,
) -> Result<ServerMessage, ProtocolError> {
    let (value, kind) = precheck(text, max_len, SERVER_TYPES)?;
    serde_json::from_value(value).map_err(|e| bad_message(&kind, e))
}

/// A backend id: 1 to 128 printable ASCII characters, no spaces.
pub(crate) fn validate_id(id: &str) -> Result<(), ProtocolError> {
    let bad = |reason| {
        Err(ProtocolError::BadId {
            id: id.chars().take(MAX_ID_LEN).collect(),
            reason,
        })
    };
    if id.is_empty() {
        return bad("empty");
    }
    if id.len() > MAX_ID_LEN {
        return bad("longer than 128 bytes");
    }
    if !id.bytes().all(|c| c.is_ascii_graphic()) {
        return bad("only printable ASCII without spaces is allowed");
    }
    Ok(())
}

/// A weight between 1 and 1000.
pub(crate) fn validate_weight(weight: u64) -> Result<u32, ProtocolError> {
    match u32::try_from(weight) {
        Ok(w) if (1..=MAX_WEIGHT).contains(&w) => Ok(w),
        _ => Err(ProtocolError::BadWeight(weight)),
    }
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
