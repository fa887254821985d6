//! Tests for response head parsing: framing, keep-alive and rewriting.

use super::*;

fn lim() -> Limits {
    Limits::default()
}

/// Parse with a GET from a keep-alive HTTP/1.1 client unless told otherwise.
fn parse_for(
    buf: &[u8],
    method: Method,
    client_minor: u8,
    client_ka: bool,
) -> (ParsedResponse, String) {
    let mut out = Vec::new();
    let r = parse_response(buf, &lim(), method, client_minor, client_ka, &mut out)
        .expect("valid")
        .expect("complete");
    (r, String::from_utf8(out).expect("utf8"))
}

fn parse(buf: &[u8]) -> (ParsedResponse, String) {
    parse_for(buf, Method::Get, 1, true)
}

fn refuse(buf: &[u8]) -> HttpError {
    let mut out = Vec::new();
    let e = parse_response(buf, &lim(), Method::Get, 1, true, &mut out).expect_err("refused");
    assert!(out.is_empty());
    e
}

#[test]
fn content_length_body() {
    let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello";
    let (r, out) = parse(buf);
    assert_eq!(r.head_len, buf.len() - 5);
    assert_eq!(
        (r.status, r.minor_version, r.body),
        (200, 1, BodyKind::Length(5))
    );
    assert!(r.backend_keep_alive && r.client_keep_alive && !r.informational && !r.upgrade);
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\n"
    );
}

#[test]
fn chunked_body() {
    let (r, out) = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(r.body, BodyKind::Chunked);
    assert!(r.backend_keep_alive && r.client_keep_alive);
    assert!(out.contains("Transfer-Encoding: chunked\r\n"));
    let (r2, _) = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    assert_eq!(r2.body, BodyKind::Chunked);
}

#[test]
fn until_close_body() {
    let (r, out) = parse(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
    assert_eq!(r.body, BodyKind::UntilClose);
    assert!(!r.backend_keep_alive && !r.client_keep_alive);
    assert!(out.ends_with("Connection: close\r\n\r\n"), "{out}");
    let (r2, _) = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
    assert_eq!(r2.body, BodyKind::UntilClose);
}

#[test]
fn head_request_has_no_body() {
    let (r, out) = parse_for(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
        Method::Head,
        1,
        true,
    );
    assert_eq!(r.body, BodyKind::Empty);
    assert!(r.backend_keep_alive && r.client_keep_alive);
    assert!(out.contains("Content-Length: 1234\r\n"));
    let (r2, _) = parse_for(b"HTTP/1.1 200 OK\r\n\r\n", Method::Head, 1, true);
    assert_eq!(r2.body, BodyKind::Empty);
}

#[test]
fn informational_1xx() {
    let (r, out) = parse(b"HTTP/1.1 100 Continue\r\n\r\n");
    assert_eq!(r.body, BodyKind::Empty);
    assert!(r.informational && !r.upgrade && r.backend_keep_alive && r.client_keep_alive);
    assert_eq!(out, "HTTP/1.1 100 Continue\r\n\r\n");
    let (r2, _) = parse(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n");
    assert!(r2.informational);
    assert_eq!(r2.body, BodyKind::Empty);
}

#[test]
fn switching_protocols_101() {
    let buf = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    let (r, out) = parse(buf);
    assert!(r.upgrade && !r.informational);
    assert_eq!(r.body, BodyKind::Empty);
    assert!(!r.backend_keep_alive);
    assert_eq!(
        out,
        "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    );
    let (r2, _) = parse(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n");
    assert!(!r2.upgrade);
}

#[test]
fn no_content_204_and_not_modified_304() {
    for head in [
        &b"HTTP/1.1 204 No Content\r\n\r\n"[..],
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
    ] {
        let (r, out) = parse(head);
        assert_eq!(r.body, BodyKind::Empty, "{out}");
        assert!(r.backend_keep_alive && r.client_keep_alive);
        assert!(!out.contains("Connection"));
    }
}

#[test]
fn http10_backend() {
    let (r, _) = parse(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(r.minor_version, 0);
    assert!(!r.backend_keep_alive);
    assert!(r.client_keep_alive);
    let (r2, out2) = parse(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok");
    assert!(r2.backend_keep_alive);
    assert!(
        out2.starts_with("HTTP/1.1 200 OK\r\n") && !out2.contains("eep-Alive"),
        "{out2}"
    );
    let (r3, _) = parse(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
    assert!(!r3.backend_keep_alive && r3.client_keep_alive);
    assert!(matches!(
        refuse(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
        HttpError::Smuggling(_)
    ));
}

#[test]
fn client_version_and_close() {
    let buf = b"HTTP/1.1 404 Not  Found\xe9\r\nContent-Length: 0\r\n\r\n";
    let mut out = Vec::new();
    let r = parse_response(buf, &lim(), Method::Get, 0, true, &mut out)
        .expect("ok")
        .expect("complete");
    assert!(r.client_keep_alive);
    assert_eq!(
        out,
        b"HTTP/1.0 404 Not  Found\xe9\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
    );
    let (r2, out2) = parse_for(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        Method::Get,
        1,
        false,
    );
    assert!(!r2.client_keep_alive && r2.backend_keep_alive);
    assert!(out2.ends_with("Connection: close\r\n\r\n"));
    let (r3, out3) = parse_for(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        Method::Get,
        0,
        false,
    );
    assert!(!r3.client_keep_alive);
    assert!(out3.starts_with("HTTP/1.0 200 OK\r\n") && out3.ends_with("Connection: close\r\n\r\n"));
}

#[test]
fn chunked_to_http10_client_closes() {
    let (r, out) = parse_for(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        Method::Get,
        0,
        true,
    );
    assert_eq!(r.body, BodyKind::Chunked);
    assert!(!r.client_keep_alive && r.backend_keep_alive);
    assert!(out.ends_with("Connection: close\r\n\r\n"));
}

#[test]
fn hop_by_hop_removed() {
    let buf = b"HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: secret\r\nKeep-Alive: 5\r\nUpgrade: h2c\r\n\
        Trailer: Expires\r\nContent-Length: 0\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n";
    let (_, out) = parse(buf);
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n"
    );
}

#[test]
fn refuse_conflicting_framing() {
    for bad in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: 1\r\n folded\r\nContent-Length: 0\r\n\r\n",
    ] {
        assert!(
            matches!(refuse(bad), HttpError::Smuggling(_)),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    assert!(matches!(
        refuse(b"HTTP/1.1 2000 OK\r\n\r\n"),
        HttpError::Malformed(_)
    ));
    assert!(matches!(
        refuse(b"HTTP/1.1 099 Odd\r\n\r\n"),
        HttpError::Malformed(_)
    ));
    assert!(matches!(
        refuse(b"SSH-2.0-OpenSSH\r\n\r\n"),
        HttpError::Malformed(_)
    ));
}

#[test]
fn incomplete_and_too_large() {
    let buf: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
    let mut out = Vec::new();
    for cut in 0..buf.len() {
        assert_eq!(
            parse_response(&buf[..cut], &lim(), Method::Get, 1, true, &mut out),
            Ok(None),
            "cut {cut}"
        );
    }
    assert!(out.is_empty());
    let small = Limits {
        max_header_bytes: 16,
        max_headers: 8,
    };
    assert_eq!(
        parse_response(buf, &small, Method::Get, 1, true, &mut out),
        Err(HttpError::HeadersTooLarge)
    );
    assert_eq!(
        parse_response(&buf[..20], &small, Method::Get, 1, true, &mut out),
        Err(HttpError::HeadersTooLarge)
    );
}

#[test]
fn leading_empty_lines_skipped() {
    let (r, out) = parse(b"\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.status, 201);
    assert_eq!(out, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
}
