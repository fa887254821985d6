//! The backend-side agent: registers a backend with one or more balancers
//! over the WebSocket control channel (`/_lb/register`) and keeps it
//! registered forever: heartbeats with the backend's load, drain/resume,
//! and an auto-restart watchdog that reconnects with capped, jittered
//! exponential backoff after any disconnect or refusal.
//!
//! ```no_run
//! use std::sync::{atomic::AtomicU32, Arc};
//! use wslb::agent::{spawn, AgentConfig, BalancerUrl};
//!
//! let lb = BalancerUrl::parse("ws://10.0.0.1:8080").unwrap();
//! let mut cfg = AgentConfig::new(vec![lb], vec![":9001".into()]);
//! cfg.token = Some("s3cret".into());
//! let load = Arc::new(AtomicU32::new(0)); // the app's connection count
//! let agent = spawn(cfg, load).unwrap();
//! // ... serve ...
//! agent.stop(std::time::Duration::from_secs(3)); // deregister, close
//! ```
//!
//! The agent runs on its own thread with its own monoio runtime (one task
//! per balancer), so it never competes with the application's workers.
//!
//! With protocol v2 balancers the handle also reaches the clients: publish,
//! send, ping, close, subscribe and unsubscribe go to every balancer (each
//! delivers to its own clients) and return each one's counts:
//!
//! ```no_run
//! # fn demo(agent: &wslb::agent::AgentHandle) -> Result<(), wslb::agent::AgentError> {
//! use wslb::hub::{Filter, Payload};
//! let room = Filter { channel: Some("room:42".into()), ..Filter::default() };
//! let sent = agent.publish(Payload::Text("hello".into()), &room)?;
//! println!("{} clients got it", sent.total.delivered);
//! # Ok(()) }
//! ```
//!
//! Set [`AgentConfig::on_event`] to hear about this backend's sessions
//! (opened, closed; messages with `events_messages`).

mod answers;
mod backoff;
mod calls;
mod config;
mod conn;
mod ctx;
mod error;
mod handle;
mod requests;
mod session;
mod url;
mod watchdog;

use std::cell::Cell;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

pub use crate::pool::registry::error::ProtocolError;
pub use answers::{BalancerReply, Fanout, OpFailure};
pub use calls::PendingOp;
pub use config::{generate_id, port_binding, AgentConfig, EventFn, OnEvent};
pub use error::AgentError;
pub use handle::{AgentHandle, BalancerStatus, LinkState, LoadGuard};
pub use url::{BalancerUrl, DEFAULT_PATH};

use crate::pool::registry::protocol::PROTOCOL_VERSION;
use ctx::Ctx;
use handle::Shared;

/// Validates `cfg` and starts the agent thread. `load` is reported in every
/// heartbeat (the backend's current connection count).
pub fn spawn(cfg: AgentConfig, load: Arc<AtomicU32>) -> Result<AgentHandle, AgentError> {
    cfg.validate()?;
    let tls = if cfg.balancers.iter().any(|b| b.tls) {
        let config = crate::tls::build_client_config(cfg.tls_ca.as_deref(), cfg.tls_insecure)?;
        Some(crate::tls::connector(config))
    } else {
        None
    };
    let urls = cfg.balancers.iter().map(|b| b.to_string()).collect();
    let shared = Arc::new(Shared::new(cfg.id.clone(), load, urls, cfg.op_timeout));
    let cfg = Arc::new(cfg);
    let theirs = shared.clone();
    let thread = std::thread::Builder::new()
        .name("wslb-agent".into())
        .spawn(move || run_thread(theirs, cfg, tls))
        .map_err(AgentError::Spawn)?;
    Ok(AgentHandle {
        shared,
        thread: Some(thread),
    })
}

fn run_thread(
    shared: Arc<Shared>,
    cfg: Arc<AgentConfig>,
    tls: Option<monoio_rustls::TlsConnector>,
) {
    shared.set_thread();
    let last = shared.clone();
    run_runtime(shared, cfg, tls);
    last.mark_all_stopped();
}

fn run_runtime(
    shared: Arc<Shared>,
    cfg: Arc<AgentConfig>,
    tls: Option<monoio_rustls::TlsConnector>,
) {
    let main = async move {
        let mut tasks = Vec::new();
        for (index, url) in cfg.balancers.iter().enumerate() {
            let ctx = Ctx {
                shared: shared.clone(),
                index,
                url: url.clone(),
                cfg: cfg.clone(),
                tls: tls.clone(),
                version: Cell::new(PROTOCOL_VERSION),
            };
            tasks.push(monoio::spawn(watchdog::watch(ctx)));
        }
        for t in tasks {
            t.await;
        }
        tracing::info!(id = %shared.id, "agent: stopped");
    };
    let force_legacy = std::env::var("WSLB_DRIVER").is_ok_and(|v| v == "legacy");
    if !force_legacy {
        match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(256)
            .enable_timer()
            .build()
        {
            Ok(mut rt) => {
                rt.block_on(main);
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "agent: io_uring unavailable, using the legacy driver")
            }
        }
    }
    match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(mut rt) => rt.block_on(main),
        Err(e) => tracing::error!(error = %e, "agent: cannot start a runtime; not registering"),
    }
}
