//! A WebSocket upgrade the backend accepted: what the relay (or the
//! fallback's session) takes over from the HTTP path.

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
