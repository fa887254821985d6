//! Why a control message or a binding was refused, and the close code the
//! channel gets for it.

use std::net::IpAddr;

/// Why a control message or binding was refused. All of these come from the
/// backend side and are not worth retrying unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("message is {len} bytes, more than the {max} allowed")]
    TooLarge { len: usize, max: usize },
    #[error("message is not valid JSON: {0}")]
    BadJson(String),
    #[error("message must be a JSON object with a string \"type\" field")]
    MissingType,
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("bad {kind:?} message: {reason}")]
    BadMessage { kind: String, reason: String },
    #[error("unsupported protocol version {0} (this balancer speaks \"v\": 1)")]
    UnsupportedVersion(String),
    #[error("bad backend id {id:?}: {reason}")]
    BadId { id: String, reason: &'static str },
    #[error("register needs at least one binding")]
    EmptyBindings,
    #[error("too many bindings ({0}; at most 16)")]
    TooManyBindings(usize),
    #[error("bad binding {binding:?}: {reason}")]
    BadBinding {
        binding: String,
        reason: &'static str,
    },
    #[error("binding {binding:?} points at {addr}, outside the networks this balancer allows (--allow-backend-cidr {allowed})")]
    NotAllowed {
        binding: String,
        addr: IpAddr,
        allowed: String,
    },
    #[error("binding {0:?}: TLS to backends is not supported yet, use http:// or ws://")]
    TlsUnsupported(String),
    #[error("weight {0} out of range (1 to 1000)")]
    BadWeight(u64),
    #[error("backend id {0:?} is already a static backend")]
    IdInUse(String),
    #[error(
        "backend id {0:?} is held by a live control channel from another address; \
         it can be taken over once that channel ends or its heartbeat expires"
    )]
    IdHeldElsewhere(String),
    #[error("the balancer is full: at most {0} backends (--max-backends), static ones included")]
    TooManyBackends(usize),
    #[error("binary frames are not supported on the control channel; send JSON text")]
    BinaryFrame,
}

impl ProtocolError {
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
