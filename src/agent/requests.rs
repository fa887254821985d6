//! Messaging through the balancers: [`AgentHandle`]'s publish, send, ping,
//! close, subscribe and unsubscribe. Each goes to every balancer the agent
//! is registered with (each one reaches only its own clients, so a client
//! gets a publish once) and waits, blocking the caller's thread up to the
//! agent's `op_timeout`, for every balancer's `result`.

use std::time::Duration;

use serde_json::Value;

use super::answers::Fanout;
use super::calls::PendingOp;
use super::error::AgentError;
use super::handle::AgentHandle;
use crate::hub::ops::{op_from_value, OpError, DEFAULT_PING_TIMEOUT_MS, MAX_PING_TIMEOUT_MS};
use crate::hub::{CloseTarget, Filter, Payload, Request};
use crate::pool::registry::protocol::{op_json, MAX_V2_CONTROL_MESSAGE};

impl AgentHandle {
    /// Sends `req` to every registered balancer without waiting; the
    /// answers gather in the returned [`PendingOp`]. The request is checked
    /// first as the balancers will check it (except the message size limit,
    /// which is theirs): what every one of them would refuse is an error
    /// here.
    pub fn submit(&self, req: &Request) -> Result<PendingOp, AgentError> {
        let body = req.to_body();
        let value = Value::Object(body);
        op_from_value(req.verb(), &value, 0).map_err(AgentError::BadRequest)?;
        let Value::Object(body) = value else {
            return Err(AgentError::BadRequest(OpError::BadJson(
                "not an object".into(),
            )));
        };
        let name = req.verb();
        let len = op_json(name, Some(&Value::from(u64::MAX)), &body).len();
        if len > MAX_V2_CONTROL_MESSAGE {
            return Err(AgentError::TooLarge {
                len,
                max: MAX_V2_CONTROL_MESSAGE,
            });
        }
        let pongs_wait = match req {
            Request::Ping { timeout_ms, .. } => Duration::from_millis(
                timeout_ms
                    .unwrap_or(DEFAULT_PING_TIMEOUT_MS)
                    .min(MAX_PING_TIMEOUT_MS),
            ),
            _ => Duration::ZERO,
        };
        let timeout = self.shared.op_timeout + pongs_wait;
        let single = req.names_one_session();
        Ok(PendingOp::start(&self.shared, name, body, single, timeout))
    }

    /// Sends `req` to every registered balancer and waits for their
    /// answers. Refused (before anything is sent) on the agent's own thread,
    /// where the answers could not arrive while it waits: an `on_event`
    /// callback uses [`AgentHandle::submit`] instead.
    pub fn request(&self, req: &Request) -> Result<Fanout, AgentError> {
        if self.shared.on_agent_thread() {
            return Err(AgentError::OnAgentThread);
        }
        self.submit(req)?.wait()
    }

    /// Delivers `msg` to every session `filter` picks, on every balancer.
    pub fn publish(&self, msg: Payload, filter: &Filter) -> Result<Fanout, AgentError> {
        self.request(&Request::Publish {
            msg,
            filter: filter.clone(),
        })
    }

    /// Delivers `msg` to one session (whichever balancer holds it).
    pub fn send(&self, conn_id: &str, msg: Payload) -> Result<Fanout, AgentError> {
        self.request(&Request::Send {
            id: conn_id.to_string(),
            msg,
        })
    }

    /// Adds `channels` to one session's channels.
    pub fn subscribe(&self, conn_id: &str, channels: &[&str]) -> Result<Fanout, AgentError> {
        self.request(&Request::Subscribe {
            id: conn_id.to_string(),
            channels: channels.iter().map(|c| c.to_string()).collect(),
        })
    }

    /// Removes `channels` from one session's channels.
    pub fn unsubscribe(&self, conn_id: &str, channels: &[&str]) -> Result<Fanout, AgentError> {
        self.request(&Request::Unsubscribe {
            id: conn_id.to_string(),
            channels: channels.iter().map(|c| c.to_string()).collect(),
        })
    }

    /// Pings every session `filter` picks and counts the pongs that come
    /// back within `wait` (1 ms to 60 s): `total.pongs`.
    pub fn ping(&self, filter: &Filter, wait: Duration) -> Result<Fanout, AgentError> {
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        self.request(&Request::Ping {
            filter: filter.clone(),
            timeout_ms: Some(ms.clamp(1, MAX_PING_TIMEOUT_MS)),
        })
    }

    /// Closes the sessions `target` names with `code` and `reason`.
    pub fn close(
        &self,
        target: &CloseTarget,
        code: u16,
        reason: &str,
    ) -> Result<Fanout, AgentError> {
        self.request(&Request::Close {
            target: target.clone(),
            code: Some(code),
            reason: reason.to_string(),
        })
    }
}
