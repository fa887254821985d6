//! Request heads: parse with httparse, refuse anything that could be framed
//! two ways (smuggling), and write the head to forward to a backend
//! (HTTP/1.1, hop-by-hop fields removed, X-Forwarded-* added).

use super::headers::{
    connection_names_others, framing, has_obs_fold, header_has_token, is_hop_by_hop,
    lines_are_contiguous, named_in_connection, push_field, range_in, value_is_clean, TeCodings,
};
use super::{BodyKind, HttpError, Limits, Method, MAX_HEADERS_CAP};
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::ops::Range;

/// Who the request came from, for X-Forwarded-For / X-Forwarded-Proto.
#[derive(Clone, Copy, Debug)]
pub struct ForwardInfo {
    /// The client's address, appended to `X-Forwarded-For`.
    pub client_ip: IpAddr,
    /// The client connected over TLS (`X-Forwarded-Proto: https`).
    pub tls: bool,
    /// The peer is a proxy in `--trusted-proxies` (decided once per
    /// connection): its forwarding fields are kept and appended to. From
    /// anyone else they are removed and written afresh.
    pub trusted: bool,
}

impl ForwardInfo {
    /// These facts with the client's address already written out as
    /// `X-Forwarded-For` gives it: done once per connection, not per request.
    pub fn prepared(self) -> PreparedForward {
        use std::io::Write as _;
        let mut text = [0u8; IP_TEXT_MAX];
        let mut rest = &mut text[..];
        // The longest address text (IPv6 in full) is 39 bytes: it fits.
        let _ = write!(rest, "{}", self.client_ip);
        let len = IP_TEXT_MAX - rest.len();
        PreparedForward {
            info: self,
            text,
            len: len as u8,
        }
    }
}

/// Room for an address's text ("ffff:...:ffff" is 39 bytes).
const IP_TEXT_MAX: usize = 48;

/// [`ForwardInfo`] with the client's address formatted (see
/// [`ForwardInfo::prepared`] and [`parse_request_prepared`]).
#[derive(Clone, Copy, Debug)]
pub struct PreparedForward {
    info: ForwardInfo,
    text: [u8; IP_TEXT_MAX],
    len: u8,
}

impl PreparedForward {
    /// The facts it was prepared from.
    pub fn info(&self) -> &ForwardInfo {
        &self.info
    }

    /// The client's address as `X-Forwarded-For` carries it.
    pub fn ip_text(&self) -> &[u8] {
        &self.text[..usize::from(self.len)]
    }
}

/// Fields that say who the client is or how it connected. From an untrusted
/// peer they are lies until proven otherwise: all are removed, and only
/// `X-Forwarded-For` and `X-Forwarded-Proto` are written afresh.
/// `X-Real-IP` is not added back: `X-Forwarded-For` with a single entry
/// says the same, and one source of truth is harder to get wrong.
fn is_forwarding_field(name: &str) -> bool {
    // Most fields start with neither letter: one byte test for them.
    if !matches!(name.as_bytes().first(), Some(b'x' | b'X' | b'f' | b'F')) {
        return false;
    }
    [
        "x-forwarded-for",
        "x-forwarded-proto",
        "forwarded",
        "x-real-ip",
    ]
    .iter()
    .any(|f| same_field_folding_underscores(name, f))
}

/// Whether `name` is the field `lower` (lower case, dashes), with `_` taken
/// as `-`: CGI-style backends (WSGI, Rack, PHP) read `X_Forwarded_For` and
/// `X-Forwarded-For` as the same variable, so a spelling with underscores
/// must not slip a forged client address past the rewrite.
fn same_field_folding_underscores(name: &str, lower: &str) -> bool {
    name.len() == lower.len()
        && name.bytes().zip(lower.bytes()).all(|(a, b)| {
            let a = if a == b'_' {
                b'-'
            } else {
                a.to_ascii_lowercase()
            };
            a == b
        })
}

/// A parsed request head. Ranges index the input buffer given to
/// [`parse_request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedRequest {
    /// Bytes of the head at the front of the input, final CRLFCRLF included.
    pub head_len: usize,
    /// The request method.
    pub method: Method,
    /// The request target, byte-exact.
    pub path: Range<usize>,
    /// 0 or 1.
    pub minor_version: u8,
    /// `Empty`, `Length(n)` with n > 0 (`Content-Length: 0` gives `Empty`),
    /// or `Chunked`; never `UntilClose`.
    pub body: BodyKind,
    /// The client connection may be reused after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent (the field is still forwarded).
    pub expect_continue: bool,
    /// HTTP/1.1 with `Connection: upgrade` and `Upgrade: websocket`. The
    /// method is not checked here (the handshake code does).
    pub upgrade_websocket: bool,
    /// The `Host` value, as a range of the input.
    pub host: Option<Range<usize>>,
    /// The `Origin` value, as a range of the input.
    pub origin: Option<Range<usize>>,
    /// The `Authorization` value, as a range of the input.
    pub authorization: Option<Range<usize>>,
    /// The `Cookie` value, as a range of the input.
    pub cookie: Option<Range<usize>>,
    /// The `Sec-WebSocket-Key` value, as a range of the input.
    pub ws_key: Option<Range<usize>>,
    /// The `Sec-WebSocket-Version` value, as a range of the input.
    pub ws_version: Option<Range<usize>>,
}

/// Map an httparse error, telling obs-fold (a smuggling vector) apart.
pub(crate) fn parse_error(buf: &[u8], e: httparse::Error) -> HttpError {
    match e {
        httparse::Error::TooManyHeaders => HttpError::HeadersTooLarge,
        _ if has_obs_fold(buf) => HttpError::Smuggling("obsolete line folding"),
        httparse::Error::HeaderName => HttpError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => HttpError::Malformed("invalid header value"),
        httparse::Error::NewLine => HttpError::Malformed("invalid line ending"),
        httparse::Error::Version => HttpError::Malformed("unsupported HTTP version"),
        httparse::Error::Token => HttpError::Malformed("invalid method"),
        httparse::Error::Status => HttpError::Malformed("invalid status"),
    }
}

/// Parse a request head at the front of `buf` and APPEND to `out` the head
/// to send to a backend.
///
/// The request line is rewritten as HTTP/1.1 (method and target byte-exact);
/// hop-by-hop fields are removed (Connection, Keep-Alive, Proxy-Connection,
/// TE, Trailer, Upgrade and any field named in Connection, except framing
/// fields and Host), except that a websocket upgrade keeps
/// `Connection: Upgrade` and `Upgrade: websocket`; `Transfer-Encoding:
/// chunked` is kept for a chunked body (forwarded verbatim); the first
/// Content-Length is kept. From a trusted peer (`fwd.trusted`),
/// `X-Forwarded-For` gets the peer's ip appended to any incoming values (all
/// joined into one field), incoming `X-Forwarded-Proto` fields are kept (the
/// proxy in front knows the scheme its client used; ours is added only when
/// it sent none), and `Forwarded` / `X-Real-IP` are kept. From any other
/// peer those four fields (in any spelling, `_` for `-` included) are
/// removed and `X-Forwarded-For: <peer>` and `X-Forwarded-Proto` are written
/// fresh. Every other field is kept in order, byte-exact (values as
/// trimmed by httparse). An HTTP/1.0 request without Host gets an empty
/// `Host:` so that the HTTP/1.1 head sent on is valid.
///
/// `Ok(None)`: the head is incomplete and shorter than the limit. On `Err`
/// nothing is appended to `out`.
pub fn parse_request(
    buf: &[u8],
    limits: &Limits,
    fwd: &ForwardInfo,
    out: &mut Vec<u8>,
) -> Result<Option<ParsedRequest>, HttpError> {
    parse_request_prepared(buf, limits, &fwd.prepared(), out)
}

/// [`parse_request`] for a connection that formatted its client's address
/// once ([`ForwardInfo::prepared`]) for all its requests.
pub fn parse_request_prepared(
    buf: &[u8],
    limits: &Limits,
    prepared: &PreparedForward,
    out: &mut Vec<u8>,
) -> Result<Option<ParsedRequest>, HttpError> {
    let fwd = prepared.info();
    let mut storage = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS_CAP];
    let max = limits.max_headers.min(MAX_HEADERS_CAP);
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut storage[..max]) {
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

    let (Some(method), Some(path), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Err(HttpError::Malformed("incomplete request line"));
    };
    let headers: &[httparse::Header<'_>] = req.headers;
    // httparse refuses folded lines; make sure no line was skipped anyway.
    if !lines_are_contiguous(buf, headers, head_len) {
        return Err(HttpError::Smuggling("obsolete line folding"));
    }

    let mut host = None;
    let mut hosts = 0usize;
    let mut origin = None;
    let mut authorization = None;
    let mut cookie = None;
    let mut ws_key = None;
    let mut ws_version = None;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut conn_upgrade = false;
    let mut conn_other = false;
    let mut upgrade_ws = false;
    let mut expect_continue = false;
    for h in headers {
        if !value_is_clean(h.value) {
            return Err(HttpError::Malformed("control character in header value"));
        }
        let n = h.name;
        let first = |slot: &mut Option<Range<usize>>| {
            if slot.is_none() {
                *slot = Some(range_in(buf, h.value));
            }
        };
        if n.eq_ignore_ascii_case("host") {
            hosts += 1;
            first(&mut host);
        } else if n.eq_ignore_ascii_case("connection") {
            conn_close |= header_has_token(h.value, "close");
            conn_keep_alive |= header_has_token(h.value, "keep-alive");
            conn_upgrade |= header_has_token(h.value, "upgrade");
            conn_other |= connection_names_others(h.value);
        } else if n.eq_ignore_ascii_case("upgrade") {
            upgrade_ws |= header_has_token(h.value, "websocket");
        } else if n.eq_ignore_ascii_case("expect") {
            expect_continue |= h.value.eq_ignore_ascii_case(b"100-continue");
        } else if n.eq_ignore_ascii_case("origin") {
            first(&mut origin);
        } else if n.eq_ignore_ascii_case("authorization") {
            first(&mut authorization);
        } else if n.eq_ignore_ascii_case("cookie") {
            first(&mut cookie);
        } else if n.eq_ignore_ascii_case("sec-websocket-key") {
            first(&mut ws_key);
        } else if n.eq_ignore_ascii_case("sec-websocket-version") {
            first(&mut ws_version);
        }
    }

    let f = framing(headers)?;
    if f.te != TeCodings::Absent && minor_version == 0 {
        return Err(HttpError::Smuggling(
            "Transfer-Encoding in an HTTP/1.0 request",
        ));
    }
    if f.te != TeCodings::Absent && f.content_length.is_some() {
        return Err(HttpError::Smuggling(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    let body = match (f.te, f.content_length) {
        (TeCodings::Chunked, _) => BodyKind::Chunked,
        (TeCodings::ChunkedAfterOthers, _) => return Err(HttpError::UnsupportedTransferEncoding),
        (TeCodings::NotChunkedLast, _) => {
            return Err(HttpError::Smuggling(
                "chunked is not the final transfer coding",
            ))
        }
        (TeCodings::Absent, Some(0) | None) => BodyKind::Empty,
        (TeCodings::Absent, Some(n)) => BodyKind::Length(n),
    };
    if hosts > 1 {
        return Err(HttpError::Malformed("more than one Host field"));
    }
    if hosts == 0 && minor_version == 1 {
        return Err(HttpError::Malformed("missing Host field"));
    }

    let upgrade_websocket = minor_version == 1 && conn_upgrade && upgrade_ws;
    // RFC 9110 section 10.1.1: ignore 100-continue from an HTTP/1.0 client.
    let expect_continue = expect_continue && minor_version == 1;
    let keep_alive = !conn_close && (minor_version == 1 || conn_keep_alive);

    // Validated: now write the head for the backend.
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut cl_written = false;
    let mut te_written = false;
    let mut xff_seen = false;
    let mut xfp_kept = false;
    for h in headers {
        let n = h.name;
        if is_hop_by_hop(n) {
            continue;
        }
        if is_forwarding_field(n) {
            if !fwd.trusted {
                continue;
            }
            if n.eq_ignore_ascii_case("x-forwarded-for") {
                xff_seen = true;
                continue;
            }
            xfp_kept |= n.eq_ignore_ascii_case("x-forwarded-proto");
            push_field(out, n.as_bytes(), h.value);
            continue;
        }
        if n.eq_ignore_ascii_case("transfer-encoding") {
            if !te_written {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
                te_written = true;
            }
            continue;
        }
        if n.eq_ignore_ascii_case("content-length") {
            if !cl_written {
                push_field(out, n.as_bytes(), h.value);
                cl_written = true;
            }
            continue;
        }
        if conn_other && named_in_connection(headers, n) {
            continue;
        }
        push_field(out, n.as_bytes(), h.value);
    }
    if hosts == 0 {
        // HTTP/1.0 without Host goes out as HTTP/1.1, which needs one: an
        // empty Host is what RFC 9112 section 3.2 says for a missing authority.
        out.extend_from_slice(b"Host: \r\n");
    }
    if upgrade_websocket {
        out.extend_from_slice(b"Connection: Upgrade\r\nUpgrade: websocket\r\n");
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    if xff_seen {
        for h in headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
        {
            if !h.value.is_empty() {
                out.extend_from_slice(h.value);
                out.extend_from_slice(b", ");
            }
        }
    }
    out.extend_from_slice(prepared.ip_text());
    out.extend_from_slice(if xfp_kept {
        b"\r\n\r\n"
    } else if fwd.tls {
        b"\r\nX-Forwarded-Proto: https\r\n\r\n"
    } else {
        b"\r\nX-Forwarded-Proto: http\r\n\r\n"
    });

    Ok(Some(ParsedRequest {
        head_len,
        method: Method::from_bytes(method.as_bytes()),
        path: range_in(buf, path.as_bytes()),
        minor_version,
        body,
        keep_alive,
        expect_continue,
        upgrade_websocket,
        host,
        origin,
        authorization,
        cookie,
        ws_key,
        ws_version,
    }))
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "forward_tests.rs"]
mod forward_tests;
