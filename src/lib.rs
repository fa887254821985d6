//! wslb: a thread-per-core WebSocket and HTTP/1.1 load balancer.
//!
//! The crate is both the `wslb` binary and a library for embedding: the
//! codecs (`http`, `ws`) are plain functions over byte buffers, the I/O lives
//! in `server` and `proxy`, and the pool logic in `balance` and `registry`.

pub mod admin;
pub mod agent;
pub mod balance;
pub mod bench;
pub mod cli;
pub mod config;
pub mod demo;
pub mod echo;
pub mod http;
pub mod proxy;
pub mod registry;
pub mod server;
pub mod tls;
pub mod ws;
