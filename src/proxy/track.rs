//! What a relay notes about its session as it goes: the ending (the
//! close code and who caused it) and the bytes and data messages each way.
//! Read by the hooks (`on_disconnect`), the events and the admin API's
//! listing. Plain integers in cells: nothing here allocates.

use std::cell::Cell;

use crate::hub::events::ClosedBy;
use crate::proto::ws::frame::FrameHeader;
use crate::proto::ws::scanner::control_payload;

/// The close code reported when a side went away without a close frame.
pub(crate) const LOST: u16 = 1006;
/// The close code reported for a close frame that carried none.
pub(crate) const NO_CODE: u16 = 1005;

/// What a relay notes about its session: the first ending seen (a close
/// frame received from either side, a protocol error or a command that
/// made the balancer close, a side lost) and who caused it, and the bytes
/// and data messages each way after the upgrade.
#[derive(Debug, Default)]
pub(crate) struct Track {
    code: Cell<Option<(u16, ClosedBy)>>,
    bytes_in: Cell<u64>,
    bytes_out: Cell<u64>,
    messages_in: Cell<u64>,
    messages_out: Cell<u64>,
}

impl Track {
    /// Notes `code`, caused by `by`, as the session's ending, unless one
    /// was noted first.
    pub(crate) fn note(&self, code: u16, by: ClosedBy) {
        if self.code.get().is_none() {
            self.code.set(Some((code, by)));
        }
    }

    /// Counts `n` bytes read from the client (`up`) or from the backend.
    pub(crate) fn count(&self, up: bool, n: usize) {
        let c = if up { &self.bytes_in } else { &self.bytes_out };
        c.set(c.get().wrapping_add(n as u64));
    }

    /// Counts a whole data message from the client (`up`) or toward it.
    pub(crate) fn message(&self, up: bool) {
        let c = if up {
            &self.messages_in
        } else {
            &self.messages_out
        };
        c.set(c.get().wrapping_add(1));
    }

    /// Counts a message the balancer queued for the client (publish, send).
    pub(crate) fn count_injected(&self) {
        self.message(false);
    }

    /// The code that ended the session ([`LOST`] when none was noted).
    pub(crate) fn code(&self) -> u16 {
        self.code.get().map_or(LOST, |(c, _)| c)
    }

    /// Who ended the session (the balancer when nothing was noted: it ended
    /// the relay).
    pub(crate) fn closed_by(&self) -> ClosedBy {
        self.code.get().map_or(ClosedBy::Balancer, |(_, by)| by)
    }

    /// Bytes read from the client and from the backend.
    pub(crate) fn bytes(&self) -> (u64, u64) {
        (self.bytes_in.get(), self.bytes_out.get())
    }

    /// Data messages from the client and toward it.
    pub(crate) fn messages(&self) -> (u64, u64) {
        (self.messages_in.get(), self.messages_out.get())
    }
}

/// The party whose side a direction reads: the client (`up`) or the
/// backend.
pub(crate) fn source(up: bool) -> ClosedBy {
    if up {
        ClosedBy::Client
    } else {
        ClosedBy::Backend
    }
}

/// The code a whole close frame carries ([`NO_CODE`] when it has none).
pub(crate) fn close_code_of(frame: &[u8], header: &FrameHeader) -> u16 {
    let (p, n) = control_payload(frame, header);
    if n >= 2 {
        u16::from_be_bytes([p[0], p[1]])
    } else {
        NO_CODE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ws::close::write_close_frame;
    use crate::proto::ws::frame::{parse_header, write_frame, FrameLimits, OpCode};

    #[test]
    fn the_first_ending_noted_wins_and_lost_is_the_default() {
        let t = Track::default();
        assert_eq!(t.code(), LOST);
        t.note(1000, ClosedBy::Backend);
        t.note(1002, ClosedBy::Client);
        assert_eq!(t.code(), 1000);
        assert_eq!(t.closed_by(), ClosedBy::Backend);
        t.count(true, 5);
        t.count(false, 7);
        t.count(true, 1);
        assert_eq!(t.bytes(), (6, 7));
    }

    #[test]
    fn close_codes_are_read_from_masked_and_empty_frames() {
        let mut f = Vec::new();
        write_close_frame(&mut f, 4001, "bye", Some([9, 8, 7, 6]));
        let h = parse_header(&f, &FrameLimits::default()).unwrap().unwrap();
        assert_eq!(close_code_of(&f, &h), 4001);
        f.clear();
        write_frame(&mut f, true, OpCode::Close, None, b"");
        let h = parse_header(&f, &FrameLimits::default()).unwrap().unwrap();
        assert_eq!(close_code_of(&f, &h), NO_CODE);
    }
}
