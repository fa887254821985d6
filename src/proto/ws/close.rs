//! Close frames (RFC 6455 5.5.1, 7.4): code validity, payload parse, writing.

use super::frame::{write_frame, OpCode};
use super::WsError;

/// Whether `code` may appear in a close frame on the wire: 1000-1003,
/// 1007-1014 (RFC 6455 plus IANA-registered 1012-1014), 3000-4999.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Parses a close frame's unmasked payload: empty, or a valid code followed by
/// a UTF-8 reason. A 1-byte payload is a protocol error.
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<(u16, &str)>, WsError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WsError::Protocol("close payload of one byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(WsError::InvalidCloseCode(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| WsError::InvalidUtf8)?;
            Ok(Some((code, reason)))
        }
    }
}

/// Appends a close frame. The reason is cut (at a char boundary) to fit the
/// 125-byte control payload. Code 1005 ("no status") writes an empty payload.
pub fn write_close_frame(out: &mut Vec<u8>, code: u16, reason: &str, mask: Option<[u8; 4]>) {
    if code == 1005 {
        write_frame(out, true, OpCode::Close, mask, &[]);
        return;
    }
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = [0u8; 125];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + cut].copy_from_slice(&reason.as_bytes()[..cut]);
    write_frame(out, true, OpCode::Close, mask, &payload[..2 + cut]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ws::frame::{parse_header, FrameLimits};
    use crate::proto::ws::mask::apply_mask;

    #[test]
    fn code_validity() {
        for c in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999,
        ] {
            assert!(is_valid_close_code(c), "{c}");
        }
        for c in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_close_code(c), "{c}");
        }
    }

    #[test]
    fn payload_parse() {
        assert_eq!(parse_close_payload(&[]), Ok(None));
        assert_eq!(
            parse_close_payload(&[3]),
            Err(WsError::Protocol("close payload of one byte"))
        );
        assert_eq!(parse_close_payload(&[0x03, 0xE8]), Ok(Some((1000, ""))));
        assert_eq!(parse_close_payload(b"\x03\xE9bye"), Ok(Some((1001, "bye"))));
        assert_eq!(
            parse_close_payload(&[0x03, 0xED]),
            Err(WsError::InvalidCloseCode(1005))
        );
        assert_eq!(
            parse_close_payload(&[0x03, 0xE8, 0xC0, 0x80]),
            Err(WsError::InvalidUtf8)
        );
        assert_eq!(WsError::InvalidCloseCode(1005).close_code(), 1002);
    }

    #[test]
    fn write_round_trips_and_truncates() {
        let mut out = Vec::new();
        let key = [5, 6, 7, 8];
        let long = "é".repeat(100); // 200 bytes
        write_close_frame(&mut out, 1001, &long, Some(key));
        let h = parse_header(&out, &FrameLimits::server(125))
            .unwrap()
            .unwrap();
        assert_eq!(h.opcode, OpCode::Close);
        assert!(h.payload_len <= 125);
        let mut p = out[h.header_len as usize..].to_vec();
        apply_mask(&mut p, key, 0);
        let (code, reason) = parse_close_payload(&p).unwrap().unwrap();
        assert_eq!((code, reason.len()), (1001, 122));
        out.clear();
        write_close_frame(&mut out, 1005, "ignored", None);
        assert_eq!(out, [0x88, 0]);
    }
}
