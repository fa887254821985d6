//! The proxy's own HTTP answers: canned error responses (static bytes, no
//! allocation) and a writer for small generated responses.

use std::io::Write as _;

/// Interim response sent when the proxy accepts `Expect: 100-continue`.
pub const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

macro_rules! canned {
    ($code:literal, $reason:literal, $len:literal) => {
        concat!(
            "HTTP/1.1 ",
            $code,
            " ",
            $reason,
            "\r\n",
            "Content-Type: text/plain\r\n",
            "Content-Length: ",
            $len,
            "\r\n",
            "Connection: close\r\n\r\n",
            $code,
            " ",
            $reason,
            "\n"
        )
        .as_bytes()
    };
}

/// A complete `Connection: close` error response for `status` (500 for a
/// status without a canned answer). 426 also carries
/// `Sec-WebSocket-Version: 13`.
pub fn error_response(status: u16) -> &'static [u8] {
    match status {
        400 => canned!("400", "Bad Request", "16"),
        401 => canned!("401", "Unauthorized", "17"),
        403 => canned!("403", "Forbidden", "14"),
        404 => canned!("404", "Not Found", "14"),
        408 => canned!("408", "Request Timeout", "20"),
        411 => canned!("411", "Length Required", "20"),
        413 => canned!("413", "Content Too Large", "22"),
        429 => canned!("429", "Too Many Requests", "22"),
        426 => concat!(
            "HTTP/1.1 426 Upgrade Required\r\n",
            "Content-Type: text/plain\r\n",
            "Content-Length: 21\r\n",
            "Sec-WebSocket-Version: 13\r\n",
            "Connection: close\r\n\r\n",
            "426 Upgrade Required\n"
        )
        .as_bytes(),
        431 => canned!("431", "Request Header Fields Too Large", "36"),
        501 => canned!("501", "Not Implemented", "20"),
        502 => canned!("502", "Bad Gateway", "16"),
        503 => canned!("503", "Service Unavailable", "24"),
        504 => canned!("504", "Gateway Timeout", "20"),
        _ => canned!("500", "Internal Server Error", "26"),
    }
}

/// Reason phrase for the statuses the proxy and its helpers produce.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Whether `value` may be written as a header value: visible ASCII and
/// spaces only, so nothing in it can end the line or start a new header.
pub(crate) fn header_value_is_safe(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&c| c == b' ' || (0x21..=0x7E).contains(&c))
}

/// Whether `name` may be written as a header name (an RFC 9110 token).
pub(crate) fn header_name_is_safe(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&c| super::chunked::is_tchar(c))
}

/// Append a complete HTTP/1.1 response to `out`: status line, Content-Type,
/// Content-Length, `extra_headers` in order, Connection, then `body`.
///
/// A header that could break the framing (CR, LF, other control bytes or
/// non-ASCII in a value, a name that is not a token) is never written: the
/// response becomes a canned 500 with `Connection: close`, and the result
/// is false (the connection must then close).
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
    keep_alive: bool,
) -> bool {
    let ok = write_response_head(
        out,
        status,
        content_type,
        extra_headers,
        body.len(),
        keep_alive,
    );
    if ok {
        out.extend_from_slice(body);
    }
    ok
}

/// The head [`write_response`] would write for a body of `body_len` bytes,
/// without the body: the answer to a HEAD request. Same checks and result.
pub(crate) fn write_response_head(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    extra_headers: &[(&str, &str)],
    body_len: usize,
    keep_alive: bool,
) -> bool {
    let safe = header_value_is_safe(content_type.as_bytes())
        && extra_headers.iter().all(|(name, value)| {
            header_name_is_safe(name.as_bytes()) && header_value_is_safe(value.as_bytes())
        });
    if !safe {
        out.extend_from_slice(error_response(500));
        return false;
    }
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        status,
        reason(status),
        content_type,
        body_len
    );
    for (name, value) in extra_headers {
        super::headers::push_field(out, name.as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(if keep_alive {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::http::{parse_response, BodyKind, Limits, Method};

    const ALL: [u16; 14] = [
        400, 401, 403, 404, 408, 413, 426, 429, 431, 500, 501, 502, 503, 504,
    ];

    /// Parse `bytes` as a response and return (status, body, head text).
    fn check(bytes: &[u8]) -> (u16, Vec<u8>, String) {
        let mut out = Vec::new();
        let r = parse_response(bytes, &Limits::default(), Method::Get, 1, true, &mut out)
            .expect("valid")
            .expect("complete");
        let n = match r.body {
            BodyKind::Length(n) => n,
            BodyKind::Empty => 0,
            other => panic!("no length: {other:?}"),
        };
        let body = &bytes[r.head_len..];
        assert_eq!(body.len() as u64, n, "{}", String::from_utf8_lossy(bytes));
        (
            r.status,
            body.to_vec(),
            String::from_utf8_lossy(&bytes[..r.head_len]).into_owned(),
        )
    }

    #[test]
    fn canned_responses_are_well_framed() {
        for code in ALL {
            let (status, body, head) = check(error_response(code));
            assert_eq!(status, code);
            assert!(body.starts_with(code.to_string().as_bytes()));
            assert!(body.ends_with(b"\n"));
            assert!(head.contains("Connection: close\r\n"));
            assert!(head.contains("Content-Type: text/plain\r\n"));
        }
        assert!(
            String::from_utf8_lossy(error_response(426)).contains("Sec-WebSocket-Version: 13\r\n")
        );
        assert_eq!(error_response(418), error_response(500));
        assert!(error_response(502).ends_with(b"\r\n\r\n502 Bad Gateway\n"));
    }

    #[test]
    fn generated_response() {
        let mut out = b"junk".to_vec();
        out.clear();
        write_response(
            &mut out,
            200,
            "application/json",
            &[("X-Id", "7")],
            b"{\"ok\":true}",
            true,
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\nX-Id: 7\r\nConnection: keep-alive\r\n\r\n{\"ok\":true}"
        );
        let (status, body, _) = check(&out);
        assert_eq!((status, body.as_slice()), (200, &b"{\"ok\":true}"[..]));
        out.clear();
        write_response(&mut out, 404, "text/plain", &[], b"", false);
        assert!(out.ends_with(b"Content-Length: 0\r\nConnection: close\r\n\r\n"));
    }

    #[test]
    fn head_only_response_announces_the_body_it_leaves_out() {
        let mut get = Vec::new();
        assert!(write_response(
            &mut get,
            200,
            "application/json",
            &[],
            b"{\"a\":1}",
            true
        ));
        let mut head = Vec::new();
        assert!(write_response_head(
            &mut head,
            200,
            "application/json",
            &[],
            7,
            true
        ));
        assert_eq!(head, get[..get.len() - 7]);
        assert!(head.ends_with(b"Content-Length: 7\r\nConnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn unsafe_header_values_become_a_500_instead() {
        for (name, value) in [
            ("Location", "http://a/x\r\nSet-Cookie: a=b"),
            ("Location", "http://a/x\nSet-Cookie: a=b"),
            ("Location", "http://a/\u{0}"),
            ("Location", "http://a/caf\u{e9}"),
            ("Set-Cookie: a", "b"),
            ("", "b"),
        ] {
            let mut out = Vec::new();
            let ok = write_response(&mut out, 307, "text/plain", &[(name, value)], b"x", true);
            assert!(!ok, "{name:?}: {value:?}");
            assert_eq!(out, error_response(500));
            let mut out = Vec::new();
            assert!(!write_response_head(
                &mut out,
                307,
                "text/plain",
                &[(name, value)],
                1,
                true
            ));
            assert_eq!(out, error_response(500));
        }
        let mut out = Vec::new();
        assert!(!write_response(
            &mut out,
            200,
            "text/plain\r\nX: y",
            &[],
            b"",
            true
        ));
        assert_eq!(out, error_response(500));
        // Spaces inside values are fine (e.g. media type parameters).
        let mut out = Vec::new();
        assert!(write_response(
            &mut out,
            200,
            "text/plain; charset=utf-8",
            &[("X-A", "a b")],
            b"",
            true
        ));
    }
}
