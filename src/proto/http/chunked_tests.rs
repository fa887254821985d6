//! Tests for the chunked scanner: fixed cases, every malformed shape, and
//! property tests over random encodings split at every point.

use super::*;
use proptest::prelude::*;

/// Feed `input` in the given pieces (cut offsets), as a proxy would: stop at
/// the first `done`. Returns (total consumed, done, offset of the end of the
/// piece where done showed up) or the first error.
fn feed(input: &[u8], cuts: &[usize]) -> Result<(usize, bool, usize), HttpError> {
    let mut s = ChunkedScanner::new();
    let mut total = 0;
    let mut start = 0;
    for end in cuts.iter().copied().chain(std::iter::once(input.len())) {
        let end = end.clamp(start, input.len());
        let piece = &input[start..end];
        let p = s.scan(piece)?;
        assert!(p.consumed <= piece.len());
        total += p.consumed;
        if p.done {
            assert!(s.is_done());
            return Ok((total, true, end));
        }
        assert_eq!(
            p.consumed,
            piece.len(),
            "a scan that is not done takes everything"
        );
        start = end;
    }
    Ok((total, false, input.len()))
}

fn whole(input: &[u8]) -> Result<Progress, HttpError> {
    ChunkedScanner::new().scan(input)
}

#[test]
fn simple_body_and_tail_not_consumed() {
    let body = b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\n\r\n";
    let mut input = body.to_vec();
    input.extend_from_slice(b"GET / HTTP/1.1\r\n");
    assert_eq!(
        whole(&input),
        Ok(Progress {
            consumed: body.len(),
            done: true
        })
    );
    assert_eq!(
        whole(&body[..body.len() - 1]),
        Ok(Progress {
            consumed: body.len() - 1,
            done: false
        })
    );
    let mut s = ChunkedScanner::new();
    assert_eq!(
        s.scan(body),
        Ok(Progress {
            consumed: body.len(),
            done: true
        })
    );
    assert_eq!(
        s.scan(b"more"),
        Ok(Progress {
            consumed: 0,
            done: true
        })
    );
}

#[test]
fn trailers_and_extensions_accepted() {
    let body =
        b"a ; name=\"v;x\" ; flag\r\n0123456789\r\n0;last\r\nExpires: never\r\nX-Sum: 12\t\r\n\r\n";
    assert_eq!(
        whole(body),
        Ok(Progress {
            consumed: body.len(),
            done: true
        })
    );
    let zeros = b"000000000000000000000000a\r\n0123456789\r\n0\r\n\r\n";
    assert_eq!(
        whole(zeros),
        Ok(Progress {
            consumed: zeros.len(),
            done: true
        })
    );
    let max = b"FFFFFFFFFFFFFFFF\r\nab";
    assert_eq!(
        whole(max),
        Ok(Progress {
            consumed: max.len(),
            done: false
        })
    );
}

#[test]
fn malformed_shapes_refused() {
    let long_ext = format!("5;{}\r\nhello\r\n0\r\n\r\n", "a".repeat(MAX_CHUNK_LINE));
    let long_trailer = format!("0\r\nX: {}\r\n\r\n", "a".repeat(MAX_TRAILERS));
    let many_trailers = format!(
        "0\r\n{}\r\n",
        "X: aaaaaaaaaaaaaaaa\r\n".repeat(MAX_TRAILERS / 16)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not hex", b"x\r\n".to_vec()),
        ("minus", b"-5\r\nhello\r\n0\r\n\r\n".to_vec()),
        ("plus", b"+5\r\nhello\r\n0\r\n\r\n".to_vec()),
        ("0x", b"0x5\r\nhello\r\n0\r\n\r\n".to_vec()),
        ("empty size", b"\r\nhello\r\n0\r\n\r\n".to_vec()),
        ("overflow", b"10000000000000000\r\n".to_vec()),
        ("bare LF after size", b"5\nhello\r\n0\r\n\r\n".to_vec()),
        ("CR without LF", b"5\rhello\r\n0\r\n\r\n".to_vec()),
        ("no CRLF after data", b"5\r\nhelloX\r\n0\r\n\r\n".to_vec()),
        ("bare LF after data", b"5\r\nhello\n0\r\n\r\n".to_vec()),
        ("CR only after data", b"5\r\nhello\rX0\r\n\r\n".to_vec()),
        (
            "CR then size after data",
            b"5\r\nhello\r00\r\n\r\n".to_vec(),
        ),
        ("LF CR after data", b"5\r\nhello\n\r0\r\n\r\n".to_vec()),
        ("space then CRLF", b"5 \r\nhello\r\n0\r\n\r\n".to_vec()),
        ("space then digit", b"5 5\r\nhello\r\n0\r\n\r\n".to_vec()),
        ("control in ext", b"5;a\x01\r\nhello\r\n0\r\n\r\n".to_vec()),
        ("LF in ext", b"5;a\nhello\r\n0\r\n\r\n".to_vec()),
        ("ext too long", long_ext.into_bytes()),
        ("trailer obs-fold", b"0\r\nA: b\r\n c\r\n\r\n".to_vec()),
        ("trailer no colon", b"0\r\nAB\r\n\r\n".to_vec()),
        ("trailer bad name", b"0\r\nA B: c\r\n\r\n".to_vec()),
        ("trailer bare LF", b"0\r\nA: b\n\r\n".to_vec()),
        ("trailer NUL", b"0\r\nA: b\0\r\n\r\n".to_vec()),
        ("final bare LF", b"0\r\n\n".to_vec()),
        ("final CR CR", b"0\r\n\r\r".to_vec()),
        ("trailer too long", long_trailer.into_bytes()),
        ("too many trailers", many_trailers.into_bytes()),
    ];
    for (what, input) in &cases {
        assert!(
            matches!(whole(input), Err(HttpError::BadChunk(_))),
            "{what}"
        );
        let every_byte: Vec<usize> = (1..input.len()).collect();
        assert!(
            matches!(feed(input, &every_byte), Err(HttpError::BadChunk(_))),
            "{what} byte-wise"
        );
    }
}

#[derive(Clone, Debug)]
struct Chunk {
    data: Vec<u8>,
    upper: bool,
    zeros: usize,
    ext: Option<(bool, String)>,
}

fn chunk() -> impl Strategy<Value = Chunk> {
    (
        prop::collection::vec(any::<u8>(), 1..200),
        any::<bool>(),
        0usize..3,
        prop::option::of((any::<bool>(), "[a-z]{1,8}(=[a-z0-9]{0,8})?")),
    )
        .prop_map(|(data, upper, zeros, ext)| Chunk {
            data,
            upper,
            zeros,
            ext,
        })
}

/// Encode a chunked body; also returns the offsets of every framing CRLF.
fn encode(chunks: &[Chunk], trailers: &[(String, String)]) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::new();
    let mut crlf = Vec::new();
    let mut end_line = |out: &mut Vec<u8>| {
        crlf.push(out.len());
        out.extend_from_slice(b"\r\n");
    };
    for c in chunks {
        out.extend(std::iter::repeat_n(b'0', c.zeros));
        let size = if c.upper {
            format!("{:X}", c.data.len())
        } else {
            format!("{:x}", c.data.len())
        };
        out.extend_from_slice(size.as_bytes());
        if let Some((bws, e)) = &c.ext {
            if *bws {
                out.extend_from_slice(b" \t");
            }
            out.push(b';');
            out.extend_from_slice(e.as_bytes());
        }
        end_line(&mut out);
        out.extend_from_slice(&c.data);
        end_line(&mut out);
    }
    out.push(b'0');
    end_line(&mut out);
    for (n, v) in trailers {
        out.extend_from_slice(format!("{n}: {v}").as_bytes());
        end_line(&mut out);
    }
    end_line(&mut out);
    (out, crlf)
}

fn body_and_tail() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    framed().prop_map(|(body, tail, _)| (body, tail))
}

/// A valid body, bytes after it, and the offsets of its framing CRLFs.
fn framed() -> impl Strategy<Value = (Vec<u8>, Vec<u8>, Vec<usize>)> {
    (
        prop::collection::vec(chunk(), 0..6),
        prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,10}", "[ -~]{0,20}"), 0..3),
        prop::collection::vec(any::<u8>(), 0..20),
    )
        .prop_map(|(chunks, trailers, tail)| {
            let (body, crlf) = encode(&chunks, &trailers);
            (body, tail, crlf)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_single_split_gives_the_same_result((body, tail) in body_and_tail()) {
        let mut input = body.clone();
        input.extend_from_slice(&tail);
        prop_assert_eq!(whole(&input), Ok(Progress { consumed: body.len(), done: true }));
        for cut in 0..=input.len() {
            let (total, done, done_at) = feed(&input, &[cut]).expect("valid body");
            prop_assert!(done);
            prop_assert_eq!(total, body.len());
            // done shows up in the first piece that reaches the end.
            prop_assert_eq!(done_at, if cut >= body.len() { cut } else { input.len() });
        }
    }

    #[test]
    fn random_splits_give_the_same_result(
        (body, tail) in body_and_tail(),
        mut cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut input = body.clone();
        input.extend_from_slice(&tail);
        let mut cuts: Vec<usize> = cuts.drain(..).map(|i| i.index(input.len() + 1)).collect();
        cuts.sort_unstable();
        let (total, done, done_at) = feed(&input, &cuts).expect("valid body");
        prop_assert!(done);
        prop_assert_eq!(total, body.len());
        prop_assert!(done_at >= body.len());
        // Byte by byte, done comes exactly with the last body byte.
        let every: Vec<usize> = (1..=input.len()).collect();
        prop_assert_eq!(feed(&input, &every), Ok((body.len(), true, body.len())));
    }

    #[test]
    fn any_prefix_is_not_done((body, _tail) in body_and_tail()) {
        for cut in 0..body.len() {
            prop_assert_eq!(whole(&body[..cut]), Ok(Progress { consumed: cut, done: false }));
        }
    }

    #[test]
    fn corrupting_a_framing_byte_is_refused(
        (body, _tail, crlf) in framed(),
        pick in any::<prop::sample::Index>(),
        which in 0usize..2,
    ) {
        // Replace the CR or the LF of one framing CRLF: never a valid body of
        // the same length, and the same verdict whole or byte by byte.
        let mut bad = body.clone();
        bad[crlf[pick.index(crlf.len())] + which] = b'Z';
        let whole_res = whole(&bad);
        let every: Vec<usize> = (1..bad.len()).collect();
        let split_res = feed(&bad, &every).map(|(t, d, _)| Progress { consumed: t, done: d });
        prop_assert_eq!(whole_res.clone(), split_res);
        prop_assert!(matches!(whole_res, Err(HttpError::BadChunk(_))), "{:?}", whole_res);
    }
}
