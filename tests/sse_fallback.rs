//! The SSE fallback (issue 13) on the real binary over loopback: a GET with
//! `Accept: text/event-stream` opens a backend WebSocket session on the
//! client's behalf and streams its messages as events; `POST`/`DELETE
//! /_lb/sse/<token>` talk back; bad input gets its status; the message hub
//! sees the session like any other; a dropped stream resumes from
//! `Last-Event-ID` with nothing lost or repeated (a hundred cuts), until the
//! resume timeout or the buffer runs out; the token stays out of the log.

mod common;
#[path = "sse_fallback/flow.rs"]
mod flow;
#[path = "sse_fallback/hub.rs"]
mod hub;
#[path = "sse_fallback/resume.rs"]
mod resume;
#[path = "sse_fallback/session.rs"]
mod session;
#[path = "sse_fallback/support.rs"]
mod support;
