//! Property tests across the codec: a random stream of masked frames
//! (fragmented messages with control frames between fragments) scans and
//! reassembles the same however the bytes are split.

use super::close::write_close_frame;
use super::frame::{write_frame, FrameHeader, FrameLimits, OpCode};
use super::message::{Message, MessageReader};
use super::scanner::{FrameScanner, ScannerConfig, Segment};
use proptest::prelude::*;
use proptest::sample::Index;

#[derive(Clone, Debug)]
struct GenMsg {
    kind: u8,
    text: String,
    bin: Vec<u8>,
    cuts: Vec<Index>,
    pings: Vec<Option<Vec<u8>>>,
    key: [u8; 4],
}

fn arb_msg() -> impl Strategy<Value = GenMsg> {
    (
        0u8..5,
        "\\PC{0,150}",
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(any::<Index>(), 0..4),
        proptest::collection::vec(
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
            0..4,
        ),
        any::<[u8; 4]>(),
    )
        .prop_map(|(kind, text, bin, cuts, pings, key)| GenMsg {
            kind,
            text,
            bin,
            cuts,
            pings,
            key,
        })
}

/// Encodes the messages back to back; returns the bytes and the messages a
/// reader must produce, in order.
fn build(msgs: &[GenMsg]) -> (Vec<u8>, Vec<Message>) {
    let mut out = Vec::new();
    let mut want = Vec::new();
    for m in msgs {
        let k = Some(m.key);
        let start = out.len();
        let (opcode, payload) = match m.kind {
            0 => (OpCode::Text, m.text.as_bytes().to_vec()),
            1 => (OpCode::Binary, m.bin.clone()),
            2 | 3 => {
                let op = if m.kind == 2 {
                    OpCode::Ping
                } else {
                    OpCode::Pong
                };
                let p = &m.bin[..m.bin.len().min(125)];
                write_frame(&mut out, true, op, k, p);
                want.push(Message {
                    opcode: op,
                    payload: p.to_vec(),
                });
                continue;
            }
            _ => {
                let reason: String = m.text.chars().filter(char::is_ascii).take(50).collect();
                write_close_frame(&mut out, 1000 + (m.bin.len() % 4) as u16, &reason, k);
                let mut p = out[start + 6..].to_vec();
                super::mask::apply_mask(&mut p, m.key, 0);
                want.push(Message {
                    opcode: OpCode::Close,
                    payload: p,
                });
                continue;
            }
        };
        let mut cuts: Vec<usize> = m.cuts.iter().map(|i| i.index(payload.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(payload.len());
        let mut prev = 0;
        for (i, &c) in cuts.iter().enumerate() {
            let last = i + 1 == cuts.len();
            let op = if i == 0 { opcode } else { OpCode::Continuation };
            write_frame(&mut out, last, op, k, &payload[prev..c]);
            prev = c;
            if let (false, Some(Some(p))) = (last, m.pings.get(i)) {
                write_frame(&mut out, true, OpCode::Ping, k, p);
                want.push(Message {
                    opcode: OpCode::Ping,
                    payload: p.clone(),
                });
            }
        }
        want.push(Message { opcode, payload });
    }
    (out, want)
}

fn cfg() -> ScannerConfig {
    ScannerConfig {
        limits: FrameLimits::server(1 << 20),
        max_message: 0,
        validate_utf8: true,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Item {
    Data(Vec<u8>),
    Control(FrameHeader, Vec<u8>),
}

/// Scans `bytes` delivered in `chunks` the way a relay would; adjacent data
/// segments are merged so that results compare across splittings.
fn scan_chunks(bytes: &[u8], splits: &[usize]) -> Vec<Item> {
    let mut s = FrameScanner::new(cfg());
    let mut pending = Vec::new();
    let mut items: Vec<Item> = Vec::new();
    let mut prev = 0;
    for &cut in splits.iter().chain(std::iter::once(&bytes.len())) {
        pending.extend_from_slice(&bytes[prev..cut]);
        prev = cut;
        while let Some(seg) = s.next(&pending).expect("valid stream") {
            match seg {
                Segment::Data { len } => {
                    assert!(len > 0, "empty data segment");
                    match items.last_mut() {
                        Some(Item::Data(d)) => d.extend_from_slice(&pending[..len]),
                        _ => items.push(Item::Data(pending[..len].to_vec())),
                    }
                    pending.drain(..len);
                }
                Segment::Control { len, header } => {
                    items.push(Item::Control(header, pending[..len].to_vec()));
                    pending.drain(..len);
                }
            }
        }
    }
    assert!(pending.is_empty(), "{} bytes left unscanned", pending.len());
    assert!(!s.in_message());
    items
}

fn read_chunks(bytes: &[u8], splits: &[usize]) -> Vec<Message> {
    let mut r = MessageReader::new(cfg());
    let mut out = Vec::new();
    let mut prev = 0;
    for &cut in splits.iter().chain(std::iter::once(&bytes.len())) {
        let mut chunk = &bytes[prev..cut];
        prev = cut;
        loop {
            let (n, m) = r.feed(chunk).expect("valid stream");
            chunk = &chunk[n..];
            match m {
                Some(m) => out.push(m),
                None => {
                    assert!(chunk.is_empty(), "None before the chunk was consumed");
                    break;
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_split_point_gives_the_same(msgs in proptest::collection::vec(arb_msg(), 1..5)) {
        let (bytes, want) = build(&msgs);
        let whole = scan_chunks(&bytes, &[]);
        let flat: Vec<u8> = whole.iter().flat_map(|i| match i {
            Item::Data(d) => d.clone(),
            Item::Control(_, b) => b.clone(),
        }).collect();
        prop_assert_eq!(&flat, &bytes);
        prop_assert_eq!(&read_chunks(&bytes, &[]), &want);
        for s in 0..=bytes.len() {
            prop_assert_eq!(&scan_chunks(&bytes, &[s]), &whole, "split at {}", s);
            prop_assert_eq!(&read_chunks(&bytes, &[s]), &want, "split at {}", s);
        }
    }

    #[test]
    fn random_splits_give_the_same(
        msgs in proptest::collection::vec(arb_msg(), 1..8),
        cuts in proptest::collection::vec(any::<Index>(), 0..12),
    ) {
        let (bytes, want) = build(&msgs);
        let mut splits: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        splits.sort_unstable();
        prop_assert_eq!(scan_chunks(&bytes, &splits), scan_chunks(&bytes, &[]));
        prop_assert_eq!(&read_chunks(&bytes, &splits), &want);
        let singles: Vec<usize> = (1..bytes.len()).collect();
        prop_assert_eq!(&read_chunks(&bytes, &singles), &want);
    }
}
