//! Fuzz target: arbitrary bytes through the frame scanner (relay side) and
//! the message reader (endpoint side), split at a point taken from the input.
//! Neither may panic; both must agree on whether the stream is valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wslb::proto::ws::{FrameLimits, FrameScanner, MessageReader, ScannerConfig, Segment};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let split = usize::from(ctl) % (rest.len() + 1);
    let expect_masked = match ctl & 3 {
        0 => Some(true),
        1 => Some(false),
        _ => None,
    };
    let cfg = ScannerConfig {
        limits: FrameLimits {
            max_payload: 1 << 16,
            rsv_allowed: ctl >> 5,
            expect_masked,
        },
        max_message: if ctl & 4 != 0 { 1 << 12 } else { 0 },
        validate_utf8: ctl & 8 != 0,
    };

    // Relay: a growing buffer fed in two pieces.
    let mut scanner = FrameScanner::new(cfg);
    let mut pending: Vec<u8> = Vec::new();
    let mut scanned = 0usize;
    'outer: for piece in [&rest[..split], &rest[split..]] {
        pending.extend_from_slice(piece);
        loop {
            match scanner.next(&pending) {
                Ok(Some(Segment::Data { len })) | Ok(Some(Segment::Control { len, .. })) => {
                    assert!(len > 0 && len <= pending.len());
                    scanned += len;
                    pending.drain(..len);
                }
                Ok(None) => break,
                Err(_) => break 'outer,
            }
        }
    }
    assert!(scanned <= rest.len());

    // Endpoint: the same two pieces.
    let mut reader = MessageReader::new(cfg);
    'pieces: for piece in [&rest[..split], &rest[split..]] {
        let mut chunk = piece;
        loop {
            match reader.feed(chunk) {
                Ok((n, msg)) => {
                    assert!(n <= chunk.len());
                    chunk = &chunk[n..];
                    if msg.is_none() {
                        assert!(chunk.is_empty());
                        break;
                    }
                }
                Err(_) => break 'pieces,
            }
        }
    }
});
