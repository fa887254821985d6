//! The messaging operations as they arrive (admin API bodies, control
//! channel messages, `wslb publish`): parsed and checked here, once, into an
//! [`Op`] every worker can apply. One JSON shape for every door.
//!
//! ```json
//! {"text": "hi", "channel": "room:42"}                      publish
//! {"binary": "AAEC", "backend": "api-1", "exclude": ["..."]} publish
//! {"id": "3f9a0c11b2e4-0-17", "text": "just you"}          send
//! {"channel": "room:42", "timeout_ms": 500}                 ping
//! {"all": true, "code": 1001, "reason": "maintenance"}      close
//! {"id": "3f9a0c11b2e4-0-17", "channels": ["room:42"]}     subscribe
//! ```

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::proto::ws::close::write_close_frame;
use crate::proto::ws::frame::{write_frame, OpCode};

/// Longest channel name, bytes.
pub const MAX_CHANNEL_LEN: usize = 256;
/// Most channels one session may belong to.
pub const MAX_CHANNELS_PER_SESSION: usize = 64;
/// Most ids in an `include` or `exclude` list.
pub const MAX_ID_LIST: usize = 10_000;
/// Longest wait a ping may ask for.
pub const MAX_PING_TIMEOUT_MS: u64 = 60_000;
/// The ping wait when none is given.
pub const DEFAULT_PING_TIMEOUT_MS: u64 = 1_000;

/// Why a request was refused; `status` is the HTTP answer it maps to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// The body is not JSON, or not an object.
    #[error("malformed JSON: {0}")]
    BadJson(String),
    /// A field is missing, of the wrong type or out of range.
    #[error("{0}")]
    Invalid(String),
    /// The message is larger than `--max-message-size`.
    #[error("message of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// The message's size.
        len: usize,
        /// The limit.
        max: u64,
    },
    /// No session has this id (on this balancer).
    #[error("no such connection: {0}")]
    UnknownId(String),
    /// The workers did not answer in time (stopping, or overloaded).
    #[error("the workers did not answer in time")]
    Unavailable,
}

impl OpError {
    /// The HTTP status this refusal answers with.
    pub fn status(&self) -> u16 {
        match self {
            OpError::UnknownId(_) => 404,
            OpError::Unavailable => 503,
            _ => 400,
        }
    }
}

/// A message to deliver: its payload as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl Payload {
    /// The payload's size in bytes.
    pub fn len(&self) -> usize {
        match self {
            Payload::Text(t) => t.len(),
            Payload::Binary(b) => b.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The unmasked frame a client receives (one frame, FIN set).
    pub fn to_frame(&self) -> Vec<u8> {
        let (op, bytes) = match self {
            Payload::Text(t) => (OpCode::Text, t.as_bytes()),
            Payload::Binary(b) => (OpCode::Binary, b.as_slice()),
        };
        let mut out = Vec::with_capacity(bytes.len() + 10);
        write_frame(&mut out, true, op, None, bytes);
        out
    }
}

/// Which sessions an operation reaches; every given field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Members of this channel.
    pub channel: Option<String>,
    /// Sessions that negotiated this subprotocol.
    pub subprotocol: Option<String>,
    /// Sessions on this backend (its id).
    pub backend: Option<String>,
    /// Sessions whose upgrade path starts with this.
    pub path_prefix: Option<String>,
    /// Only these sessions (ids).
    pub include: Option<Vec<String>>,
    /// Never these sessions (ids).
    pub exclude: Vec<String>,
}

impl Filter {
    /// Whether no field narrows the set (every session matches).
    pub fn is_everyone(&self) -> bool {
        *self == Filter::default()
    }

    /// Whether a session with these facts passes every field but the
    /// channel and the id lists (which the worker checks with its own
    /// indexes).
    pub fn matches(&self, backend: &str, path: &str, subprotocol: Option<&str>) -> bool {
        self.backend.as_deref().is_none_or(|b| b == backend)
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| path.starts_with(p))
            && self
                .subprotocol
                .as_deref()
                .is_none_or(|s| subprotocol == Some(s))
    }
}

/// What to do to the sessions a filter picks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpKind {
    /// Send every matching session `frame` (a whole, unmasked frame).
    Publish {
        /// The encoded frame.
        frame: Vec<u8>,
    },
    /// Ping every matching session; count the pongs back within `timeout_ms`.
    Ping {
        /// How long pongs are counted.
        timeout_ms: u64,
    },
    /// Close every matching session with this code and reason.
    Close {
        /// The close code.
        code: u16,
        /// The close reason (at most 123 bytes).
        reason: String,
    },
    /// Add (or remove) channels of the matching sessions.
    Subscribe {
        /// The channels.
        channels: Vec<String>,
        /// Add (true) or remove (false).
        join: bool,
    },
}

/// One operation, checked: what, to whom, and within which backend's
/// sessions (`scope`, set for a backend's own requests under
/// `--backend-publish local`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// What to do.
    pub kind: OpKind,
    /// To whom.
    pub filter: Filter,
    /// Only sessions on this backend, whatever the filter says.
    pub scope: Option<String>,
    /// The request named one session (`send`, `subscribe`): an unknown id
    /// is a 404.
    pub single: Option<String>,
}

/// How an operation went, summed over every worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Sessions the filter picked.
    pub matched: u64,
    /// Sessions the operation reached (queued for writing, pinged, closed,
    /// subscribed).
    pub delivered: u64,
    /// Sessions that cannot take it: tunnel-mode sessions (no injected
    /// frames) and sessions already closing.
    pub skipped: u64,
    /// Sessions closed as slow consumers (their send queue was full).
    pub dropped: u64,
    /// Pongs back in time (ping only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pongs: Option<u64>,
}

impl Outcome {
    /// Adds another balancer's (or worker's) counts to these; pongs add up
    /// when either has some.
    pub fn add(&mut self, other: &Outcome) {
        self.matched += other.matched;
        self.delivered += other.delivered;
        self.skipped += other.skipped;
        self.dropped += other.dropped;
        if let Some(p) = other.pongs {
            self.pongs = Some(self.pongs.unwrap_or(0) + p);
        }
    }
}

/// Which operation a body is for (the route or the control message type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `publish`.
    Publish,
    /// `send`.
    Send,
    /// `ping`.
    Ping,
    /// `close`.
    Close,
    /// `subscribe`.
    Subscribe,
    /// `unsubscribe`.
    Unsubscribe,
}

impl Verb {
    /// The verb a route segment or message type names.
    pub fn from_name(name: &str) -> Option<Verb> {
        Verb::ALL.into_iter().find(|v| v.name() == name)
    }

    /// Every operation.
    pub const ALL: [Verb; 6] = [
        Verb::Publish,
        Verb::Send,
        Verb::Ping,
        Verb::Close,
        Verb::Subscribe,
        Verb::Unsubscribe,
    ];

    /// The route segment and control message type of this operation.
    pub fn name(self) -> &'static str {
        match self {
            Verb::Publish => "publish",
            Verb::Send => "send",
            Verb::Ping => "ping",
            Verb::Close => "close",
            Verb::Subscribe => "subscribe",
            Verb::Unsubscribe => "unsubscribe",
        }
    }
}

/// Checks a channel name: 1 to 256 bytes, no control characters.
pub fn check_channel(name: &str) -> Result<(), OpError> {
    if name.is_empty() {
        return Err(OpError::Invalid("empty channel name".into()));
    }
    if name.len() > MAX_CHANNEL_LEN {
        return Err(OpError::Invalid(format!(
            "channel name of {} bytes is over the limit of {MAX_CHANNEL_LEN}",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(OpError::Invalid(
            "channel name has a control character".into(),
        ));
    }
    Ok(())
}

/// Parses a comma-separated channel list (the `X-Wslb-Channels` value):
/// names trimmed, empty entries skipped; None if any name is bad or there
/// are too many.
pub fn parse_channel_list(value: &str) -> Result<Vec<String>, OpError> {
    let mut out: Vec<String> = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        check_channel(name)?;
        if !out.iter().any(|c| c == name) {
            out.push(name.to_string());
        }
    }
    if out.len() > MAX_CHANNELS_PER_SESSION {
        return Err(OpError::Invalid(format!(
            "{} channels is over the limit of {MAX_CHANNELS_PER_SESSION}",
            out.len()
        )));
    }
    Ok(out)
}

/// Whether a close code may be sent by the balancer on a client's behalf.
pub fn sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Parses a JSON body for `verb` into an [`Op`]. `max_message` bounds the
/// payload (`--max-message-size`).
pub fn parse_op(verb: Verb, body: &[u8], max_message: u64) -> Result<Op, OpError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| OpError::BadJson(e.to_string()))?;
    op_from_value(verb, &value, max_message)
}

/// As [`parse_op`], from an already parsed JSON value (the control
/// channel's message, whose `type` and `ref` fields are ignored here).
pub fn op_from_value(verb: Verb, value: &Value, max_message: u64) -> Result<Op, OpError> {
    let obj = value
        .as_object()
        .ok_or_else(|| OpError::BadJson("the body must be a JSON object".into()))?;
    let filter = filter_from(obj)?;
    let mut single = None;
    let kind = match verb {
        Verb::Publish | Verb::Send => {
            let payload = payload_from(obj, max_message)?;
            OpKind::Publish {
                frame: payload.to_frame(),
            }
        }
        Verb::Ping => {
            let timeout_ms = match obj.get("timeout_ms") {
                None | Some(Value::Null) => DEFAULT_PING_TIMEOUT_MS,
                Some(v) => match v.as_u64() {
                    Some(t) if (1..=MAX_PING_TIMEOUT_MS).contains(&t) => t,
                    _ => {
                        return Err(OpError::Invalid(format!(
                            "timeout_ms must be 1 to {MAX_PING_TIMEOUT_MS}"
                        )))
                    }
                },
            };
            OpKind::Ping { timeout_ms }
        }
        Verb::Close => {
            let all = match obj.get("all") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(OpError::Invalid("all must be true or false".into())),
            };
            let id_given = obj.get("id").is_some_and(|v| !v.is_null());
            if !all && filter.is_everyone() && !id_given {
                return Err(OpError::Invalid(
                    "give a filter, an id, or \"all\": true to close every session".into(),
                ));
            }
            let code = match obj.get("code") {
                None | Some(Value::Null) => 1000,
                Some(v) => match v.as_u64().and_then(|c| u16::try_from(c).ok()) {
                    Some(c) if sendable_close_code(c) => c,
                    _ => {
                        return Err(OpError::Invalid(
                            "code must be 1000-1003, 1007-1014 or 3000-4999".into(),
                        ))
                    }
                },
            };
            let reason = match obj.get("reason") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) if s.len() <= 123 => s.clone(),
                Some(Value::String(_)) => {
                    return Err(OpError::Invalid("reason is over 123 bytes".into()))
                }
                Some(_) => return Err(OpError::Invalid("reason must be a string".into())),
            };
            OpKind::Close { code, reason }
        }
        Verb::Subscribe | Verb::Unsubscribe => {
            let channels = match obj.get("channels") {
                Some(Value::Array(a)) if !a.is_empty() => {
                    if a.len() > MAX_CHANNELS_PER_SESSION {
                        return Err(OpError::Invalid(format!(
                            "at most {MAX_CHANNELS_PER_SESSION} channels at once"
                        )));
                    }
                    let mut out = Vec::with_capacity(a.len());
                    for c in a {
                        let c = c
                            .as_str()
                            .ok_or_else(|| OpError::Invalid("channels must be strings".into()))?;
                        check_channel(c)?;
                        out.push(c.to_string());
                    }
                    out
                }
                Some(Value::String(s)) => {
                    check_channel(s)?;
                    vec![s.clone()]
                }
                _ => {
                    return Err(OpError::Invalid(
                        "channels must be a non-empty list of names".into(),
                    ))
                }
            };
            OpKind::Subscribe {
                channels,
                join: verb == Verb::Subscribe,
            }
        }
    };
    let mut filter = filter;
    match obj.get("id") {
        None | Some(Value::Null) => {
            if matches!(verb, Verb::Send | Verb::Subscribe | Verb::Unsubscribe) {
                return Err(OpError::Invalid(
                    "id (the connection's id) is required".into(),
                ));
            }
        }
        Some(Value::String(id)) if !id.is_empty() && id.len() <= 64 => {
            if verb == Verb::Publish || verb == Verb::Ping {
                return Err(OpError::Invalid(
                    "id is for send, close and subscribe; use include to name sessions".into(),
                ));
            }
            single = Some(id.clone());
            filter.include = Some(vec![id.clone()]);
        }
        Some(_) => return Err(OpError::Invalid("id must be a connection id string".into())),
    }
    Ok(Op {
        kind,
        filter,
        scope: None,
        single,
    })
}

fn opt_string(obj: &serde_json::Map<String, Value>, key: &str) -> Result<Option<String>, OpError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= 2048 => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(OpError::Invalid(format!("{key} is over 2048 bytes"))),
        Some(_) => Err(OpError::Invalid(format!("{key} must be a string"))),
    }
}

fn id_list(
    obj: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<Vec<String>>, OpError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => {
            if a.len() > MAX_ID_LIST {
                return Err(OpError::Invalid(format!(
                    "{key} lists more than {MAX_ID_LIST} ids"
                )));
            }
            a.iter()
                .map(|v| match v.as_str() {
                    Some(s) if s.len() <= 64 => Ok(s.to_string()),
                    _ => Err(OpError::Invalid(format!("{key} must list id strings"))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        }
        Some(_) => Err(OpError::Invalid(format!("{key} must be a list of ids"))),
    }
}

fn filter_from(obj: &serde_json::Map<String, Value>) -> Result<Filter, OpError> {
    let channel = opt_string(obj, "channel")?;
    if let Some(c) = &channel {
        check_channel(c)?;
    }
    Ok(Filter {
        channel,
        subprotocol: opt_string(obj, "subprotocol")?,
        backend: opt_string(obj, "backend")?,
        path_prefix: opt_string(obj, "path_prefix")?,
        include: id_list(obj, "include")?,
        exclude: id_list(obj, "exclude")?.unwrap_or_default(),
    })
}

fn payload_from(obj: &serde_json::Map<String, Value>, max: u64) -> Result<Payload, OpError> {
    let payload = match (obj.get("text"), obj.get("binary")) {
        (Some(Value::String(t)), None) => Payload::Text(t.clone()),
        (None, Some(Value::String(b))) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b.as_bytes())
                .map_err(|e| OpError::Invalid(format!("binary is not base64: {e}")))?;
            Payload::Binary(bytes)
        }
        (Some(_), Some(_)) => return Err(OpError::Invalid("give text or binary, not both".into())),
        (Some(_), None) => return Err(OpError::Invalid("text must be a string".into())),
        (None, Some(_)) => return Err(OpError::Invalid("binary must be a base64 string".into())),
        (None, None) => {
            return Err(OpError::Invalid(
                "a message needs \"text\" or \"binary\"".into(),
            ))
        }
    };
    if max != 0 && payload.len() as u64 > max {
        return Err(OpError::TooLarge {
            len: payload.len(),
            max,
        });
    }
    Ok(payload)
}

/// The close frame (unmasked) the balancer sends a client for `code`.
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(reason.len() + 4);
    write_close_frame(&mut out, code, reason, None);
    out
}

#[cfg(test)]
#[path = "ops_tests.rs"]
mod tests;
