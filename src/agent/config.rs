//! What the agent registers and where: [`AgentConfig`], its checks (done
//! once, before any thread starts), and the `register` message it sends.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::error::AgentError;
use super::url::BalancerUrl;
use crate::pool::registry::protocol::{
    resolve_binding, validate_id, validate_weight, ClientMessage, ProtocolError, MAX_BINDINGS,
};

/// What the agent calls for each event a balancer sends about this
/// backend's sessions: the balancer URL (as configured) and the event
/// (`{"event": "session_open", "ts_ms": ..., "id": ..., ...}`, or
/// `{"event": "lost", "lost": N}` when the balancer dropped some because
/// the agent fell behind). It runs on the agent's thread: keep it short,
/// never let it panic, and do not wait on an operation's answer in it
/// ([`crate::agent::PendingOp::wait`] refuses there; `submit` is fine).
#[derive(Clone)]
pub struct OnEvent(pub Arc<EventFn>);

/// The callback behind [`OnEvent`]: balancer URL, event.
pub type EventFn = dyn Fn(&str, &Value) + Send + Sync;

impl OnEvent {
    /// Wraps a callback.
    pub fn new(f: impl Fn(&str, &Value) + Send + Sync + 'static) -> Self {
        OnEvent(Arc::new(f))
    }
}

impl std::fmt::Debug for OnEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnEvent(..)")
    }
}

/// How to register one backend with one or more balancers.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The balancers' control channels (one session each).
    pub balancers: Vec<BalancerUrl>,
    /// Sent as `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// The backend id; see [`generate_id`] for a default.
    pub id: String,
    /// Where the balancer reaches the backend: `http://IP:PORT`, `ws://...`,
    /// or `":PORT"` (the balancer fills in the address it sees us from).
    pub bindings: Vec<String>,
    /// 1 to 1000.
    pub weight: u32,
    /// Free-form JSON the balancer shows in its admin API.
    pub metadata: Option<Value>,
    /// Base delay before reconnecting after a disconnect.
    pub auto_restart: Duration,
    /// Largest delay between attempts (also the delay after a refusal).
    pub max_backoff: Duration,
    /// Time allowed for TCP connect + TLS + WebSocket handshake + the
    /// `registered` answer.
    pub connect_timeout: Duration,
    /// PEM CA bundle to trust for `wss://` balancers (default: system).
    pub tls_ca: Option<PathBuf>,
    /// Skip certificate verification for `wss://` (tests only).
    pub tls_insecure: bool,
    /// Called for each event about this backend's sessions; when set, the
    /// agent asks every balancer for them after each registration.
    pub on_event: Option<OnEvent>,
    /// Ask for message metadata events too (one per message: costly).
    pub events_messages: bool,
    /// How long an operation (publish, send, ...) waits for the
    /// balancers' answers (a ping's own wait comes on top).
    pub op_timeout: Duration,
}

impl AgentConfig {
    /// A configuration with the defaults: generated id, weight 1, restart
    /// after 2 s, backoff capped at 30 s, 10 s connect timeout, no events,
    /// operations answered within 15 s.
    pub fn new(balancers: Vec<BalancerUrl>, bindings: Vec<String>) -> Self {
        AgentConfig {
            balancers,
            token: None,
            id: generate_id(),
            bindings,
            weight: 1,
            metadata: None,
            auto_restart: Duration::from_secs(2),
            max_backoff: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            tls_ca: None,
            tls_insecure: false,
            on_event: None,
            events_messages: false,
            op_timeout: Duration::from_secs(15),
        }
    }

    /// Checks everything the balancer would refuse, so that a typo fails at
    /// start-up instead of in a retry loop: id, weight, bindings (syntax;
    /// port-only forms allowed), token (no CR/LF), at least one balancer.
    pub fn validate(&self) -> Result<(), AgentError> {
        if self.balancers.is_empty() {
            return Err(AgentError::NoBalancers);
        }
        validate_id(&self.id)?;
        validate_weight(u64::from(self.weight))?;
        if self.bindings.is_empty() {
            return Err(ProtocolError::EmptyBindings.into());
        }
        if self.bindings.len() > MAX_BINDINGS {
            return Err(ProtocolError::TooManyBindings(self.bindings.len()).into());
        }
        for b in &self.bindings {
            // The peer address only matters for filling in port-only forms.
            resolve_binding(b, IpAddr::V4(Ipv4Addr::LOCALHOST))?;
        }
        if let Some(t) = &self.token {
            if t.is_empty() {
                return Err(AgentError::BadToken("empty"));
            }
            if t.bytes().any(|c| c.is_ascii_control()) {
                return Err(AgentError::BadToken(
                    "control characters (CR/LF) are not allowed",
                ));
            }
        }
        if self.connect_timeout.is_zero() {
            return Err(AgentError::BadDuration(
                "connect timeout must be above zero",
            ));
        }
        if self.op_timeout.is_zero() {
            return Err(AgentError::BadDuration(
                "operation timeout must be above zero",
            ));
        }
        Ok(())
    }

    /// The `register` message for this configuration, in protocol
    /// version `v`.
    pub(crate) fn register_message(&self, v: u32) -> ClientMessage {
        ClientMessage::Register {
            v,
            id: self.id.clone(),
            bindings: self.bindings.clone(),
            weight: self.weight,
            metadata: self.metadata.clone(),
        }
    }
}

/// A fresh backend id: `backend-` and 16 random hex digits.
pub fn generate_id() -> String {
    format!("backend-{:016x}", fastrand::u64(..))
}

/// The port-only binding for a backend listening on `port`.
pub fn port_binding(port: u16) -> String {
    format!(":{port}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::registry::protocol::{parse_client_message, PROTOCOL_VERSION};

    fn cfg() -> AgentConfig {
        let lb = BalancerUrl::parse("ws://127.0.0.1:8080").expect("url");
        AgentConfig::new(vec![lb], vec![port_binding(9001)])
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = generate_id();
        assert!(a.starts_with("backend-") && a.len() == 24, "{a}");
        assert!(validate_id(&a).is_ok());
        assert_ne!(a, generate_id());
    }

    #[test]
    fn register_message_is_what_the_balancer_parses() {
        let mut c = cfg();
        c.id = "api-1".into();
        c.weight = 7;
        c.bindings.push("http://10.0.0.5:9002".into());
        c.metadata = Some(serde_json::json!({"zone": "a"}));
        let json = c.register_message(PROTOCOL_VERSION).to_json();
        let v: Value = serde_json::from_str(&json).expect("json");
        assert_eq!(v["type"], "register");
        assert_eq!(v["v"], 2);
        assert_eq!(v["id"], "api-1");
        assert_eq!(v["weight"], 7);
        assert_eq!(
            v["bindings"],
            serde_json::json!([":9001", "http://10.0.0.5:9002"])
        );
        assert_eq!(v["metadata"]["zone"], "a");
        assert_eq!(
            parse_client_message(&json, 64 * 1024).expect("parses"),
            c.register_message(PROTOCOL_VERSION)
        );
        // The fallback for a balancer that only speaks v1.
        let v1 = c.register_message(1).to_json();
        assert_eq!(
            parse_client_message(&v1, 64 * 1024).expect("parses"),
            c.register_message(1)
        );
        c.metadata = None;
        assert!(!c.register_message(2).to_json().contains("metadata"));
    }

    #[test]
    fn validation() {
        assert!(cfg().validate().is_ok());
        let mut c = cfg();
        c.balancers.clear();
        assert!(matches!(c.validate(), Err(AgentError::NoBalancers)));
        let mut c = cfg();
        c.id = "has space".into();
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.weight = 0;
        assert!(c.validate().is_err());
        c.weight = 1001;
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.bindings.clear();
        assert!(c.validate().is_err());
        c.bindings = vec!["ftp://x".into()];
        assert!(c.validate().is_err());
        c.bindings = vec![":0".into()];
        assert!(c.validate().is_err());
        c.bindings = (1..=17).map(port_binding).collect();
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.token = Some("a\r\nX-Evil: 1".into());
        assert!(matches!(c.validate(), Err(AgentError::BadToken(_))));
        c.token = Some(String::new());
        assert!(c.validate().is_err());
        c.token = Some("s3cret".into());
        assert!(c.validate().is_ok());
        c.op_timeout = Duration::ZERO;
        assert!(matches!(c.validate(), Err(AgentError::BadDuration(_))));
    }
}
