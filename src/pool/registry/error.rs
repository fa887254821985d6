//! Why a control message or a binding was refused, and the close code the
//! channel gets for it.

use std::net::IpAddr;

/// Why a control message or binding was refused. All of these come from the
/// backend side and are not worth retrying unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("message is {len} bytes, more than the {max} allowed")]
    /// The message is longer than allowed.
    TooLarge {
        /// Its length, in bytes.
        len: usize,
        /// The limit, in bytes.
        max: usize,
    },
    #[error("message is not valid JSON: {0}")]
    /// The message does not parse as JSON.
    BadJson(String),
    #[error("message must be a JSON object with a string \"type\" field")]
    /// The message has no string `type` field.
    MissingType,
    #[error("unknown message type {0:?}")]
    /// The `type` is not one this side knows.
    UnknownType(String),
    #[error("bad {kind:?} message: {reason}")]
    /// A known message type with missing or malformed fields.
    BadMessage {
        /// The message type.
        kind: String,
        /// What is wrong.
        reason: String,
    },
    #[error("unsupported protocol version {0} (this balancer speaks \"v\": 1 or 2)")]
    /// A protocol version (`v`) other than 1 or 2.
    UnsupportedVersion(String),
    #[error("bad backend id {id:?}: {reason}")]
    /// The backend id breaks the id rules.
    BadId {
        /// The id as sent.
        id: String,
        /// What is wrong.
        reason: &'static str,
    },
    #[error("register needs at least one binding")]
    /// A registration with no binding.
    EmptyBindings,
    #[error("too many bindings ({0}; at most 16)")]
    /// More bindings than allowed (at most 16).
    TooManyBindings(usize),
    #[error("bad binding {binding:?}: {reason}")]
    /// A binding that does not parse or cannot be used.
    BadBinding {
        /// The binding as sent.
        binding: String,
        /// What is wrong.
        reason: &'static str,
    },
    #[error("binding {binding:?} points at {addr}, outside the networks this balancer allows (--allow-backend-cidr {allowed})")]
    /// A binding whose address is outside the networks the balancer allows.
    NotAllowed {
        /// The binding as sent.
        binding: String,
        /// The address it resolved to.
        addr: IpAddr,
        /// The allowed networks, for the message.
        allowed: String,
    },
    #[error("weight {0} out of range (1 to 1000)")]
    /// A weight outside 1 to 1000.
    BadWeight(u64),
    #[error("backend id {0:?} is already a static backend")]
    /// The id belongs to a static backend.
    IdInUse(String),
    #[error(
        "backend id {0:?} is held by a live control channel from another address; \
         it can be taken over once that channel ends or its heartbeat expires"
    )]
    /// The id is held by a live control channel from another address.
    IdHeldElsewhere(String),
    #[error("the balancer is full: at most {0} backends (--max-backends), static ones included")]
    /// The pool is full (`--max-backends`).
    TooManyBackends(usize),
    #[error("bad {kind:?} operation: {reason}")]
    /// An operation message (v2) refused; unlike the others, this refusal
    /// is answered with `op_error` and the channel stays open.
    BadOp {
        /// The operation (`publish`, `send`, ...).
        kind: String,
        /// What is wrong.
        reason: String,
    },
    #[error("binary frames are not supported on the control channel; send JSON text")]
    /// A binary frame on the control channel (JSON text only).
    BinaryFrame,
}

impl ProtocolError {
    /// Whether the channel ends on this refusal (every one but a bad
    /// operation, which is answered and the channel goes on).
    pub fn ends_channel(&self) -> bool {
        !matches!(self, ProtocolError::BadOp { .. })
    }

    /// WebSocket close code for a control channel that ends on this error:
    /// 1009 (too big) for oversize messages, 1003 (unsupported data) for a
    /// binary frame, 1013 (try again later) when the table is full, 1008
    /// (policy) otherwise.
    pub fn close_code(&self) -> u16 {
        match self {
            ProtocolError::TooLarge { .. } => 1009,
            ProtocolError::BinaryFrame => 1003,
            ProtocolError::TooManyBackends(_) => 1013,
            _ => 1008,
        }
    }
}
