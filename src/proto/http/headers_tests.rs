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
