//! The wire codecs: HTTP/1.1 (`http`: request and response heads, bodies,
//! chunked framing, replies) and RFC 6455 (`ws`: handshake, frames, masking,
//! close codes, UTF-8), and the Server-Sent Events the WebSocket fallback
//! writes (`sse`). Plain functions over byte buffers: no runtime, no I/O.

pub mod http;
pub mod sse;
pub mod ws;
