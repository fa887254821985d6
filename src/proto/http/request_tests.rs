//! Tests for request head parsing, rewriting and smuggling refusals.

use super::*;
use std::net::{IpAddr, Ipv4Addr};

const FWD: ForwardInfo = ForwardInfo {
    client_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)),
    tls: false,
    trusted: false,
};

fn lim() -> Limits {
    Limits {
        max_header_bytes: 8192,
        max_headers: 64,
    }
}

fn parse_with(buf: &[u8], fwd: &ForwardInfo) -> (ParsedRequest, String) {
    let mut out = Vec::new();
    let r = parse_request(buf, &lim(), fwd, &mut out)
        .expect("valid")
        .expect("complete");
    (r, String::from_utf8(out).expect("utf8"))
}

fn parse(buf: &[u8]) -> (ParsedRequest, String) {
    parse_with(buf, &FWD)
}

fn refuse(buf: &[u8]) -> HttpError {
    let mut out = b"keep".to_vec();
    let e = parse_request(buf, &lim(), &FWD, &mut out).expect_err("must be refused");
    assert_eq!(out, b"keep", "nothing appended on error");
    e
}

fn is_smuggling(e: HttpError) -> bool {
    matches!(e, HttpError::Smuggling(_))
}

#[test]
fn simple_get() {
    let buf = b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\nNEXT";
    let (r, out) = parse(buf);
    assert_eq!(r.head_len, buf.len() - 4);
    assert_eq!(r.method, Method::Get);
    assert_eq!(&buf[r.path.clone()], b"/a?b=c");
    assert_eq!(r.minor_version, 1);
    assert_eq!(r.body, BodyKind::Empty);
    assert!(r.keep_alive);
    assert!(!r.expect_continue && !r.upgrade_websocket);
    assert_eq!(&buf[r.host.clone().expect("host")], b"example.com");
    assert_eq!(r.origin, None);
    assert_eq!(
        out,
        "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\
         X-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: http\r\n\r\n"
    );
}

#[test]
fn appends_to_out_and_keeps_method_bytes() {
    let mut out = b"PREV".to_vec();
    let r = parse_request(
        b"PURGE /x HTTP/1.1\r\nHost: h\r\n\r\n",
        &lim(),
        &FWD,
        &mut out,
    );
    assert_eq!(r.expect("ok").expect("complete").method, Method::Other);
    assert!(out.starts_with(b"PREVPURGE /x HTTP/1.1\r\n"));
}

#[test]
fn post_with_content_length() {
    let buf = b"POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\nContent-Length: 11\r\n\r\nhello world";
    let (r, out) = parse(buf);
    assert_eq!(r.method, Method::Post);
    assert_eq!(r.body, BodyKind::Length(11));
    assert_eq!(out.matches("Content-Length: 11\r\n").count(), 1);
    let (r0, _) = parse(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r0.body, BodyKind::Empty);
}

#[test]
fn chunked_body() {
    let buf = b"PUT /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n";
    let (r, out) = parse(buf);
    assert_eq!(r.body, BodyKind::Chunked);
    assert!(out.contains("\r\nTransfer-Encoding: chunked\r\n"), "{out}");
    let (r2, out2) = parse(
        b"PUT /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert_eq!(r2.body, BodyKind::Chunked);
    assert_eq!(out2.matches("Transfer-Encoding").count(), 1);
}

#[test]
fn hop_by_hop_stripped() {
    let buf = b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: 300\r\n\
        Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X\r\nUpgrade: h2c\r\nX-Secret: 1\r\n\
        X-Kept: 2\r\nContent-Length: 0\r\n\r\n";
    let (_, out) = parse(buf);
    for gone in [
        "Connection",
        "Keep-Alive",
        "Proxy-Connection",
        "TE:",
        "Trailer",
        "Upgrade",
        "X-Secret",
    ] {
        assert!(!out.contains(gone), "{gone} leaked: {out}");
    }
    assert!(out.contains("X-Kept: 2\r\n") && out.contains("Content-Length: 0\r\n"));
}

#[test]
fn connection_cannot_strip_framing_or_host() {
    let buf = b"POST / HTTP/1.1\r\nHost: h\r\nConnection: Content-Length, Host, Transfer-Encoding\r\nContent-Length: 3\r\n\r\nabc";
    let (r, out) = parse(buf);
    assert_eq!(r.body, BodyKind::Length(3));
    assert!(
        out.contains("Content-Length: 3\r\n") && out.contains("Host: h\r\n"),
        "{out}"
    );
}

#[test]
fn websocket_upgrade_keeps_connection_and_upgrade() {
    let buf = b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://o\r\n\
        Cookie: a=b\r\nAuthorization: Bearer t\r\n\r\n";
    let (r, out) = parse(buf);
    assert!(r.upgrade_websocket);
    assert_eq!(
        &buf[r.ws_key.clone().expect("key")],
        b"dGhlIHNhbXBsZSBub25jZQ=="
    );
    assert_eq!(&buf[r.ws_version.clone().expect("ver")], b"13");
    assert_eq!(&buf[r.origin.clone().expect("origin")], b"http://o");
    assert_eq!(&buf[r.cookie.clone().expect("cookie")], b"a=b");
    assert_eq!(&buf[r.authorization.clone().expect("auth")], b"Bearer t");
    assert!(
        out.contains("Connection: Upgrade\r\nUpgrade: websocket\r\n"),
        "{out}"
    );
    assert!(!out.contains("keep-alive"));
    assert!(out.contains("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
    // Upgrade without the Connection token is not an upgrade.
    let (r2, out2) = parse(b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n");
    assert!(!r2.upgrade_websocket);
    assert!(!out2.contains("Upgrade"));
}

#[test]
fn keep_alive_rules() {
    let ka = |buf: &[u8]| parse(buf).0.keep_alive;
    assert!(ka(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
    assert!(!ka(
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    ));
    assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
    assert!(ka(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    assert!(!ka(
        b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
    ));
    let (r, out) = parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(r.minor_version, 0);
    assert!(out.starts_with("GET / HTTP/1.1\r\n") && !out.contains("Connection"));
}

#[test]
fn expect_continue() {
    let (r, out) =
        parse(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n");
    assert!(r.expect_continue);
    assert!(out.contains("Expect: 100-Continue\r\n"));
    let (r0, _) = parse(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    assert!(!r0.expect_continue);
}

#[test]
fn refuse_cl_and_te() {
    assert!(is_smuggling(refuse(
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    )));
    assert!(is_smuggling(refuse(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n"
    )));
}

#[test]
fn refuse_bad_content_length() {
    for cl in [
        "5\r\nContent-Length: 6",
        "+5",
        "-5",
        " 5 5",
        "5,5",
        "abc",
        "99999999999999999999",
        "",
    ] {
        let req = format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {cl}\r\n\r\n");
        assert!(is_smuggling(refuse(req.as_bytes())), "CL {cl:?}");
    }
}

#[test]
fn refuse_transfer_codings() {
    let te = |v: &str| {
        refuse(format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {v}\r\n\r\n").as_bytes())
    };
    assert_eq!(te("gzip, chunked"), HttpError::UnsupportedTransferEncoding);
    assert_eq!(te("gzip, chunked").status(), 501);
    assert!(is_smuggling(te("chunked, gzip")));
    assert!(is_smuggling(te("gzip")));
    assert!(is_smuggling(te("chunked\r\nTransfer-Encoding: chunked")));
    assert!(is_smuggling(te("identity")));
    assert_eq!(
        te("gzip\r\nTransfer-Encoding: chunked"),
        HttpError::UnsupportedTransferEncoding
    );
}

#[test]
fn refuse_te_on_http10() {
    assert!(is_smuggling(refuse(
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
    )));
}

#[test]
fn refuse_obs_fold() {
    assert!(is_smuggling(refuse(
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n folded\r\n\r\n"
    )));
    assert!(is_smuggling(refuse(
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\tfolded\r\n\r\n"
    )));
    assert!(is_smuggling(refuse(b"GET / HTTP/1.1\r\n Host: h\r\n\r\n")));
}

#[test]
fn refuse_missing_or_double_host() {
    assert!(matches!(
        refuse(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"),
        HttpError::Malformed(_)
    ));
    assert!(matches!(
        refuse(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        HttpError::Malformed(_)
    ));
    let (r, out) = parse(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(r.host, None);
    assert!(out.starts_with("GET / HTTP/1.1\r\nHost: \r\n"), "{out}");
}

#[test]
fn refuse_bad_bytes() {
    assert!(matches!(
        refuse(b"GET / HTTP/1.1\r\nHost : h\r\n\r\n"),
        HttpError::Malformed(_)
    ));
    assert!(matches!(
        refuse(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n"),
        HttpError::Malformed(_)
    ));
    assert!(matches!(
        refuse(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n"),
        HttpError::Malformed(_)
    ));
    assert!(matches!(
        refuse(b"GET / HTTP/2.0\r\nHost: h\r\n\r\n"),
        HttpError::Malformed(_)
    ));
    assert!(matches!(
        refuse(b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n"),
        HttpError::Malformed(_)
    ));
    assert!(matches!(
        refuse(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"),
        HttpError::Malformed(_)
    ));
}

#[test]
fn header_too_large() {
    let small = Limits {
        max_header_bytes: 64,
        max_headers: 64,
    };
    let mut out = Vec::new();
    let long = format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}", "a".repeat(80));
    assert_eq!(
        parse_request(long.as_bytes(), &small, &FWD, &mut out),
        Err(HttpError::HeadersTooLarge)
    );
    let complete = format!("{long}\r\n\r\n");
    assert_eq!(
        parse_request(complete.as_bytes(), &small, &FWD, &mut out),
        Err(HttpError::HeadersTooLarge)
    );
    assert_eq!(
        parse_request(b"GET / HTTP/1.1\r\nHo", &small, &FWD, &mut out),
        Ok(None)
    );
    assert!(out.is_empty());
    assert_eq!(HttpError::HeadersTooLarge.status(), 431);
}

#[test]
fn too_many_headers() {
    let few = Limits {
        max_header_bytes: 8192,
        max_headers: 4,
    };
    let mut out = Vec::new();
    let ok = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert!(parse_request(ok, &few, &FWD, &mut out)
        .expect("ok")
        .is_some());
    let many = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    assert_eq!(
        parse_request(many, &few, &FWD, &mut out),
        Err(HttpError::HeadersTooLarge)
    );
    let huge = Limits {
        max_header_bytes: 1 << 20,
        max_headers: 100_000,
    };
    let mut req = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    for _ in 0..MAX_HEADERS_CAP {
        req.extend_from_slice(b"A: 1\r\n");
    }
    req.extend_from_slice(b"\r\n");
    assert_eq!(
        parse_request(&req, &huge, &FWD, &mut out),
        Err(HttpError::HeadersTooLarge)
    );
}

#[test]
fn every_prefix_is_incomplete() {
    let buf: &[u8] = b"POST /p HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 1.2.3.4\r\nContent-Length: 2\r\n\r\n";
    let mut out = Vec::new();
    for cut in 0..buf.len() {
        assert_eq!(
            parse_request(&buf[..cut], &lim(), &FWD, &mut out),
            Ok(None),
            "cut {cut}"
        );
        assert!(out.is_empty());
    }
    let (r, _) = parse(buf);
    assert_eq!(r.head_len, buf.len());
}

#[test]
fn leading_empty_line_skipped() {
    let buf = b"\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n";
    let (r, out) = parse(buf);
    assert_eq!(r.head_len, buf.len());
    assert_eq!(&buf[r.path.clone()], b"/x");
    assert!(out.starts_with("GET /x HTTP/1.1\r\nHost: h\r\n"));
}
