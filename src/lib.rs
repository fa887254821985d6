//! wslb: a thread-per-core WebSocket and HTTP/1.1 load balancer.
//!
//! The crate is both the `wslb` binary and a library for embedding. Layers,
//! from the bottom up (each imports only from the layers below it):
//! `proto` (codecs), `pool` (backends, picks, registry table), `tls`,
//! `config`, `rt` (runtime helpers), `proxy` (the per-connection flow),
//! `server` (workers and listeners), `admin` and `agent`.

pub mod admin;
pub mod agent;
pub mod config;
pub mod pool;
pub mod proto;
pub mod proxy;
pub mod rt;
pub mod server;
pub mod tls;
