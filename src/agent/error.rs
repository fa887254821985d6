//! The agent's typed errors: configuration problems found before anything
//! runs ([`AgentError`]) and the reasons one control session ended
//! ([`SessionError`]), each saying whether the balancer refused us (retry at
//! the capped backoff) or the link failed (retry sooner).

use crate::pool::registry::protocol::ProtocolError;
use crate::proto::ws::handshake::HandshakeError;
use crate::proto::ws::WsError;

/// A configuration the agent cannot run with.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("bad balancer URL {url:?}: {reason}")]
    /// A balancer URL is not `ws://HOST:PORT[/path]` or `wss://...`.
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    #[error("no balancer to register with (give at least one --lb / --register URL)")]
    /// The configuration names no balancer.
    NoBalancers,
    #[error("invalid registration: {0}")]
    /// The id, weight, bindings or metadata break the control-channel rules.
    Protocol(#[from] ProtocolError),
    #[error("bad token: {0}")]
    /// The token cannot be sent as a bearer token.
    BadToken(&'static str),
    #[error("bad duration: {0}")]
    /// A delay or interval is zero or out of range.
    BadDuration(&'static str),
    #[error("TLS setup for wss:// balancers failed: {0}")]
    /// The TLS client configuration for `wss://` balancers could not be built.
    Tls(#[from] crate::tls::TlsError),
    #[error("bad metadata JSON: {0}")]
    /// The metadata is not a JSON object.
    BadMetadata(String),
    #[error("cannot start the agent thread: {0}")]
    /// The agent thread could not be started.
    Spawn(#[source] std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    /// Signal handlers could not be installed (the `wslb agent` command).
    Signals(#[source] std::io::Error),
    #[error("bad operation: {0}")]
    /// An operation every balancer would refuse (checked before sending).
    BadRequest(#[source] crate::hub::OpError),
    #[error("the operation is {len} bytes as a control message, over the limit of {max}")]
    /// An operation too large for the control channel.
    TooLarge {
        /// Its size as a control message.
        len: usize,
        /// The limit.
        max: usize,
    },
    #[error("waiting for an operation's answers on the agent's own thread (an on_event callback) would never end; submit it and wait elsewhere")]
    /// A blocking operation (or [`crate::agent::PendingOp::wait`]) called
    /// on the agent's thread, from an `on_event` callback.
    OnAgentThread,
}

/// Why one control session (connect, handshake, register, heartbeats) ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum SessionError {
    #[error("cannot resolve {host:?}: {detail}")]
    Resolve { host: String, detail: String },
    #[error("connect failed: {0}")]
    Connect(#[source] std::io::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] std::io::Error),
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error(
        "balancer refused access (HTTP {0}); check --token and the balancer's --register-token"
    )]
    Unauthorized(u16),
    #[error("balancer answered HTTP {status} instead of 101: {reason}")]
    HttpStatus { status: u16, reason: String },
    #[error("bad handshake answer: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("balancer refused the registration: {0}")]
    Refused(String),
    #[error("the balancer speaks protocol v1 only; registering again with \"v\": 1")]
    OldBalancer,
    #[error("balancer closed the channel (code {code}{})", fmt_reason(.reason))]
    Closed { code: u16, reason: String },
    #[error("balancer ended the connection")]
    Eof,
    #[error("balancer stopped answering (nothing heard for {0:?})")]
    Silent(std::time::Duration),
    #[error("websocket error from the balancer: {0}")]
    Ws(#[from] WsError),
    #[error("unexpected message from the balancer: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

fn fmt_reason(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(", {reason:?}")
    }
}

impl SessionError {
    /// The balancer said no (bad token, refused registration, policy close):
    /// retrying soon would give the same answer, so the watchdog waits the
    /// capped backoff (the operator may fix the token or the balancer).
    pub(super) fn is_refusal(&self) -> bool {
        match self {
            SessionError::Unauthorized(_) | SessionError::Refused(_) => true,
            SessionError::HttpStatus { status, .. } => (400..500).contains(status),
            SessionError::Closed { code, .. } => *code == 1008,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_told_apart_from_failures() {
        assert!(SessionError::Unauthorized(401).is_refusal());
        assert!(SessionError::Refused("bad id".into()).is_refusal());
        assert!(SessionError::HttpStatus {
            status: 403,
            reason: "Forbidden".into()
        }
        .is_refusal());
        assert!(SessionError::Closed {
            code: 1008,
            reason: String::new()
        }
        .is_refusal());
        assert!(!SessionError::HttpStatus {
            status: 503,
            reason: String::new()
        }
        .is_refusal());
        assert!(!SessionError::Eof.is_refusal());
        assert!(!SessionError::Closed {
            code: 1001,
            reason: "shutdown".into()
        }
        .is_refusal());
        let e = SessionError::Closed {
            code: 1001,
            reason: "bye".into(),
        };
        assert_eq!(
            e.to_string(),
            "balancer closed the channel (code 1001, \"bye\")"
        );
    }
}
