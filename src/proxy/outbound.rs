//! One direction's writer in the inspect relay: the forwarder of that
//! direction and whoever injects frames (pings, closes) share it, and
//! injected frames go out only at frame boundaries. Closes are bounded in
//! time, and a write cut short leaves the direction unusable.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use monoio::io::AsyncWriteRent;
use monoio::time::Instant;

use super::exchange::shutdown_quietly;
use super::session::WsSession;
use crate::proto::ws::close::write_close_frame;
use crate::proto::ws::frame::{write_frame, OpCode};
use crate::rt::io::{write_range, LocalLock};

/// How long writing a close frame of our own may take: a peer that stopped
/// reading gets its socket shut instead.
pub(super) const CLOSE_WRITE_BOUND: Duration = Duration::from_secs(1);

/// How one direction of the inspect relay ended (the forwarder's, or the
/// pinger's verdict on the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// A close frame was forwarded; the reply should follow.
    Closed,
    /// The side went away without a close frame.
    Vanished,
    /// Protocol error, ping timeout or write failure: closes already sent.
    Aborted,
}

/// Where a forwarded range ends in the stream of frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum At {
    /// Inside a frame: nothing may be written after it but the rest.
    MidFrame,
    /// Between frames of a fragmented data message: control frames may go
    /// next, data frames may not.
    InMessage,
    /// Between whole messages: anything may go next.
    Between,
}

/// One direction's writer, shared by the forwarder of that direction and by
/// whoever injects frames (pings, closes, published messages). Control
/// frames go out only at a frame boundary (otherwise they wait in
/// `pending`); injected data frames only between whole messages (they wait
/// in the session's outbox).
pub(super) struct Outbound<W> {
    pub(super) w: LocalLock<W>,
    pub(super) at_boundary: Cell<bool>,
    /// A data message written this way has begun and not ended.
    pub(super) in_message: Cell<bool>,
    /// Toward the client: the session whose injected data frames go this
    /// way.
    outbox: Option<Rc<WsSession>>,
    pub(super) pending: RefCell<Vec<u8>>,
    /// A close frame went (or is queued) this way: forwarded or our own.
    pub(super) close_sent: Cell<bool>,
    /// The close frame was our own: nothing forwarded may follow it.
    pub(super) injected_close: Cell<bool>,
    /// A close owed to this side (it broke the protocol), sent when the other
    /// side's close reply comes back, so that what the other side sent before
    /// that still arrives first (as it would without a balancer).
    pub(super) deferred: Cell<Option<u16>>,
    pub(super) mask: bool,
    /// A write is under way, or one was abandoned part way (its future
    /// dropped at a deadline): once abandoned, what is on the wire may end
    /// mid-frame, so nothing more may go this way.
    cut: Cell<bool>,
    /// Writes started and writes completed: with `cut`, they tell a writer
    /// stuck on one write (a peer that stopped reading) from a slow one.
    started: Cell<u64>,
    progress: Cell<u64>,
    /// Writes that carried frames of our own (pings, closes) completed,
    /// and when the last one did: a ping queued mid-frame is on the wire
    /// only from then, so its pong can be expected only from then.
    made_out: Cell<u64>,
    made_out_at: Cell<Instant>,
}

impl<W: AsyncWriteRent> Outbound<W> {
    pub(super) fn new(w: W, mask: bool) -> Self {
        Self {
            w: LocalLock::new(w),
            at_boundary: Cell::new(true),
            in_message: Cell::new(false),
            outbox: None,
            pending: RefCell::new(Vec::new()),
            close_sent: Cell::new(false),
            injected_close: Cell::new(false),
            deferred: Cell::new(None),
            mask,
            cut: Cell::new(false),
            started: Cell::new(0),
            progress: Cell::new(0),
            made_out: Cell::new(0),
            made_out_at: Cell::new(Instant::now()),
        }
    }

    /// Writes `buf[start..end]` whole, marking the direction cut until the
    /// write completes (so a write dropped part way leaves it marked).
    async fn write_tracked(
        &self,
        w: &mut W,
        buf: Vec<u8>,
        start: usize,
        end: usize,
    ) -> (bool, Vec<u8>) {
        self.cut.set(true);
        self.started.set(self.started.get().wrapping_add(1));
        // Boxed so that an idle session (waiting on reads) keeps no write
        // state: it would otherwise sit in the session's future.
        let (res, buf) = Box::pin(write_range(w, buf, start, end)).await;
        if res.is_ok() {
            self.cut.set(false);
            self.progress.set(self.progress.get().wrapping_add(1));
        }
        (res.is_ok(), buf)
    }

    /// Writes `out`, frames of our own (with whatever was ahead of them),
    /// and on success notes that and when they went out.
    async fn write_made(&self, w: &mut W, out: Vec<u8>) -> bool {
        let end = out.len();
        let ok = self.write_tracked(w, out, 0, end).await.0;
        if ok {
            self.made_out.set(self.made_out.get().wrapping_add(1));
            self.made_out_at.set(Instant::now());
        }
        ok
    }

    /// This direction carries `session`'s injected data frames.
    pub(super) fn with_outbox(mut self, session: Rc<WsSession>) -> Self {
        self.outbox = Some(session);
        self
    }

    /// Whether injected frames wait for this direction.
    #[inline]
    fn has_outbox(&self) -> bool {
        self.outbox.as_ref().is_some_and(|s| s.has_outbox())
    }

    /// Writes the session's waiting injected frames, if any (the caller
    /// holds the writer, and the stream is between whole messages).
    async fn flush_outbox(&self, w: &mut W) -> bool {
        let Some(s) = &self.outbox else {
            return true;
        };
        if !s.has_outbox() {
            return true;
        }
        let out = s.take_outbox();
        let n = out.len();
        if self.injected_close.get() || self.cut.get() {
            s.written(n);
            return !self.cut.get();
        }
        let ok = self.write_tracked(w, out, 0, n).await.0;
        s.written(n);
        ok
    }

    /// Writes the session's injected frames now if the writer is free and
    /// the stream is between whole messages; otherwise leaves them for
    /// whoever holds the writer (it flushes them when a message ends).
    /// False when the write failed.
    pub(super) async fn inject_outbox(&self) -> bool {
        let Some(mut w) = self.w.try_lock() else {
            return true;
        };
        if self.cut.get() {
            return false;
        }
        if !self.at_boundary.get() || self.in_message.get() {
            return true;
        }
        if !self.pending.borrow().is_empty() {
            let pending = std::mem::take(&mut *self.pending.borrow_mut());
            if !self.write_made(&mut w, pending).await {
                return false;
            }
        }
        self.flush_outbox(&mut w).await
    }

    pub(super) fn mask_key(&self) -> Option<[u8; 4]> {
        self.mask.then(|| fastrand::u32(..).to_ne_bytes())
    }

    /// Forwards `buf[start..end]`; `at` says where `end` is in the stream.
    /// Flushes injected frames waiting for that place: control frames at a
    /// frame boundary, data frames between messages.
    pub(super) async fn forward(
        &self,
        buf: Vec<u8>,
        start: usize,
        end: usize,
        at: At,
    ) -> (bool, Vec<u8>) {
        let boundary = at != At::MidFrame;
        let mut w = self.w.lock().await;
        if self.cut.get() {
            return (false, buf);
        }
        if self.injected_close.get() && self.at_boundary.get() && self.pending.borrow().is_empty() {
            // Our close frame is out: the rest of this direction is dropped.
            return (true, buf);
        }
        let (mut ok, buf) = self.write_tracked(&mut w, buf, start, end).await;
        self.at_boundary.set(boundary);
        self.in_message.set(at != At::Between);
        if ok && boundary && !self.pending.borrow().is_empty() {
            let pending = std::mem::take(&mut *self.pending.borrow_mut());
            ok = self.write_made(&mut w, pending).await;
        }
        if ok && at == At::Between && self.has_outbox() {
            // Boxed: only a session with published frames waiting needs
            // this state, not every forward's.
            ok = Box::pin(self.flush_outbox(&mut w)).await;
        }
        (ok, buf)
    }

    /// Sends a frame the balancer makes itself.
    pub(super) async fn inject(&self, opcode: OpCode, payload: &[u8]) -> bool {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        write_frame(&mut frame, true, opcode, self.mask_key(), payload);
        self.send_made(frame).await
    }

    /// Sends a close frame once; later calls do nothing. Gives up after
    /// [`CLOSE_WRITE_BOUND`] (false): a peer that does not read gets no
    /// more frames, and its socket is shut when the session ends.
    pub(super) async fn close(&self, code: u16, reason: &str) -> bool {
        if self.close_sent.replace(true) {
            return true;
        }
        self.injected_close.set(true);
        self.deferred.set(None);
        let mut frame = Vec::with_capacity(reason.len() + 16);
        write_close_frame(&mut frame, code, reason, self.mask_key());
        // Boxed: the timer entry is large and only closing sessions need it.
        Box::pin(monoio::time::timeout(
            CLOSE_WRITE_BOUND,
            self.send_made(frame),
        ))
        .await
        .unwrap_or(false)
    }

    /// Sends a frame the balancer made. Never waits for the writer: a
    /// forwarder stuck on a peer that stopped reading must not hold up the
    /// pings and closes that are there to end such a session. When the
    /// writer is busy or mid-frame, the frame joins `pending`, which goes
    /// out at the next frame boundary.
    pub(super) async fn send_made(&self, frame: Vec<u8>) -> bool {
        let w = match self.w.try_lock() {
            // Held by nobody, yet cut: a write was abandoned part way.
            Some(_) if self.cut.get() => return false,
            Some(w) if self.at_boundary.get() => w,
            _ => {
                self.pending.borrow_mut().extend_from_slice(&frame);
                return true;
            }
        };
        let mut w = w;
        let mut out = std::mem::take(&mut *self.pending.borrow_mut());
        out.extend_from_slice(&frame);
        let ok = self.write_made(&mut w, out).await;
        // Injected data that waited on this write goes now, between
        // messages (nobody else may be about to write it).
        if ok && !self.in_message.get() && self.has_outbox() {
            return Box::pin(self.flush_outbox(&mut w)).await;
        }
        ok
    }

    /// Fails this side with `code` once the other side's close reply is
    /// back (or at the end of the session, whichever comes first).
    pub(super) fn defer_close(&self, code: u16) {
        if !self.close_sent.get() && self.deferred.get().is_none() {
            self.deferred.set(Some(code));
        }
    }

    /// Sends a deferred close that is still owed.
    pub(super) async fn flush_deferred(&self) {
        if let Some(code) = self.deferred.take() {
            self.close(code, "protocol error").await;
        }
    }

    /// Whether a write is under way or was abandoned, and how many writes
    /// started and completed: the same state twice, the first one under
    /// way, means no write got anywhere in between.
    pub(super) fn write_state(&self) -> (bool, u64, u64) {
        (self.cut.get(), self.started.get(), self.progress.get())
    }

    /// How many writes carrying frames of our own completed, and when the
    /// last one did: a count that moved means every frame made before it
    /// moved is on the wire.
    pub(super) fn made_out(&self) -> (u64, Instant) {
        (self.made_out.get(), self.made_out_at.get())
    }

    /// Whether a write was abandoned part way (or failed): the writer must
    /// not be used again.
    pub(super) fn is_cut(&self) -> bool {
        self.cut.get()
    }

    /// At the end of a session (the forwarders gone): sends what still
    /// waits in `pending` if the stream is at a frame boundary, within
    /// [`CLOSE_WRITE_BOUND`], then shuts the writer when `shut` says so
    /// (and no write was abandoned).
    pub(super) async fn finish(&self, shut: bool) {
        let Some(mut w) = self.w.try_lock() else {
            // Only a forwarder holds the writer, and they are gone.
            return;
        };
        if !self.cut.get() && self.at_boundary.get() && !self.pending.borrow().is_empty() {
            let out = std::mem::take(&mut *self.pending.borrow_mut());
            let write = self.write_made(&mut w, out);
            let _ = Box::pin(monoio::time::timeout(CLOSE_WRITE_BOUND, write)).await;
        }
        if shut && !self.cut.get() {
            shutdown_quietly(&mut *w).await;
        }
    }
}
