//! Endpoint-side message reader: turns a byte stream into whole messages
//! (fragments reassembled and unmasked, control frames delivered as they
//! come), for the echo backend, the bench client and the agent.

use super::frame::{parse_header, OpCode};
use super::mask::apply_mask;
use super::scanner::{control_payload, FrameScanner, ScannerConfig, Segment};
use super::WsError;

/// A whole message: Text, Binary, Close, Ping or Pong, payload unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `Text` or `Binary` for a data message, or the control frame's opcode.
    pub opcode: OpCode,
    /// The whole payload, unmasked (fragments joined).
    pub payload: Vec<u8>,
}

/// Longest run of bytes the scanner may need whole: a control frame.
const STASH: usize = 14 + 125;

/// Reassembles messages from bytes fed in arbitrary pieces.
#[derive(Debug)]
pub struct MessageReader {
    scanner: FrameScanner,
    /// An incomplete header or control frame carried to the next feed.
    stash: [u8; STASH],
    stash_len: usize,
    /// Payload bytes still to come in the current data frame.
    remaining: u64,
    pos: u64,
    mask: Option<[u8; 4]>,
    fin: bool,
    opcode: OpCode,
    payload: Vec<u8>,
}

impl MessageReader {
    /// `cfg.limits.expect_masked` decides the role; text is always validated.
    pub fn new(cfg: ScannerConfig) -> Self {
        let cfg = ScannerConfig {
            validate_utf8: true,
            ..cfg
        };
        MessageReader {
            scanner: FrameScanner::new(cfg),
            stash: [0; STASH],
            stash_len: 0,
            remaining: 0,
            pos: 0,
            mask: None,
            fin: false,
            opcode: OpCode::Binary,
            payload: Vec::new(),
        }
    }

    /// Consumes bytes from the front of `buf`. Returns `(consumed, Some(msg))`
    /// when a message or control frame completed (call again with the rest),
    /// or `(buf.len(), None)` once everything was taken in.
    pub fn feed(&mut self, buf: &[u8]) -> Result<(usize, Option<Message>), WsError> {
        let mut consumed = 0;
        if self.stash_len > 0 {
            let old = self.stash_len;
            let add = (STASH - old).min(buf.len());
            self.stash[old..old + add].copy_from_slice(&buf[..add]);
            self.stash_len += add;
            let stash = self.stash;
            match self.scanner.next(&stash[..self.stash_len])? {
                None => return Ok((add, None)),
                Some(seg) => {
                    // The stash was incomplete alone, so the segment reaches
                    // past it into `buf`; the rest of `buf` is read directly.
                    let len = seg_len(&seg);
                    self.stash_len = 0;
                    consumed = len.saturating_sub(old);
                    if let Some(m) = self.segment(seg, &stash[..len])? {
                        return Ok((consumed, Some(m)));
                    }
                }
            }
        }
        loop {
            let rest = &buf[consumed..];
            if rest.is_empty() {
                return Ok((consumed, None));
            }
            match self.scanner.next(rest)? {
                None => {
                    // Only an incomplete header or control frame stalls the
                    // scanner, and both fit in the stash.
                    let n = rest.len().min(STASH);
                    self.stash[..n].copy_from_slice(&rest[..n]);
                    self.stash_len = n;
                    return Ok((consumed + n, None));
                }
                Some(seg) => {
                    let len = seg_len(&seg);
                    consumed += len;
                    if let Some(m) = self.segment(seg, &rest[..len])? {
                        return Ok((consumed, Some(m)));
                    }
                }
            }
        }
    }

    fn segment(&mut self, seg: Segment, bytes: &[u8]) -> Result<Option<Message>, WsError> {
        let mut data = bytes;
        match seg {
            Segment::Control { header, .. } => {
                let (p, n) = control_payload(bytes, &header);
                return Ok(Some(Message {
                    opcode: header.opcode,
                    payload: p[..n].to_vec(),
                }));
            }
            Segment::Data { .. } if self.remaining == 0 => {
                let limits = self.scanner.config().limits;
                let h = parse_header(bytes, &limits)?
                    .ok_or(WsError::Protocol("scanner and reader out of step"))?;
                self.remaining = h.payload_len;
                self.pos = 0;
                self.mask = h.mask;
                self.fin = h.fin;
                if h.opcode != OpCode::Continuation {
                    self.opcode = h.opcode;
                    self.payload.clear();
                }
                data = &bytes[usize::from(h.header_len)..];
            }
            Segment::Data { .. } => {}
        }
        let start = self.payload.len();
        self.payload.extend_from_slice(data);
        if let Some(key) = self.mask {
            apply_mask(&mut self.payload[start..], key, self.pos as usize);
        }
        self.pos += data.len() as u64;
        self.remaining -= data.len() as u64;
        if self.remaining == 0 && self.fin {
            let payload = std::mem::take(&mut self.payload);
            return Ok(Some(Message {
                opcode: self.opcode,
                payload,
            }));
        }
        Ok(None)
    }
}

fn seg_len(seg: &Segment) -> usize {
    match seg {
        Segment::Data { len } | Segment::Control { len, .. } => *len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ws::frame::{write_frame, FrameLimits};

    fn reader() -> MessageReader {
        MessageReader::new(ScannerConfig {
            limits: FrameLimits::client(1 << 20),
            max_message: 0,
            validate_utf8: false,
        })
    }

    fn all(r: &mut MessageReader, mut buf: &[u8]) -> Result<Vec<Message>, WsError> {
        let mut out = Vec::new();
        loop {
            let (n, m) = r.feed(buf)?;
            buf = &buf[n..];
            match m {
                Some(m) => out.push(m),
                None if buf.is_empty() => return Ok(out),
                None => panic!("None with {} bytes left", buf.len()),
            }
        }
    }

    #[test]
    fn reassembles_fragments_around_control() {
        let mut b = Vec::new();
        write_frame(&mut b, false, OpCode::Text, None, b"hel");
        write_frame(&mut b, true, OpCode::Pong, None, b"");
        write_frame(&mut b, false, OpCode::Continuation, None, b"lo ");
        write_frame(&mut b, true, OpCode::Continuation, None, "wörld".as_bytes());
        write_frame(&mut b, true, OpCode::Binary, None, &[0; 70_000]);
        let want = vec![
            Message {
                opcode: OpCode::Pong,
                payload: vec![],
            },
            Message {
                opcode: OpCode::Text,
                payload: "hello wörld".into(),
            },
            Message {
                opcode: OpCode::Binary,
                payload: vec![0; 70_000],
            },
        ];
        assert_eq!(all(&mut reader(), &b).unwrap(), want);
        // Byte by byte.
        let mut r = reader();
        let mut got = Vec::new();
        for byte in b.chunks(1) {
            let (n, m) = r.feed(byte).unwrap();
            assert_eq!(n, 1);
            got.extend(m);
        }
        assert_eq!(got, want);
    }

    #[test]
    fn text_always_validated_and_role_enforced() {
        let mut b = Vec::new();
        write_frame(&mut b, true, OpCode::Text, None, &[0xFF]);
        assert_eq!(all(&mut reader(), &b), Err(WsError::InvalidUtf8));
        b.clear();
        write_frame(&mut b, true, OpCode::Text, Some([1, 2, 3, 4]), b"hi");
        assert_eq!(
            all(&mut reader(), &b),
            Err(WsError::Protocol("masked server frame"))
        );
    }
}
