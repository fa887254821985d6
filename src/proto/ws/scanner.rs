//! Relay-side frame scanner: walks a byte stream frame by frame so the proxy
//! can forward frames verbatim (no re-encoding), while enforcing the
//! fragmentation rules, size limits, UTF-8 of text and close payload validity.

use super::close::parse_close_payload;
use super::frame::{parse_header, FrameHeader, FrameLimits, OpCode};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;
use super::WsError;

/// Scanner settings, one scanner per direction.
#[derive(Clone, Copy, Debug)]
pub struct ScannerConfig {
    /// Per-frame limits (masking side, RSV bits, max frame payload).
    pub limits: FrameLimits,
    /// Largest data message across its fragments; 0 = unlimited.
    pub max_message: u64,
    /// Validate text messages (and only those) as UTF-8 across fragments.
    pub validate_utf8: bool,
}

/// One step of the scan; the caller forwards `buf[..len]` and drops it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    /// Header and/or payload bytes of one data frame (text, binary,
    /// continuation): forward verbatim. Never covers an incomplete header,
    /// may cover only part of a payload, never spans past the frame's end.
    Data {
        /// Bytes of `buf` this segment covers.
        len: usize,
    },
    /// A whole control frame is `buf[..len]` (payload still masked if
    /// `header.mask` is `Some`).
    Control {
        /// Bytes of the whole frame.
        len: usize,
        /// The frame's parsed header.
        header: FrameHeader,
    },
}

/// Bytes unmasked at a time into the stack scratch for UTF-8 validation.
const SCRATCH: usize = 256;

/// Frame-by-frame state machine over a stream of frames (see module docs).
#[derive(Clone, Debug)]
pub struct FrameScanner {
    cfg: ScannerConfig,
    /// Payload bytes still to come for the current data frame.
    remaining: u64,
    /// Offset within the current frame's payload (for the mask phase).
    payload_pos: u64,
    mask: Option<[u8; 4]>,
    frame_fin: bool,
    /// A data message has started and its final frame has not ended yet.
    in_message: bool,
    msg_len: u64,
    msg_text: bool,
    /// Frames of the current (or last) data message.
    msg_frames: u32,
    utf8: Utf8Validator,
    failed: Option<WsError>,
}

impl FrameScanner {
    /// A scanner at the start of a stream.
    pub fn new(cfg: ScannerConfig) -> Self {
        FrameScanner {
            cfg,
            remaining: 0,
            payload_pos: 0,
            mask: None,
            frame_fin: false,
            in_message: false,
            msg_len: 0,
            msg_text: false,
            msg_frames: 0,
            utf8: Utf8Validator::new(),
            failed: None,
        }
    }

    /// Scans the front of `buf` (the caller's unconsumed input). `Ok(None)`
    /// means more bytes are needed. After an error the scanner keeps
    /// returning that error.
    pub fn next(&mut self, buf: &[u8]) -> Result<Option<Segment>, WsError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.step(buf);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    /// Inside a fragmented or partially received data message.
    pub fn in_message(&self) -> bool {
        self.in_message
    }

    /// Inside a frame's payload: the next byte is not a frame header, so
    /// nothing may be injected into the stream here.
    pub fn in_frame(&self) -> bool {
        self.remaining > 0
    }

    /// The current or last data message: text (or binary), its payload
    /// length so far over all fragments, and whether it came in more than
    /// one frame. Read it when [`FrameScanner::in_message`] turns false.
    pub fn last_message(&self) -> (bool, u64, bool) {
        (self.msg_text, self.msg_len, self.msg_frames > 1)
    }

    /// The config this scanner was built with.
    pub fn config(&self) -> &ScannerConfig {
        &self.cfg
    }

    fn step(&mut self, buf: &[u8]) -> Result<Option<Segment>, WsError> {
        if self.remaining > 0 {
            let n = clamp(self.remaining, buf.len());
            if n == 0 {
                return Ok(None);
            }
            self.payload(&buf[..n])?;
            return Ok(Some(Segment::Data { len: n }));
        }
        let header = match parse_header(buf, &self.cfg.limits)? {
            Some(h) => h,
            None => return Ok(None),
        };
        let hl = usize::from(header.header_len);
        if header.opcode.is_control() {
            // Control payloads are <= 125 bytes, checked by parse_header.
            let len = hl + header.payload_len as usize;
            let Some(frame) = buf.get(..len) else {
                return Ok(None);
            };
            if header.opcode == OpCode::Close {
                let (p, n) = control_payload(frame, &header);
                parse_close_payload(&p[..n])?;
            }
            return Ok(Some(Segment::Control { len, header }));
        }
        match (header.opcode, self.in_message) {
            (OpCode::Continuation, false) => {
                return Err(WsError::Protocol("continuation frame without a message"))
            }
            (OpCode::Continuation, true) => {}
            (_, true) => {
                return Err(WsError::Protocol(
                    "new data frame inside a fragmented message",
                ))
            }
            (op, false) => {
                self.in_message = true;
                self.msg_len = 0;
                self.msg_frames = 0;
                self.msg_text = op == OpCode::Text;
                self.utf8.reset();
            }
        }
        self.msg_len = self.msg_len.saturating_add(header.payload_len);
        self.msg_frames = self.msg_frames.saturating_add(1);
        if self.cfg.max_message != 0 && self.msg_len > self.cfg.max_message {
            return Err(WsError::TooBig);
        }
        self.remaining = header.payload_len;
        self.payload_pos = 0;
        self.mask = header.mask;
        self.frame_fin = header.fin;
        let n = clamp(self.remaining, buf.len() - hl);
        self.payload(&buf[hl..hl + n])?;
        Ok(Some(Segment::Data { len: hl + n }))
    }

    /// Accounts for (and validates) payload bytes of the current data frame;
    /// ends the frame and possibly the message when the payload is complete.
    fn payload(&mut self, bytes: &[u8]) -> Result<(), WsError> {
        if self.msg_text && self.cfg.validate_utf8 && !bytes.is_empty() {
            match self.mask {
                None => self.utf8.feed(bytes)?,
                Some(key) => {
                    let mut scratch = [0u8; SCRATCH];
                    let mut pos = self.payload_pos as usize;
                    for chunk in bytes.chunks(SCRATCH) {
                        let s = &mut scratch[..chunk.len()];
                        s.copy_from_slice(chunk);
                        apply_mask(s, key, pos);
                        self.utf8.feed(s)?;
                        pos = pos.wrapping_add(chunk.len());
                    }
                }
            }
        }
        self.remaining -= bytes.len() as u64;
        self.payload_pos += bytes.len() as u64;
        if self.remaining == 0 && self.frame_fin {
            self.in_message = false;
            if self.msg_text && self.cfg.validate_utf8 {
                self.utf8.finish()?;
            }
        }
        Ok(())
    }
}

fn clamp(remaining: u64, avail: usize) -> usize {
    usize::try_from(remaining).map_or(avail, |r| r.min(avail))
}

/// Unmasked copy of a control frame's payload (at most 125 bytes), given the
/// whole frame's bytes. Bytes missing from `frame` are left out.
pub(crate) fn control_payload(frame: &[u8], header: &FrameHeader) -> ([u8; 125], usize) {
    let mut out = [0u8; 125];
    let start = usize::from(header.header_len).min(frame.len());
    let want = (header.payload_len.min(125)) as usize;
    let src = &frame[start..];
    let n = want.min(src.len());
    out[..n].copy_from_slice(&src[..n]);
    if let Some(key) = header.mask {
        apply_mask(&mut out[..n], key, 0);
    }
    (out, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ws::close::write_close_frame;
    use crate::proto::ws::frame::write_frame;

    const K: Option<[u8; 4]> = Some([0xA1, 0xB2, 0xC3, 0xD4]);

    fn cfg() -> ScannerConfig {
        ScannerConfig {
            limits: FrameLimits::server(1 << 20),
            max_message: 1000,
            validate_utf8: true,
        }
    }

    /// Feeds `bytes` whole; returns the segments or the first error.
    fn scan(s: &mut FrameScanner, bytes: &[u8]) -> Result<Vec<Segment>, WsError> {
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some(seg) = s.next(&bytes[pos..])? {
            let (Segment::Data { len } | Segment::Control { len, .. }) = seg;
            pos += len;
            out.push(seg);
        }
        Ok(out)
    }

    #[test]
    fn fragmented_text_with_ping_between() {
        let mut b = Vec::new();
        write_frame(&mut b, false, OpCode::Text, K, "héllo ".as_bytes());
        write_frame(&mut b, true, OpCode::Ping, K, b"p");
        write_frame(&mut b, true, OpCode::Continuation, K, "wörld".as_bytes());
        let mut s = FrameScanner::new(cfg());
        let segs = scan(&mut s, &b).unwrap();
        assert_eq!(segs.len(), 3);
        assert!(matches!(segs[0], Segment::Data { len: 13 }));
        let Segment::Control { len, header } = segs[1] else {
            panic!("{segs:?}")
        };
        assert_eq!(header.opcode, OpCode::Ping);
        let (p, n) = control_payload(&b[13..13 + len], &header);
        assert_eq!(&p[..n], b"p");
        assert!(!s.in_message());
    }

    #[test]
    fn partial_payload_then_rest() {
        let mut b = Vec::new();
        write_frame(&mut b, true, OpCode::Binary, K, &[1; 100]);
        let mut s = FrameScanner::new(cfg());
        assert_eq!(s.next(&b[..5]), Ok(None));
        assert_eq!(s.next(&b[..50]), Ok(Some(Segment::Data { len: 50 })));
        assert!(s.in_message());
        assert_eq!(s.next(&b[50..50]), Ok(None));
        assert_eq!(s.next(&b[50..]), Ok(Some(Segment::Data { len: 56 })));
        assert!(!s.in_message());
    }

    #[test]
    fn fragmentation_rules() {
        let mut b = Vec::new();
        write_frame(&mut b, true, OpCode::Continuation, K, b"x");
        let e = scan(&mut FrameScanner::new(cfg()), &b);
        assert_eq!(
            e,
            Err(WsError::Protocol("continuation frame without a message"))
        );
        b.clear();
        write_frame(&mut b, false, OpCode::Text, K, b"x");
        write_frame(&mut b, true, OpCode::Binary, K, b"y");
        let e = scan(&mut FrameScanner::new(cfg()), &b);
        assert_eq!(
            e,
            Err(WsError::Protocol(
                "new data frame inside a fragmented message"
            ))
        );
    }

    #[test]
    fn message_size_limit_across_fragments() {
        let mut b = Vec::new();
        write_frame(&mut b, false, OpCode::Binary, K, &[0; 600]);
        write_frame(&mut b, true, OpCode::Continuation, K, &[0; 401]);
        let mut s = FrameScanner::new(cfg());
        assert_eq!(scan(&mut s, &b), Err(WsError::TooBig));
        // The error sticks.
        assert_eq!(s.next(&b), Err(WsError::TooBig));
    }

    #[test]
    fn utf8_fail_fast_and_at_end() {
        let mut b = Vec::new();
        write_frame(&mut b, false, OpCode::Text, K, &[b'a', 0xC0, 0x80]);
        let mut s = FrameScanner::new(cfg());
        // Refused on the first frame even though the message is not over.
        assert_eq!(s.next(&b), Err(WsError::InvalidUtf8));
        b.clear();
        write_frame(&mut b, false, OpCode::Text, K, &[b'a', 0xE2]);
        write_frame(&mut b, true, OpCode::Continuation, K, &[0x82]);
        assert_eq!(
            scan(&mut FrameScanner::new(cfg()), &b),
            Err(WsError::InvalidUtf8)
        );
        // Validation off: forwarded as is. Binary is never validated.
        let off = ScannerConfig {
            validate_utf8: false,
            ..cfg()
        };
        assert!(scan(&mut FrameScanner::new(off), &b).is_ok());
        b.clear();
        write_frame(&mut b, true, OpCode::Binary, K, &[0xFF]);
        assert!(scan(&mut FrameScanner::new(cfg()), &b).is_ok());
    }

    #[test]
    fn close_payload_checked() {
        let mut b = Vec::new();
        write_close_frame(&mut b, 1000, "ok", K);
        assert!(scan(&mut FrameScanner::new(cfg()), &b).is_ok());
        for bad in [&[0x03][..], &[0x03, 0xED], &[0x03, 0xE8, 0xFF]] {
            b.clear();
            write_frame(&mut b, true, OpCode::Close, K, bad);
            assert!(scan(&mut FrameScanner::new(cfg()), &b).is_err(), "{bad:?}");
        }
    }
}
