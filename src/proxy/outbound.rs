//! One direction's writer in the inspect relay: the forwarder of that
//! direction and whoever injects frames (pings, closes) share it, and
//! injected frames go out only at frame boundaries.

use std::cell::{Cell, RefCell};

use monoio::io::AsyncWriteRent;

use super::exchange::shutdown_quietly;
use super::io::{write_range, write_vec, LocalLock};
use crate::ws::close::write_close_frame;
use crate::ws::frame::{write_frame, OpCode};

/// One direction's writer, shared by the forwarder of that direction and by
/// whoever injects frames (pings, closes). Injection happens only at a frame
/// boundary; otherwise the frame waits in `pending` for the next boundary.
pub(super) struct Outbound<W> {
    pub(super) w: LocalLock<W>,
    pub(super) at_boundary: Cell<bool>,
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
}

impl<W: AsyncWriteRent> Outbound<W> {
    pub(super) fn new(w: W, mask: bool) -> Self {
        Self {
            w: LocalLock::new(w),
            at_boundary: Cell::new(true),
            pending: RefCell::new(Vec::new()),
            close_sent: Cell::new(false),
            injected_close: Cell::new(false),
            deferred: Cell::new(None),
            mask,
        }
    }

    pub(super) fn mask_key(&self) -> Option<[u8; 4]> {
        self.mask.then(|| fastrand::u32(..).to_ne_bytes())
    }

    /// Forwards `buf[start..end]`; `boundary` says whether `end` is a frame
    /// boundary. Flushes injected frames waiting for one.
    pub(super) async fn forward(
        &self,
        buf: Vec<u8>,
        start: usize,
        end: usize,
        boundary: bool,
    ) -> (bool, Vec<u8>) {
        let mut w = self.w.lock().await;
        if self.injected_close.get() && self.at_boundary.get() && self.pending.borrow().is_empty() {
            // Our close frame is out: the rest of this direction is dropped.
            return (true, buf);
        }
        // Writes are boxed so that an idle session (waiting on reads) keeps
        // no write state: it would otherwise sit in the session's future.
        let (res, buf) = Box::pin(write_range(&mut *w, buf, start, end)).await;
        self.at_boundary.set(boundary);
        let mut ok = res.is_ok();
        if ok && boundary && !self.pending.borrow().is_empty() {
            let pending = std::mem::take(&mut *self.pending.borrow_mut());
            ok = Box::pin(write_vec(&mut *w, pending)).await.0.is_ok();
        }
        (ok, buf)
    }

    /// Sends a frame the balancer makes itself.
    pub(super) async fn inject(&self, opcode: OpCode, payload: &[u8]) -> bool {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        write_frame(&mut frame, true, opcode, self.mask_key(), payload);
        self.send_made(frame).await
    }

    /// Sends a close frame once; later calls do nothing.
    pub(super) async fn close(&self, code: u16, reason: &str) -> bool {
        if self.close_sent.replace(true) {
            return true;
        }
        self.injected_close.set(true);
        self.deferred.set(None);
        let mut frame = Vec::with_capacity(reason.len() + 16);
        write_close_frame(&mut frame, code, reason, self.mask_key());
        self.send_made(frame).await
    }

    /// Sends a frame the balancer made. Never waits for the writer: a
    /// forwarder stuck on a peer that stopped reading must not hold up the
    /// pings and closes that are there to end such a session. When the
    /// writer is busy or mid-frame, the frame joins `pending`, which goes
    /// out at the next frame boundary.
    pub(super) async fn send_made(&self, frame: Vec<u8>) -> bool {
        let w = match self.w.try_lock() {
            Some(w) if self.at_boundary.get() => w,
            _ => {
                self.pending.borrow_mut().extend_from_slice(&frame);
                return true;
            }
        };
        let mut w = w;
        let mut out = std::mem::take(&mut *self.pending.borrow_mut());
        out.extend_from_slice(&frame);
        Box::pin(write_vec(&mut *w, out)).await.0.is_ok()
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

    pub(super) async fn shutdown(&self) {
        let mut w = self.w.lock().await;
        shutdown_quietly(&mut *w).await;
    }
}
