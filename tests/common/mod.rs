//! Helpers shared by the integration tests (`mod common;` in a test file).
#![allow(dead_code)]

pub mod admin;
pub mod cdp;
pub mod certs;
pub mod client;
pub mod hooks;
pub mod proc;
pub mod sockets;
pub mod sse;
pub mod ws_client;
pub mod ws_session;
