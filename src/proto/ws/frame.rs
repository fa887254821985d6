//! RFC 6455 section 5.2 frame headers: incremental parse (with every limit
//! checked from the header alone) and encode. No allocation on the parse path.

use super::mask::apply_mask;
use super::WsError;

/// A frame opcode (RFC 6455 5.2); reserved opcodes are refused at parse time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    /// A continuation of a fragmented message (0x0).
    Continuation,
    /// A text message, UTF-8 (0x1).
    Text,
    /// A binary message (0x2).
    Binary,
    /// A close frame (0x8).
    Close,
    /// A ping (0x9).
    Ping,
    /// A pong (0xA).
    Pong,
}

impl OpCode {
    /// The opcode for a 4-bit wire value, or `None` for reserved values.
    pub fn from_u8(v: u8) -> Option<OpCode> {
        match v {
            0x0 => Some(OpCode::Continuation),
            0x1 => Some(OpCode::Text),
            0x2 => Some(OpCode::Binary),
            0x8 => Some(OpCode::Close),
            0x9 => Some(OpCode::Ping),
            0xA => Some(OpCode::Pong),
            _ => None,
        }
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, Ping and Pong are control frames.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A parsed frame header. `header_len` is 2..=14 bytes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// The last frame of its message.
    pub fin: bool,
    /// The three RSV bits as a number 0..=7 (RSV1 = 4, RSV2 = 2, RSV3 = 1).
    pub rsv: u8,
    /// The frame type.
    pub opcode: OpCode,
    /// The masking key (client-to-server frames carry one).
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
    /// Header length on the wire, in bytes (2..=14).
    pub header_len: u8,
}

/// Limits enforced by [`parse_header`] before any payload memory is reserved.
#[derive(Clone, Copy, Debug)]
pub struct FrameLimits {
    /// Largest payload accepted in one frame; larger frames fail with `TooBig`.
    /// `u64::MAX` means unlimited.
    pub max_payload: u64,
    /// Bitmask (same encoding as [`FrameHeader::rsv`]) of RSV bits that an
    /// extension negotiated; any other set bit is a protocol error.
    pub rsv_allowed: u8,
    /// `Some(true)`: server side, refuse unmasked frames; `Some(false)`: client
    /// side, refuse masked frames; `None`: accept both (relay of unknown role).
    pub expect_masked: Option<bool>,
}

impl FrameLimits {
    /// Limits for a server reading client frames (masking required).
    pub fn server(max_payload: u64) -> Self {
        FrameLimits {
            max_payload,
            rsv_allowed: 0,
            expect_masked: Some(true),
        }
    }

    /// Limits for a client reading server frames (masking refused).
    pub fn client(max_payload: u64) -> Self {
        FrameLimits {
            max_payload,
            rsv_allowed: 0,
            expect_masked: Some(false),
        }
    }
}

impl Default for FrameLimits {
    /// 16 MiB per frame, no extensions, either masking.
    fn default() -> Self {
        FrameLimits {
            max_payload: 16 << 20,
            rsv_allowed: 0,
            expect_masked: None,
        }
    }
}

/// Parses a frame header from the front of `buf`.
///
/// `Ok(None)` means more bytes are needed (nothing is consumed). Refusals are
/// reported as soon as the bytes that prove them are present: reserved opcode,
/// RSV bits not negotiated, fragmented or oversized (> 125) control frame,
/// wrong masking for the side, 64-bit length with its top bit set (all
/// `Protocol`), and a payload longer than `limits.max_payload` (`TooBig`).
/// Non-minimal length encodings are accepted.
pub fn parse_header(buf: &[u8], limits: &FrameLimits) -> Result<Option<FrameHeader>, WsError> {
    let (b0, b1) = match buf {
        [b0, b1, ..] => (*b0, *b1),
        _ => return Ok(None),
    };
    let fin = b0 & 0x80 != 0;
    let rsv = (b0 >> 4) & 0x07;
    let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(WsError::Protocol("reserved opcode"))?;
    if rsv & !limits.rsv_allowed != 0 {
        return Err(WsError::Protocol("reserved bits set"));
    }
    let masked = b1 & 0x80 != 0;
    let len7 = b1 & 0x7F;
    if opcode.is_control() {
        if !fin {
            return Err(WsError::Protocol("fragmented control frame"));
        }
        if len7 > 125 {
            return Err(WsError::Protocol("control frame payload over 125 bytes"));
        }
    }
    match limits.expect_masked {
        Some(true) if !masked => return Err(WsError::Protocol("unmasked client frame")),
        Some(false) if masked => return Err(WsError::Protocol("masked server frame")),
        _ => {}
    }
    let (payload_len, mut pos) = match len7 {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4usize),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                let len = u64::from_be_bytes(a);
                if len >> 63 != 0 {
                    return Err(WsError::Protocol("64-bit length with top bit set"));
                }
                (len, 10usize)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2usize),
    };
    if payload_len > limits.max_payload {
        return Err(WsError::TooBig);
    }
    let mask = if masked {
        match buf.get(pos..pos + 4) {
            Some(k) => {
                pos += 4;
                Some([k[0], k[1], k[2], k[3]])
            }
            None => return Ok(None),
        }
    } else {
        None
    };
    Ok(Some(FrameHeader {
        fin,
        rsv,
        opcode,
        mask,
        payload_len,
        header_len: pos as u8,
    }))
}

/// Writes a frame header (RSV bits clear, minimal length encoding) into `dst`
/// and returns its length (2..=14).
pub fn encode_header(
    dst: &mut [u8; 14],
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload_len: u64,
) -> usize {
    dst[0] = (u8::from(fin) << 7) | opcode.as_u8();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut pos = if payload_len < 126 {
        dst[1] = mask_bit | payload_len as u8;
        2
    } else if payload_len <= u64::from(u16::MAX) {
        dst[1] = mask_bit | 126;
        dst[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        4
    } else {
        dst[1] = mask_bit | 127;
        dst[2..10].copy_from_slice(&payload_len.to_be_bytes());
        10
    };
    if let Some(k) = mask {
        dst[pos..pos + 4].copy_from_slice(&k);
        pos += 4;
    }
    pos
}

/// Appends a whole frame (header, then payload masked with `mask` if given).
pub fn write_frame(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) {
    let mut hdr = [0u8; 14];
    let n = encode_header(&mut hdr, fin, opcode, mask, payload.len() as u64);
    out.reserve(n + payload.len());
    out.extend_from_slice(&hdr[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(k) = mask {
        apply_mask(&mut out[start..], k, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANY: FrameLimits = FrameLimits {
        max_payload: u64::MAX,
        rsv_allowed: 0,
        expect_masked: None,
    };

    fn frame(fin: bool, op: OpCode, mask: Option<[u8; 4]>, len: u64) -> Vec<u8> {
        let mut h = [0u8; 14];
        let n = encode_header(&mut h, fin, op, mask, len);
        h[..n].to_vec()
    }

    #[test]
    fn opcodes_round_trip() {
        for v in 0u8..16 {
            match OpCode::from_u8(v) {
                Some(op) => assert_eq!(op.as_u8(), v),
                None => assert!(matches!(v, 3..=7 | 0xB..=0xF)),
            }
        }
        assert!(OpCode::Ping.is_control() && !OpCode::Text.is_control());
    }

    #[test]
    fn every_length_encoding_parses() {
        for (len, hl) in [
            (0u64, 2u8),
            (125, 2),
            (126, 4),
            (65535, 4),
            (65536, 10),
            (1 << 40, 10),
        ] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let b = frame(true, OpCode::Binary, mask, len);
                let h = parse_header(&b, &ANY).unwrap().unwrap();
                let want = hl + if mask.is_some() { 4 } else { 0 };
                assert_eq!(
                    (h.payload_len, h.header_len, h.mask, h.fin),
                    (len, want, mask, true)
                );
                assert_eq!(b.len(), want as usize);
            }
        }
    }

    #[test]
    fn non_minimal_lengths_accepted() {
        let b = [0x82, 126, 0, 5];
        assert_eq!(parse_header(&b, &ANY).unwrap().unwrap().payload_len, 5);
        let b = [0x82, 127, 0, 0, 0, 0, 0, 0, 0, 5];
        assert_eq!(parse_header(&b, &ANY).unwrap().unwrap().payload_len, 5);
    }

    #[test]
    fn every_truncation_needs_more() {
        for len in [5u64, 300, 70000] {
            let b = frame(false, OpCode::Text, Some([9, 8, 7, 6]), len);
            for cut in 0..b.len() {
                assert_eq!(
                    parse_header(&b[..cut], &ANY),
                    Ok(None),
                    "len {len} cut {cut}"
                );
            }
        }
    }

    #[test]
    fn refusals() {
        let p = |b: &[u8], l: &FrameLimits| parse_header(b, l);
        assert_eq!(
            p(&[0x83, 0], &ANY),
            Err(WsError::Protocol("reserved opcode"))
        );
        assert_eq!(
            p(&[0x8B, 0], &ANY),
            Err(WsError::Protocol("reserved opcode"))
        );
        assert_eq!(
            p(&[0xC2, 0], &ANY),
            Err(WsError::Protocol("reserved bits set"))
        );
        let rsv1 = FrameLimits {
            rsv_allowed: 4,
            ..ANY
        };
        assert_eq!(p(&[0xC2, 0], &rsv1).unwrap().unwrap().rsv, 4);
        assert!(p(&[0xA2, 0], &rsv1).is_err());
        assert_eq!(
            p(&[0x09, 0], &ANY),
            Err(WsError::Protocol("fragmented control frame"))
        );
        assert!(p(&[0x89, 126, 0, 126], &ANY).is_err());
        assert!(p(&[0x88, 126], &ANY).is_err());
        assert!(p(&[0x89, 125], &ANY).unwrap().is_some());
        let server = FrameLimits::server(u64::MAX);
        let client = FrameLimits::client(u64::MAX);
        assert_eq!(
            p(&[0x82, 0], &server),
            Err(WsError::Protocol("unmasked client frame"))
        );
        assert_eq!(
            p(&[0x82, 0x80], &client),
            Err(WsError::Protocol("masked server frame"))
        );
        assert!(p(&[0x82, 0x80, 1, 2, 3, 4], &server).unwrap().is_some());
        let top = [0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            p(&top, &ANY),
            Err(WsError::Protocol("64-bit length with top bit set"))
        );
        let small = FrameLimits {
            max_payload: 100,
            ..ANY
        };
        assert_eq!(p(&[0x82, 101], &small), Err(WsError::TooBig));
        assert!(p(&[0x82, 100], &small).unwrap().is_some());
        // TooBig is reported before the mask key arrives (nothing reserved).
        assert_eq!(
            p(&[0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0], &small),
            Err(WsError::TooBig)
        );
    }

    #[test]
    fn write_frame_masks_payload() {
        let mut out = Vec::new();
        write_frame(&mut out, true, OpCode::Text, Some([1, 2, 3, 4]), b"abcde");
        assert_eq!(&out[..6], &[0x81, 0x85, 1, 2, 3, 4]);
        assert_eq!(
            &out[6..],
            &[b'a' ^ 1, b'b' ^ 2, b'c' ^ 3, b'd' ^ 4, b'e' ^ 1]
        );
        out.clear();
        write_frame(&mut out, false, OpCode::Binary, None, &[7; 200]);
        assert_eq!(&out[..4], &[0x02, 126, 0, 200]);
        assert_eq!(out.len(), 204);
    }
}
