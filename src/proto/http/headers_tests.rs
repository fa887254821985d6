//! Tests for the shared header helpers.

use super::*;

fn h<'a>(name: &'a str, value: &'a [u8]) -> httparse::Header<'a> {
    httparse::Header { name, value }
}

#[test]
fn tokens() {
    assert!(header_has_token(b"keep-alive, Upgrade", "upgrade"));
    assert!(header_has_token(b" close ", "close"));
    assert!(header_has_token(b"a,\tCLOSE\t,b", "close"));
    assert!(!header_has_token(b"closed", "close"));
    assert!(!header_has_token(b"", "close"));
}

#[test]
fn hop_by_hop_names() {
    for n in [
        "Connection",
        "keep-alive",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "UPGRADE",
    ] {
        assert!(is_hop_by_hop(n), "{n}");
    }
    for n in ["Transfer-Encoding", "Host", "Content-Length", "Tea"] {
        assert!(!is_hop_by_hop(n), "{n}");
    }
}

#[test]
fn connection_naming_others() {
    assert!(!connection_names_others(b"keep-alive, Upgrade"));
    assert!(!connection_names_others(b"close"));
    assert!(connection_names_others(b"close, X-Foo"));
    // Whole usual values, any case, take the short way to the same answer.
    assert!(!connection_names_others(b"Keep-Alive"));
    assert!(!connection_names_others(b"UPGRADE"));
    assert!(connection_names_others(b"x-foo"));
    assert!(connection_names_others(b"keep-alive2"));
}

#[test]
fn find_and_connection_names() {
    let hs = [
        h("Host", b"a"),
        h("Connection", b"x-foo, Content-Length"),
        h("X-Foo", b"1"),
    ];
    assert!(named_in_connection(&hs, "x-foo"));
    assert!(!named_in_connection(&hs, "content-length"));
    assert!(!named_in_connection(&hs, "x-bar"));
}

#[test]
fn content_length_values() {
    assert_eq!(parse_content_length(b"0"), Ok(0));
    assert_eq!(parse_content_length(b"0012"), Ok(12));
    assert_eq!(parse_content_length(b"18446744073709551615"), Ok(u64::MAX));
    for bad in [
        &b""[..],
        b"+5",
        b"-5",
        b"5 5",
        b"5,5",
        b"0x10",
        b"18446744073709551616",
    ] {
        assert!(
            matches!(parse_content_length(bad), Err(HttpError::Smuggling(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn te_codings() {
    let te = |vals: &[&'static [u8]]| {
        let hs: Vec<_> = vals.iter().map(|v| h("Transfer-Encoding", v)).collect();
        framing(&hs).map(|f| f.te)
    };
    assert_eq!(te(&[]), Ok(TeCodings::Absent));
    assert_eq!(te(&[b"chunked"]), Ok(TeCodings::Chunked));
    assert_eq!(te(&[b"Chunked"]), Ok(TeCodings::Chunked));
    assert_eq!(te(&[b"gzip, chunked"]), Ok(TeCodings::ChunkedAfterOthers));
    assert_eq!(
        te(&[b"gzip", b"chunked"]),
        Ok(TeCodings::ChunkedAfterOthers)
    );
    assert_eq!(te(&[b"chunked, gzip"]), Ok(TeCodings::NotChunkedLast));
    assert_eq!(te(&[b"chunked", b"chunked"]), Ok(TeCodings::NotChunkedLast));
    assert_eq!(te(&[b"gzip"]), Ok(TeCodings::NotChunkedLast));
    assert_eq!(te(&[b""]), Ok(TeCodings::NotChunkedLast));
    assert_eq!(te(&[b"chunked;x=1"]), Ok(TeCodings::NotChunkedLast));
}

#[test]
fn obs_fold_and_ranges() {
    assert!(has_obs_fold(b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n"));
    assert!(has_obs_fold(b"GET / HTTP/1.1\r\nA: b\r\n\tc\r\n\r\n"));
    assert!(!has_obs_fold(b"GET / HTTP/1.1\r\nA: b\r\n\r\n body"));
    let buf = b"hello world";
    assert_eq!(range_in(buf, &buf[6..]), 6..11);
    assert_eq!(range_in(buf, b"other"), 0..0);
    assert!(value_is_clean(b"abc\t def"));
    assert!(!value_is_clean(b"a\0b"));
    assert!(!value_is_clean(b"a\rb"));
    assert!(!value_is_clean(b"\n"));
    assert!(!value_is_clean(b"\x1b"));
}

#[test]
fn contiguous_lines() {
    let ok = b"GET / HTTP/1.1\r\nA: 1  \r\nB:\r\nC: x\r\n\r\nbody";
    let fold = b"GET / HTTP/1.1\r\nA: 1\r\n folded\r\nB: 2\r\n\r\n";
    let h = |n: &'static str, v: &'static [u8], buf: &'static [u8]| {
        let name_at = buf
            .windows(n.len())
            .position(|w| w == n.as_bytes())
            .expect("name");
        let val_at = name_at
            + buf[name_at..]
                .windows(v.len())
                .position(|w| w == v)
                .expect("value");
        let name = std::str::from_utf8(&buf[name_at..name_at + n.len()]).expect("utf8");
        httparse::Header {
            name,
            value: &buf[val_at..val_at + v.len()],
        }
    };
    let mut storage = [httparse::EMPTY_HEADER; 8];
    let mut req = httparse::Request::new(&mut storage);
    assert_eq!(req.parse(ok), Ok(httparse::Status::Complete(ok.len() - 4)));
    assert!(lines_are_contiguous(ok, req.headers, ok.len() - 4));
    assert!(!lines_are_contiguous(ok, &req.headers[1..], ok.len() - 4));
    assert!(!lines_are_contiguous(
        ok,
        &[req.headers[0], req.headers[2]],
        ok.len() - 4
    ));
    let skipped = [h("A", b"1", fold), h("B", b"2", fold)];
    assert!(!lines_are_contiguous(fold, &skipped, fold.len()));
}

#[test]
fn finds_headers_case_insensitively() {
    let head = b"HTTP/1.1 101 OK\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
    assert!(has_header(head, b"sec-websocket-extensions"));
    assert!(!has_header(head, b"sec-websocket-protocol"));
}

/// The rule `lines_are_contiguous` states, written plainly (its first
/// version): the fast one must agree with it on every input.
fn contiguous_reference(buf: &[u8], headers: &[httparse::Header<'_>], head_len: usize) -> bool {
    let head = &buf[..head_len.min(buf.len())];
    let Some(first) = headers.first() else {
        return true;
    };
    let start = range_in(head, first.name.as_bytes()).start;
    let line = first_line_start(head);
    let first_lf = head[line..].iter().position(|&b| b == b'\n');
    if first_lf.map(|p| line + p + 1) != Some(start) {
        return false;
    }
    for (i, h) in headers.iter().enumerate() {
        let value_end = if h.value.is_empty() {
            range_in(head, h.name.as_bytes()).end + 1
        } else {
            range_in(head, h.value).end
        };
        let next = match headers.get(i + 1) {
            Some(n) => range_in(head, n.name.as_bytes()).start,
            None => head.len(),
        };
        let gap = trim_ows(head.get(value_end..next).unwrap_or_default());
        let ok = if i + 1 < headers.len() {
            gap == b"\r\n" || gap == b"\n"
        } else {
            matches!(gap, b"\r\n\r\n" | b"\n\n" | b"\r\n\n" | b"\n\r\n")
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Checks the fast rule against the reference for a head as httparse
/// read it, for every way of skipping fields (what a parser that dropped
/// a line would hand over) and for head lengths around the real one.
fn agree_on(buf: &[u8]) -> usize {
    let mut storage = [httparse::EMPTY_HEADER; 8];
    let mut req = httparse::Request::new(&mut storage);
    let mut resp_storage = [httparse::EMPTY_HEADER; 8];
    let mut resp = httparse::Response::new(&mut resp_storage);
    let (headers, n) = match (req.parse(buf), resp.parse(buf)) {
        (Ok(httparse::Status::Complete(n)), _) => (req.headers, n),
        (_, Ok(httparse::Status::Complete(n))) => (resp.headers, n),
        _ => return 0,
    };
    let mut checked = 0;
    for mask in 0u32..(1 << headers.len()) {
        let picked: Vec<_> = (0..headers.len())
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| headers[i])
            .collect();
        for len in [
            n.saturating_sub(2),
            n.saturating_sub(1),
            n,
            n + 1,
            buf.len(),
        ] {
            assert_eq!(
                lines_are_contiguous(buf, &picked, len),
                contiguous_reference(buf, &picked, len),
                "{:?} mask {mask:b} len {len}",
                String::from_utf8_lossy(buf)
            );
            checked += 1;
        }
    }
    checked
}

#[test]
fn line_cover_agrees_with_its_plain_statement_on_crafted_heads() {
    let heads: [&[u8]; 10] = [
        b"GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: u\r\n\r\n",
        b"\r\n\nGET / HTTP/1.1\r\nHost: h\r\nA:\r\nB: 2 \t\r\n\r\n",
        b"GET / HTTP/1.1\nHost: h\nA: 1\n\n",
        b"GET / HTTP/1.1\r\nHost: h\nA: 1\r\n\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX: y\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\nB: 2\r\n\r\n",
        b"GET / HTTP/1.1\r\nA: 1\r\n folded\r\nB: 2\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\rB: 2\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost:h\r\nA:\t \r\nC: x y\r\n\r\n",
    ];
    let checked: usize = heads.iter().map(|h| agree_on(h)).sum();
    assert!(checked > 100, "most heads parse: {checked}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
    /// Heads made of line pieces and stray CR, LF, SP, HTAB: wherever
    /// httparse takes one, both forms of the rule give the same answer.
    #[test]
    fn line_cover_agrees_with_its_plain_statement(
        pieces in proptest::collection::vec(0usize..12, 0..10),
        lead in 0usize..3,
    ) {
        const PIECES: [&[u8]; 12] = [
            b"\r\n", b"\n", b"\r", b" ", b"\t", b"A: 1", b"Host: h",
            b"B:", b"C: x y ", b"\r\n ", b"D:\t2", b"\r\r\n",
        ];
        let mut buf = Vec::new();
        buf.extend_from_slice(&b"\r\n\n"[..lead]);
        buf.extend_from_slice(b"GET / HTTP/1.1\r\n");
        for p in pieces {
            buf.extend_from_slice(PIECES[p]);
        }
        buf.extend_from_slice(b"\r\n\r\n");
        agree_on(&buf);
    }
}
