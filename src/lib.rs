//! wslb: a thread-per-core WebSocket and HTTP/1.1 load balancer.
//!
//! The crate is both the `wslb` binary and a library for embedding: build a
//! [`Balancer`], give it [`Hooks`] to see and steer what passes through, and
//! start it. Layers, from the bottom up (each imports only from the layers
//! below it; `tests/layers.rs` checks it): `proto` (codecs), `hub`
//! (connection ids, messaging operations, events), `pool` (backends,
//! picks, registry table), `tls`, `config`, `rt` (runtime
//! helpers), `hooks`, `proxy` (the per-connection flow), `server` (workers
//! and listeners), `admin` and `agent`, and this face (`balancer`).

#![warn(missing_docs)]

mod admin;
pub mod agent;
mod balancer;
pub mod config;
pub mod hooks;
pub mod hub;
pub mod pool;
pub mod proto;
mod proxy;
pub mod rt;
mod server;
pub mod tls;

pub use admin::api_url as admin_api_url;
pub use balancer::{Balancer, Builder, Error, Handle};
pub use config::{ServeConfig, WsMode};
pub use hooks::{
    BackendEvent, Binding, Decision, Direction, HeaderEdits, Hooks, Message, MessageMode, Reply,
    Request, Session, SessionEnd, Verdict,
};
pub use hub::events::{ClosedBy, Event, EventKind, Way};
pub use pool::{Algorithm, StickyMode};
pub use server::{
    BackendChanges, ReloadError, ReloadSource, ReloadSummary, Reweighted, ServeError, UpgradeError,
};
