//! Inspect mode with `on_message` (a message mode other than `Off`): one
//! direction's frames are taken apart instead of forwarded byte for byte.
//! Data frames are unmasked and gathered (a whole message in
//! `MessageMode::Whole`, one frame in `Fragments`), shown to the hook, and
//! then written again as frames of the destination's kind (masked toward the
//! backend, unmasked toward the client), dropped, or answered with a reply to
//! the sender. Control frames pass through as they came. Every write is whole
//! frames, and a reply never lands inside a fragmented message going the
//! same way: it waits in that direction's [`Lane`] for the message to end.

use std::cell::{Cell, RefCell};

use monoio::io::AsyncWriteRent;

use super::outbound::{At, Outbound};
use super::track::close_code_of;
use super::ws_hooks::Live;
use super::ws_notes::Notes;
use super::ws_pinger::PingState;
use crate::hooks::{Direction, Message, MessageMode, Reply, Verdict};
use crate::proto::ws::frame::{encode_header, parse_header, write_frame, OpCode};
use crate::proto::ws::mask::apply_mask;
use crate::proto::ws::scanner::{FrameScanner, Segment};
use crate::proto::ws::WsError;
use crate::rt::io::ReadBuf;

/// A gathered payload larger than this is freed after use rather than kept
/// for the next message.
const KEEP: usize = 64 * 1024;

/// One direction's data-message state, shared by its forwarder and by the
/// other direction's (which sends replies this way).
#[derive(Default)]
pub(super) struct Lane {
    /// A data message written this way has begun and not ended.
    open: Cell<bool>,
    /// Replies (whole frames) waiting for that message to end.
    held: RefCell<Vec<u8>>,
}

/// Takes one direction's frames apart for `on_message` (see module docs).
pub(super) struct Inspector<'a> {
    live: &'a Live,
    mode: MessageMode,
    direction: Direction,
    /// Toward the destination (this direction).
    lane: &'a Lane,
    /// Toward the source (the replies' way).
    back: &'a Lane,
    // The frame being read.
    in_frame: bool,
    remaining: u64,
    pos: u64,
    mask: Option<[u8; 4]>,
    fin: bool,
    rsv: u8,
    opcode: OpCode,
    // The message being read.
    text: bool,
    msg_rsv: u8,
    first: bool,
    /// `Fragments`: the first frame's verdict was Forward (later frames
    /// follow it).
    forwarding: bool,
    payload: Vec<u8>,
    /// Frames for the destination, written once per read.
    out: Vec<u8>,
    /// Whether a message is open on the destination at the end of `out`.
    open: bool,
    /// Reply frames for the source.
    replies: Vec<u8>,
}

impl<'a> Inspector<'a> {
    pub(super) fn new(
        live: &'a Live,
        mode: MessageMode,
        direction: Direction,
        lane: &'a Lane,
        back: &'a Lane,
    ) -> Self {
        Inspector {
            live,
            mode,
            direction,
            lane,
            back,
            in_frame: false,
            remaining: 0,
            pos: 0,
            mask: None,
            fin: false,
            rsv: 0,
            opcode: OpCode::Binary,
            text: false,
            msg_rsv: 0,
            first: true,
            forwarding: true,
            payload: Vec::new(),
            out: Vec::new(),
            open: false,
            replies: Vec::new(),
        }
    }

    /// Scans what is buffered in `buf`, shows data to the hook and writes
    /// the result to `dst` (replies to `src`); returns, like the plain
    /// forwarder, whether a close frame went through and whether writing to
    /// `dst` went well, or the protocol error.
    pub(super) async fn forward<D: AsyncWriteRent, S: AsyncWriteRent>(
        &mut self,
        buf: &mut ReadBuf,
        scanner: &mut FrameScanner,
        dst: &Outbound<D>,
        src: &Outbound<S>,
        ping: Option<&PingState>,
        notes: &Notes<'_>,
    ) -> Result<(bool, bool), WsError> {
        let masks = (dst.mask, src.mask);
        let mut cursor = buf.pos;
        let mut closed = false;
        let mut ok = true;
        let scanned = loop {
            let seg = match scanner.next(&buf.buf[cursor..]) {
                Ok(Some(seg)) => seg,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            match seg {
                Segment::Data { len } => {
                    let bytes = &buf.buf[cursor..cursor + len];
                    cursor += len;
                    if let Err(e) = self.data(bytes, scanner, masks) {
                        break Err(e);
                    }
                    if !scanner.in_message() {
                        notes.message_ended(scanner);
                    }
                }
                Segment::Control { len, header } => {
                    let frame = &buf.buf[cursor..cursor + len];
                    cursor += len;
                    if header.opcode == OpCode::Pong
                        && ping.is_some_and(|p| p.answered_by(frame, &header))
                    {
                        continue;
                    }
                    if header.opcode != OpCode::Close {
                        self.out.extend_from_slice(frame);
                        continue;
                    }
                    notes.note_source(close_code_of(frame, &header));
                    closed = true;
                    if let Some(code) = dst.deferred.take() {
                        // The reply to our close of the other side: the
                        // offender gets its own close instead.
                        ok &= self.flush(dst).await;
                        ok &= dst.close(code, "protocol error").await;
                        break Ok(());
                    }
                    self.out.extend_from_slice(frame);
                    dst.close_sent.set(true);
                    break Ok(());
                }
            }
        };
        ok &= self.flush(dst).await;
        self.send_replies(src).await;
        buf.consume(cursor - buf.pos);
        scanned.map(|()| (closed, ok))
    }

    /// Writes the frames gathered for the destination.
    async fn flush<D: AsyncWriteRent>(&mut self, dst: &Outbound<D>) -> bool {
        // Set before the write: a reply made meanwhile must know whether
        // this write leaves a message open.
        self.lane.open.set(self.open);
        if self.out.is_empty() {
            return true;
        }
        let out = std::mem::take(&mut self.out);
        let end = out.len();
        // Only whole frames are written here.
        let at = if self.open {
            At::InMessage
        } else {
            At::Between
        };
        let (ok, mut out) = dst.forward(out, 0, end, at).await;
        out.clear();
        if out.capacity() <= KEEP {
            self.out = out;
        }
        ok
    }

    /// Sends the replies made during this read back to the source, or
    /// holds them while a message is open that way.
    async fn send_replies<S: AsyncWriteRent>(&mut self, src: &Outbound<S>) {
        if self.replies.is_empty() {
            return;
        }
        if src.close_sent.get() {
            self.replies.clear();
        } else if self.back.open.get() {
            self.back.held.borrow_mut().append(&mut self.replies);
        } else {
            src.send_made(std::mem::take(&mut self.replies)).await;
        }
    }

    /// Takes in the bytes of one data segment (a whole header first).
    fn data(
        &mut self,
        bytes: &[u8],
        scanner: &FrameScanner,
        masks: (bool, bool),
    ) -> Result<(), WsError> {
        let mut data = bytes;
        if !self.in_frame {
            let h = parse_header(bytes, &scanner.config().limits)?
                .ok_or(WsError::Protocol("scanner and inspector out of step"))?;
            self.in_frame = true;
            self.remaining = h.payload_len;
            self.pos = 0;
            self.mask = h.mask;
            self.fin = h.fin;
            self.rsv = h.rsv;
            self.opcode = h.opcode;
            if h.opcode != OpCode::Continuation {
                self.text = h.opcode == OpCode::Text;
                self.msg_rsv = h.rsv;
                self.first = true;
                self.payload.clear();
            }
            data = &bytes[usize::from(h.header_len)..];
        }
        let start = self.payload.len();
        self.payload.extend_from_slice(data);
        if let Some(key) = self.mask {
            apply_mask(&mut self.payload[start..], key, self.pos as usize);
        }
        self.pos += data.len() as u64;
        self.remaining = self.remaining.saturating_sub(data.len() as u64);
        if self.remaining > 0 {
            return Ok(());
        }
        self.in_frame = false;
        let whole = self.mode == MessageMode::Whole;
        if !whole || self.fin {
            self.deliver(whole, masks);
            self.first = false;
            self.payload.clear();
            if self.payload.capacity() > KEEP {
                self.payload = Vec::new();
            }
        }
        Ok(())
    }

    /// Shows the gathered payload to the hook and acts on its verdict.
    fn deliver(&mut self, whole: bool, (dst_masks, src_masks): (bool, bool)) {
        let live = self.live;
        let msg = Message {
            direction: self.direction,
            text: self.text,
            payload: &self.payload,
            fin: whole || self.fin,
            first: whole || self.first,
        };
        let asked = live.on_message(&msg);
        let verdict = if whole || self.first {
            self.forwarding = asked == Verdict::Forward;
            asked
        } else if self.forwarding {
            Verdict::Forward
        } else {
            Verdict::Handled
        };
        match verdict {
            Verdict::Forward => {
                let (fin, opcode, rsv) = if whole {
                    let op = if self.text {
                        OpCode::Text
                    } else {
                        OpCode::Binary
                    };
                    (true, op, self.msg_rsv)
                } else {
                    (self.fin, self.opcode, self.rsv)
                };
                let key = dst_masks.then(|| fastrand::u32(..).to_ne_bytes());
                encode(&mut self.out, fin, opcode, rsv, key, &self.payload);
                self.open = !fin;
                if fin {
                    // Replies the other way made while this message was
                    // open go right after its end.
                    self.out.append(&mut self.lane.held.borrow_mut());
                }
            }
            Verdict::Handled => {}
            Verdict::Reply(reply) => {
                let (op, bytes) = match &reply {
                    Reply::Text(t) => (OpCode::Text, t.as_bytes()),
                    Reply::Binary(b) => (OpCode::Binary, b.as_slice()),
                };
                let key = src_masks.then(|| fastrand::u32(..).to_ne_bytes());
                write_frame(&mut self.replies, true, op, key, bytes);
            }
        }
    }
}

/// Appends one frame with the RSV bits `rsv` (the payload masked with
/// `mask` when given).
fn encode(out: &mut Vec<u8>, fin: bool, op: OpCode, rsv: u8, mask: Option<[u8; 4]>, p: &[u8]) {
    let mut hdr = [0u8; 14];
    let n = encode_header(&mut hdr, fin, op, mask, p.len() as u64);
    hdr[0] |= (rsv & 0b111) << 4;
    out.reserve(n + p.len());
    out.extend_from_slice(&hdr[..n]);
    let start = out.len();
    out.extend_from_slice(p);
    if let Some(k) = mask {
        apply_mask(&mut out[start..], k, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ws::frame::FrameLimits;

    #[test]
    fn re_encoded_frames_keep_their_rsv_bits_and_mask_their_payload() {
        let limits = FrameLimits {
            rsv_allowed: 0b111,
            ..FrameLimits::default()
        };
        let mut out = Vec::new();
        encode(
            &mut out,
            true,
            OpCode::Text,
            0b100,
            Some([1, 2, 3, 4]),
            b"hey",
        );
        let h = parse_header(&out, &limits).unwrap().unwrap();
        assert_eq!((h.fin, h.rsv, h.opcode), (true, 0b100, OpCode::Text));
        assert_eq!(h.mask, Some([1, 2, 3, 4]));
        let mut p = out[usize::from(h.header_len)..].to_vec();
        apply_mask(&mut p, [1, 2, 3, 4], 0);
        assert_eq!(p, b"hey");
        out.clear();
        encode(&mut out, false, OpCode::Continuation, 0, None, b"x");
        assert_eq!(out, [0x00, 0x01, b'x']);
    }
}
