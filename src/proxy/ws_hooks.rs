//! The WebSocket session hooks' plumbing: the session as the hooks see it
//! (`on_connect` when the relay starts, `on_disconnect` when it ends, with
//! what the session's track noted). Without hooks nothing here allocates
//! or calls out.

use std::sync::Arc;
use std::time::Instant;

use super::env::Env;
use super::session::WsSession;
use super::track::Track;
use crate::hooks::{Hooks, Message, Session, SessionEnd, Verdict};

/// A session the hooks were told about: `on_connect` has been called,
/// `on_disconnect` is owed.
pub(crate) struct Live {
    hooks: Arc<dyn Hooks>,
    session: Session,
    started: Instant,
}

impl Live {
    /// Calls `on_connect` for a session just established, when there are
    /// hooks.
    pub(crate) fn begin(env: &Env, ws: &WsSession) -> Option<Box<Live>> {
        let hooks = env.hooks.as_ref()?.clone();
        let session = Session {
            id: ws.local,
            conn: env.router.ids.format(ws.local),
            worker: env.worker,
            peer: ws.peer,
            path: ws.path.to_string(),
            backend: ws.backend.to_string(),
        };
        hooks.on_connect(&session);
        // Boxed: without hooks the session's task holds one null pointer.
        Some(Box::new(Live {
            hooks,
            session,
            started: Instant::now(),
        }))
    }

    /// Asks `on_message` about a message (or frame).
    pub(crate) fn on_message(&self, msg: &Message<'_>) -> Verdict {
        self.hooks.on_message(&self.session, msg)
    }

    /// Calls `on_disconnect` with what `track` noted.
    pub(crate) fn end(self, track: &Track) {
        let (bytes_in, bytes_out) = track.bytes();
        let end = SessionEnd {
            code: track.code(),
            duration: self.started.elapsed(),
            bytes_in,
            bytes_out,
        };
        self.hooks.on_disconnect(&self.session, &end);
    }
}
