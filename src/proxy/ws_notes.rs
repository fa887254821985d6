//! What one direction of the inspect relay notes about its session as it
//! forwards (endings, data messages, message events), and where the
//! scanner stands in the stream (what may be written after it).

use super::env::Env;
use super::outbound::At;
use super::pool_events::{emit_event, wants_messages};
use super::session::WsSession;
use super::track::{source, Track};
use crate::hub::events::{EventKind, Way};
use crate::proto::ws::scanner::FrameScanner;

/// What a direction notes about its session as it forwards: the session's
/// track (endings, messages), which way it reads, and where message events
/// go.
pub(super) struct Notes<'a> {
    /// Where message events go (None in unit tests of the relay alone).
    pub(super) env: Option<&'a Env>,
    pub(super) session: &'a WsSession,
    /// Reads the client (its messages count in, and its close is the
    /// client's).
    pub(super) up: bool,
}

impl Notes<'_> {
    /// The session's track.
    pub(super) fn track(&self) -> &Track {
        &self.session.track
    }

    /// Notes a close frame (or loss) from this direction's source.
    pub(super) fn note_source(&self, code: u16) {
        self.session.track.note(code, source(self.up));
    }

    /// A data message from this direction's source has just ended.
    #[inline]
    pub(super) fn message_ended(&self, scanner: &FrameScanner) {
        self.session.track.message(self.up);
        if let Some(env) = self.env {
            if wants_messages(env) {
                self.report_message(env, scanner);
            }
        }
    }

    /// Reports the message that just ended (someone listens).
    #[cold]
    fn report_message(&self, env: &Env, scanner: &FrameScanner) {
        let (text, length, fragmented) = scanner.last_message();
        let kind = EventKind::Message {
            id: env.router.ids.format(self.session.local),
            backend: self.session.backend.to_string(),
            direction: if self.up { Way::In } else { Way::Out },
            opcode: if text { "text" } else { "binary" },
            length,
            fragmented,
        };
        emit_event(&env.hooks, &env.events, || kind);
    }
}

/// Where the scanner stands in the stream, for what may be written after.
pub(super) fn at(scanner: &FrameScanner) -> At {
    if scanner.in_frame() {
        At::MidFrame
    } else if scanner.in_message() {
        At::InMessage
    } else {
        At::Between
    }
}
