//! What a client connection turns into once its HTTP requests are done: a
//! WebSocket session to relay, or (with the fallback) an event stream.

use super::sse::{Opening, Resume};
use crate::pool::stats::ActiveGuard;
use crate::proxy::backend::BackendConn;
use crate::proxy::outcome::Switched;

/// A WebSocket upgrade the backend accepted: what the relay needs.
pub(crate) struct Upgrade {
    pub conn: BackendConn,
    /// What the backend's 101 said (extensions, subprotocol, channels).
    pub switched: Box<Switched>,
    /// Holds the backend's active count for the whole session.
    pub guard: ActiveGuard,
    /// The upgrade's request path (without the query).
    pub path: Box<str>,
    /// The backend's id.
    pub backend: std::sync::Arc<str>,
}

/// What the connection turns into after its HTTP requests.
pub(crate) enum Handoff {
    /// A WebSocket session to relay.
    Session(Upgrade),
    /// A fallback session the backend accepted: this connection becomes
    /// its event stream.
    Fallback(Upgrade, Box<Opening>),
    /// A fallback session's stream coming back (`Last-Event-ID`).
    Resume(Resume),
}
