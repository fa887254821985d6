//! The messaging operations: what they are ([`Op`], [`Filter`], [`Payload`],
//! [`Outcome`]) and their limits. They arrive as one JSON shape at every
//! door (admin API bodies, control channel messages, `wslb publish`) and are
//! parsed and checked once, in `hub::parse`, into an [`Op`] every worker can
//! apply.
//!
//! ```json
//! {"text": "hi", "channel": "room:42"}                      publish
//! {"binary": "AAEC", "backend": "api-1", "exclude": ["..."]} publish
//! {"id": "3f9a0c11b2e4-0-17", "text": "just you"}          send
//! {"channel": "room:42", "timeout_ms": 500}                 ping
//! {"all": true, "code": 1001, "reason": "maintenance"}      close
//! {"id": "3f9a0c11b2e4-0-17", "channels": ["room:42"]}     subscribe
//! ```

use serde::{Deserialize, Serialize};

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

pub use super::parse::{
    check_channel, op_from_value, parse_channel_list, parse_op, sendable_close_code,
};

#[cfg(test)]
#[path = "ops_tests.rs"]
mod tests;
