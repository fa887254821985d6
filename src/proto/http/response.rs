//! Response heads: parse with httparse, decide the body framing (RFC 9112
//! section 6.3) and keep-alive on both sides, and write the head to send to
//! the client (client's version, hop-by-hop fields removed).

use super::headers::{
    connection_names_others, first_line_start, framing, header_has_token, is_hop_by_hop,
    lines_are_contiguous, named_in_connection, push_field, value_is_clean, TeCodings,
};
use super::request::parse_error;
use super::{BodyKind, HttpError, Limits, Method, MAX_HEADERS_CAP};
use std::mem::MaybeUninit;

/// A parsed response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedResponse {
    /// Bytes of the head at the front of the input, final CRLFCRLF included.
    pub head_len: usize,
    /// The status code (100..=999).
    pub status: u16,
    /// The backend's minor version, 0 or 1.
    pub minor_version: u8,
    /// `Content-Length: 0` gives `Empty`.
    pub body: BodyKind,
    /// The backend connection can be reused after this response.
    pub backend_keep_alive: bool,
    /// What the head in `out` told the client: false means the proxy must
    /// close the client connection after this response.
    pub client_keep_alive: bool,
    /// A 1xx other than 101: a final response follows on the same exchange.
    pub informational: bool,
    /// 101 with `Upgrade: websocket`: the connection becomes a tunnel.
    pub upgrade: bool,
}

/// Parse a response head at the front of `buf` and APPEND to `out` the head
/// to send to the client.
///
/// The status line is kept byte-exact except the version, which becomes the
/// client's (`HTTP/1.<client_minor_version>`). Hop-by-hop fields are removed
/// as for requests (a 101 keeps `Connection: Upgrade` / `Upgrade:
/// websocket`). Framing: a response to HEAD, 1xx, 204 and 304 have no body;
/// else `Transfer-Encoding` with a final `chunked` gives `Chunked` (the
/// fields are forwarded as they are; the body is forwarded verbatim), other
/// codings give `UntilClose`; else `Content-Length`; else `UntilClose`.
///
/// `client_keep_alive` is false when the caller will close the client
/// connection after this response (the client asked, a drain, a request
/// body whose rest may not get through). A final head says `Connection: close` when the
/// client connection will close (that, or the body runs until close) and
/// `Connection: keep-alive` to an HTTP/1.0 client that keeps alive. An
/// HTTP/1.0 client cannot read a chunked body and the body is not
/// de-chunked: such a response goes out with `Connection: close` and
/// `client_keep_alive == false`, and the proxy closes after forwarding it.
///
/// Errors (the proxy answers 502): malformed heads, obs-fold, bad or
/// conflicting Content-Length, Content-Length with Transfer-Encoding,
/// Transfer-Encoding from an HTTP/1.0 backend, `chunked` applied twice.
/// On `Err` nothing is appended to `out`.
pub fn parse_response(
    buf: &[u8],
    limits: &Limits,
    request_method: Method,
    client_minor_version: u8,
    client_keep_alive: bool,
    out: &mut Vec<u8>,
) -> Result<Option<ParsedResponse>, HttpError> {
    let mut storage = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS_CAP];
    let max = limits.max_headers.min(MAX_HEADERS_CAP);
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut storage[..max],
    );
    let head_len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_header_bytes => {
            return Err(HttpError::HeadersTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(parse_error(buf, e)),
    };
    if head_len > limits.max_header_bytes {
        return Err(HttpError::HeadersTooLarge);
    }

    let (Some(status), Some(minor_version)) = (resp.code, resp.version) else {
        return Err(HttpError::Malformed("incomplete status line"));
    };
    if !(100..=999).contains(&status) {
        return Err(HttpError::Malformed("status out of range"));
    }
    // "HTTP/1.x" is 8 bytes; the rest of the first line is " code reason".
    let line = first_line_start(&buf[..head_len]);
    let line_end = buf[line..head_len]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(line, |p| line + p);
    let status_rest = buf.get(line + 8..line_end).unwrap_or_default();
    let status_rest = status_rest.strip_suffix(b"\r").unwrap_or(status_rest);
    let headers: &[httparse::Header<'_>] = resp.headers;
    // httparse refuses folded lines; make sure no line was skipped anyway.
    if !lines_are_contiguous(buf, headers, head_len) {
        return Err(HttpError::Smuggling("obsolete line folding"));
    }

    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut upgrade_ws = false;
    let mut conn_other = false;
    for h in headers {
        if !value_is_clean(h.value) {
            return Err(HttpError::Malformed("control character in header value"));
        }
        if h.name.eq_ignore_ascii_case("connection") {
            conn_close |= header_has_token(h.value, "close");
            conn_keep_alive |= header_has_token(h.value, "keep-alive");
            conn_other |= connection_names_others(h.value);
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade_ws |= header_has_token(h.value, "websocket");
        }
    }
    let f = framing(headers)?;
    if f.te != TeCodings::Absent {
        if minor_version == 0 {
            return Err(HttpError::Smuggling(
                "Transfer-Encoding from an HTTP/1.0 backend",
            ));
        }
        if f.content_length.is_some() {
            return Err(HttpError::Smuggling(
                "both Content-Length and Transfer-Encoding",
            ));
        }
    }

    let informational = (100..200).contains(&status) && status != 101;
    let switching = status == 101;
    let upgrade = switching && upgrade_ws;
    let no_body = request_method == Method::Head
        || (100..200).contains(&status)
        || status == 204
        || status == 304;
    let body = match (no_body, f.te, f.content_length) {
        (true, _, _) => BodyKind::Empty,
        (false, TeCodings::Chunked | TeCodings::ChunkedAfterOthers, _) => BodyKind::Chunked,
        (false, TeCodings::NotChunkedLast, _) => {
            // A list with `chunked` twice is refused; chunked not last reads until close.
            if f.te == TeCodings::NotChunkedLast && chunked_repeated(headers) {
                return Err(HttpError::Smuggling("chunked applied more than once"));
            }
            BodyKind::UntilClose
        }
        (false, TeCodings::Absent, Some(0)) => BodyKind::Empty,
        (false, TeCodings::Absent, Some(n)) => BodyKind::Length(n),
        (false, TeCodings::Absent, None) => BodyKind::UntilClose,
    };
    let backend_keep_alive = !switching
        && body != BodyKind::UntilClose
        && !conn_close
        && (minor_version == 1 || conn_keep_alive);
    let client_keep_alive = if informational {
        client_keep_alive
    } else {
        client_keep_alive
            && !switching
            && body != BodyKind::UntilClose
            && !(client_minor_version == 0 && body == BodyKind::Chunked)
    };

    out.extend_from_slice(if client_minor_version == 0 {
        b"HTTP/1.0"
    } else {
        b"HTTP/1.1"
    });
    out.extend_from_slice(status_rest);
    out.extend_from_slice(b"\r\n");
    for h in headers {
        let n = h.name;
        if is_hop_by_hop(n) || (conn_other && named_in_connection(headers, n)) {
            continue;
        }
        push_field(out, n.as_bytes(), h.value);
    }
    if upgrade {
        out.extend_from_slice(b"Connection: Upgrade\r\nUpgrade: websocket\r\n");
    } else if switching || informational {
        // Interim or non-websocket switch: no connection management fields.
    } else if !client_keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if client_minor_version == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");

    Ok(Some(ParsedResponse {
        head_len,
        status,
        minor_version,
        body,
        backend_keep_alive,
        client_keep_alive,
        informational,
        upgrade,
    }))
}

/// True when `chunked` appears more than once across Transfer-Encoding.
fn chunked_repeated(headers: &[httparse::Header<'_>]) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .filter(|c| super::headers::trim_ows(c).eq_ignore_ascii_case(b"chunked"))
        .count()
        > 1
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
