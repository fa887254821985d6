//! RFC 6455 section 4 opening handshake over parsed `httparse` headers:
//! request checks, the accept key, and writing both sides' heads.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

pub use super::origin::OriginPolicy;
/// Re-exported because its `Header` type is part of this module's API.
pub use httparse;

/// The GUID appended to the client key before hashing (RFC 6455 1.3).
pub const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `base64(sha1(client_key ++ WS_GUID))`.
pub fn accept_key(client_key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(client_key);
    h.update(WS_GUID.as_bytes());
    B64.encode(h.finalize())
}

/// A key is valid when it is base64 that decodes to exactly 16 bytes.
pub fn is_valid_client_key(key: &[u8]) -> bool {
    // 16 bytes encode to 24 characters ending in "==".
    if key.len() != 24 {
        return false;
    }
    let mut out = [0u8; 18];
    matches!(B64.decode_slice(key, &mut out), Ok(16))
}

/// The balancer's RFC 6455 checks of a client's upgrade request, whose
/// head was parsed from `data`: GET over HTTP/1.1 without a body or an
/// `Expect` (400), version 13 (426 otherwise), a valid key (400). `Err`
/// carries the status to answer.
pub fn check_upgrade_request(
    data: &[u8],
    req: &crate::proto::http::ParsedRequest,
) -> Result<(), u16> {
    use crate::proto::http::{BodyKind, Method};
    // An upgrade has no body, so nothing to expect a 100 Continue for.
    if req.method != Method::Get
        || req.minor_version < 1
        || req.body != BodyKind::Empty
        || req.expect_continue
    {
        return Err(400);
    }
    match req.ws_version.clone().and_then(|r| data.get(r)) {
        Some(b"13") => {}
        _ => return Err(426),
    }
    match req.ws_key.clone().and_then(|r| data.get(r)) {
        Some(key) if is_valid_client_key(key) => Ok(()),
        _ => Err(400),
    }
}

/// A fresh random key (16 random bytes, base64).
pub fn generate_client_key() -> String {
    let mut raw = [0u8; 16];
    fastrand::fill(&mut raw);
    B64.encode(raw)
}

/// Why a handshake was refused; `status()` gives the HTTP answer.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    #[error("not a websocket upgrade request")]
    /// The request does not ask for a WebSocket upgrade.
    NotWebSocket,
    #[error("websocket upgrade must be GET over HTTP/1.1")]
    /// The upgrade is not a `GET` over HTTP/1.1.
    BadMethod,
    #[error("missing Sec-WebSocket-Key")]
    /// No `Sec-WebSocket-Key`.
    MissingKey,
    #[error("invalid Sec-WebSocket-Key")]
    /// `Sec-WebSocket-Key` is not 16 bytes in base64.
    BadKey,
    #[error("unsupported Sec-WebSocket-Version (13 required)")]
    /// `Sec-WebSocket-Version` is not 13.
    BadVersion,
    #[error("origin not allowed")]
    /// The `Origin` is not allowed by the origin policy.
    OriginRefused,
    #[error("bad websocket handshake response: {0}")]
    /// The server's answer to our upgrade is not a valid 101 for our key.
    BadResponse(&'static str),
}

impl HandshakeError {
    /// 426 for a bad version (answer with `Sec-WebSocket-Version: 13`), 403
    /// for a refused origin, 400 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::BadVersion => 426,
            HandshakeError::OriginRefused => 403,
            _ => 400,
        }
    }
}

fn trim(v: &[u8]) -> &[u8] {
    v.trim_ascii()
}

/// Whether a comma-separated header value holds `token` (ASCII case-insensitive).
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether any header named `name` holds `token` in its comma list.
fn headers_have_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .any(|h| has_token(h.value, token))
}

/// The first header named `name`, trimmed, plus how many there were.
fn header<'a>(headers: &[httparse::Header<'a>], name: &str) -> (Option<&'a [u8]>, usize) {
    let mut first = None;
    let mut count = 0;
    for h in headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)) {
        count += 1;
        if first.is_none() {
            first = Some(trim(h.value));
        }
    }
    (first, count)
}

/// Connection holds the token "upgrade" AND Upgrade holds "websocket".
pub fn is_upgrade_request(headers: &[httparse::Header<'_>]) -> bool {
    headers_have_token(headers, "connection", "upgrade")
        && headers_have_token(headers, "upgrade", "websocket")
}

/// The handshake fields of a valid client request, borrowed from its head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientHandshake<'a> {
    /// The `Sec-WebSocket-Key` value.
    pub key: &'a [u8],
    /// The `Sec-WebSocket-Version` value.
    pub version: &'a [u8],
    /// The `Origin` value, if sent.
    pub origin: Option<&'a [u8]>,
    /// The `Sec-WebSocket-Protocol` value, if sent.
    pub protocols: Option<&'a [u8]>,
    /// The `Sec-WebSocket-Extensions` value, if sent.
    pub extensions: Option<&'a [u8]>,
}

/// Checks a client's upgrade request: an upgrade over HTTP/1.1+, GET only,
/// `Sec-WebSocket-Version: 13`, exactly one valid `Sec-WebSocket-Key`.
/// (The origin is returned for [`OriginPolicy`] to judge.)
pub fn check_client_request<'a>(
    method: &str,
    minor_version: u8,
    headers: &[httparse::Header<'a>],
) -> Result<ClientHandshake<'a>, HandshakeError> {
    if !is_upgrade_request(headers) {
        return Err(HandshakeError::NotWebSocket);
    }
    if method != "GET" || minor_version < 1 {
        return Err(HandshakeError::BadMethod);
    }
    let version = match header(headers, "sec-websocket-version") {
        (Some(v), 1) if v == b"13" => v,
        _ => return Err(HandshakeError::BadVersion),
    };
    let key = match header(headers, "sec-websocket-key") {
        (None, _) => return Err(HandshakeError::MissingKey),
        (Some(k), 1) if is_valid_client_key(k) => k,
        _ => return Err(HandshakeError::BadKey),
    };
    Ok(ClientHandshake {
        key,
        version,
        origin: header(headers, "origin").0,
        protocols: header(headers, "sec-websocket-protocol").0,
        extensions: header(headers, "sec-websocket-extensions").0,
    })
}

/// Appends the `101 Switching Protocols` head.
pub fn write_server_response(
    out: &mut Vec<u8>,
    accept: &str,
    protocol: Option<&[u8]>,
    extensions: Option<&[u8]>,
) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    );
    put_header(out, b"Sec-WebSocket-Accept", accept.as_bytes());
    if let Some(p) = protocol {
        put_header(out, b"Sec-WebSocket-Protocol", p);
    }
    if let Some(e) = extensions {
        put_header(out, b"Sec-WebSocket-Extensions", e);
    }
    out.extend_from_slice(b"\r\n");
}

fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends a client upgrade request head. `extra_headers` whose name or
/// value holds CR or LF are skipped (no header injection).
pub fn write_client_request(
    out: &mut Vec<u8>,
    host: &str,
    path: &str,
    key: &str,
    extra_headers: &[(&str, &str)],
) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(if path.is_empty() {
        b"/"
    } else {
        path.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    put_header(out, b"Host", host.as_bytes());
    out.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\n");
    put_header(out, b"Sec-WebSocket-Key", key.as_bytes());
    out.extend_from_slice(b"Sec-WebSocket-Version: 13\r\n");
    let clean = |s: &str| !s.bytes().any(|b| b == b'\r' || b == b'\n');
    for (n, v) in extra_headers.iter().filter(|(n, v)| clean(n) && clean(v)) {
        put_header(out, n.as_bytes(), v.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Checks the server's answer to a request sent with `key`.
pub fn check_server_response(
    status: u16,
    headers: &[httparse::Header<'_>],
    key: &str,
) -> Result<(), HandshakeError> {
    if status != 101 {
        return Err(HandshakeError::BadResponse("status is not 101"));
    }
    if !headers_have_token(headers, "upgrade", "websocket") {
        return Err(HandshakeError::BadResponse("missing Upgrade: websocket"));
    }
    if !headers_have_token(headers, "connection", "upgrade") {
        return Err(HandshakeError::BadResponse("missing Connection: upgrade"));
    }
    match header(headers, "sec-websocket-accept") {
        (Some(a), 1) if a == accept_key(key.as_bytes()).as_bytes() => Ok(()),
        (None, _) => Err(HandshakeError::BadResponse("missing Sec-WebSocket-Accept")),
        _ => Err(HandshakeError::BadResponse("wrong Sec-WebSocket-Accept")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use httparse::Header;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn h<'a>(name: &'a str, value: &'a str) -> Header<'a> {
        Header {
            name,
            value: value.as_bytes(),
        }
    }

    fn good() -> Vec<Header<'static>> {
        vec![
            h("Host", "x"),
            h("upgrade", "WebSocket"),
            h("Connection", "keep-alive, Upgrade"),
            h("Sec-WebSocket-Key", KEY),
            h("sec-websocket-version", "13"),
            h("Origin", "http://example.com"),
            h("Sec-WebSocket-Protocol", "chat, superchat"),
        ]
    }

    fn without(name: &str) -> Vec<Header<'static>> {
        good()
            .into_iter()
            .filter(|x| !x.name.eq_ignore_ascii_case(name))
            .collect()
    }

    #[test]
    fn rfc_example_accept_key() {
        // RFC 6455 section 1.3 (and MDN). Note: the task brief quoted
        // "s3pPLMBiTxaLDo4RxFEnC6aJpGA=", which is not what SHA-1 gives.
        assert_eq!(accept_key(KEY.as_bytes()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn client_keys() {
        assert!(is_valid_client_key(KEY.as_bytes()));
        assert!(!is_valid_client_key(b"dGhlIHNhbXBsZSBub25jZQ"));
        assert!(!is_valid_client_key(b"dGhlIHNhbXBsZSBub25jZQ=!"));
        assert!(!is_valid_client_key(b"AAAAAAAAAAAAAAAAAAAAAAAA")); // 18 bytes
        for _ in 0..20 {
            assert!(is_valid_client_key(generate_client_key().as_bytes()));
        }
        assert_ne!(generate_client_key(), generate_client_key());
    }

    #[test]
    fn upgrade_detection() {
        assert!(is_upgrade_request(&good()));
        assert!(!is_upgrade_request(&without("upgrade")));
        assert!(!is_upgrade_request(&[
            h("Connection", "upgraded"),
            h("Upgrade", "websocket")
        ]));
        assert!(is_upgrade_request(&[
            h("Connection", "close"),
            h("Connection", " UPGRADE "),
            h("Upgrade", "h2c, websocket")
        ]));
    }

    #[test]
    fn client_request_checks() {
        let hs = check_client_request("GET", 1, &good()).unwrap();
        assert_eq!(hs.key, KEY.as_bytes());
        assert_eq!(hs.origin, Some(&b"http://example.com"[..]));
        assert_eq!(hs.protocols, Some(&b"chat, superchat"[..]));
        assert_eq!(hs.extensions, None);
        let e = |m: &str, v: u8, hs: &[Header<'_>]| check_client_request(m, v, hs).unwrap_err();
        assert_eq!(
            e("GET", 1, &without("connection")),
            HandshakeError::NotWebSocket
        );
        assert_eq!(e("POST", 1, &good()), HandshakeError::BadMethod);
        assert_eq!(e("GET", 0, &good()), HandshakeError::BadMethod);
        assert_eq!(
            e("GET", 1, &without("sec-websocket-key")),
            HandshakeError::MissingKey
        );
        let mut bad = without("sec-websocket-key");
        bad.push(h("Sec-WebSocket-Key", "short"));
        assert_eq!(e("GET", 1, &bad), HandshakeError::BadKey);
        bad.push(h("Sec-WebSocket-Key", KEY));
        assert_eq!(e("GET", 1, &bad), HandshakeError::BadKey);
        let mut v8 = without("sec-websocket-version");
        assert_eq!(e("GET", 1, &v8), HandshakeError::BadVersion);
        v8.push(h("Sec-WebSocket-Version", "8"));
        assert_eq!(e("GET", 1, &v8), HandshakeError::BadVersion);
        assert_eq!(HandshakeError::BadVersion.status(), 426);
        assert_eq!(HandshakeError::OriginRefused.status(), 403);
        assert_eq!(HandshakeError::BadKey.status(), 400);
        assert_eq!(HandshakeError::BadResponse("x").status(), 400);
    }

    #[test]
    fn heads_round_trip_through_httparse() {
        let mut req = Vec::new();
        write_client_request(
            &mut req,
            "example.com:80",
            "/chat",
            KEY,
            &[("Origin", "http://a"), ("X-Bad", "a\r\nInjected: 1")],
        );
        let mut hs = [httparse::EMPTY_HEADER; 16];
        let mut r = httparse::Request::new(&mut hs);
        assert!(r.parse(&req).unwrap().is_complete());
        assert_eq!((r.path, r.headers.len()), (Some("/chat"), 6));
        let ch = check_client_request(r.method.unwrap(), r.version.unwrap(), r.headers).unwrap();
        assert_eq!(ch.origin, Some(&b"http://a"[..]));

        let mut resp = Vec::new();
        write_server_response(&mut resp, &accept_key(ch.key), Some(b"chat"), None);
        let mut hs = [httparse::EMPTY_HEADER; 16];
        let mut p = httparse::Response::new(&mut hs);
        assert!(p.parse(&resp).unwrap().is_complete());
        assert_eq!(
            check_server_response(p.code.unwrap(), p.headers, KEY),
            Ok(())
        );
        let other = generate_client_key();
        assert_eq!(
            check_server_response(101, p.headers, &other),
            Err(HandshakeError::BadResponse("wrong Sec-WebSocket-Accept"))
        );
        assert!(check_server_response(200, p.headers, KEY).is_err());
        assert!(check_server_response(101, &p.headers[1..], KEY).is_err());
        assert!(check_server_response(
            101,
            &[h("Upgrade", "websocket"), h("Connection", "upgrade")],
            KEY
        )
        .is_err());
    }

    fn upgrade_status(head: &str) -> Result<(), u16> {
        use crate::proto::http::{parse_request, ForwardInfo, Limits};
        let limits = Limits {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
        };
        let fwd = ForwardInfo {
            client_ip: std::net::Ipv4Addr::LOCALHOST.into(),
            tls: false,
            trusted: false,
        };
        let mut scratch = Vec::new();
        let req = parse_request(head.as_bytes(), &limits, &fwd, &mut scratch)
            .expect("parses")
            .expect("whole head");
        check_upgrade_request(head.as_bytes(), &req)
    }

    #[test]
    fn upgrade_requests_are_checked_with_the_right_status() {
        let ok = format!(
            "GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
        );
        assert_eq!(upgrade_status(&ok), Ok(()));
        assert_eq!(upgrade_status(&ok.replace("GET", "POST")), Err(400));
        assert_eq!(
            upgrade_status(&ok.replace("HTTP/1.1", "HTTP/1.0")),
            Err(400)
        );
        assert_eq!(
            upgrade_status(&ok.replace("Version: 13", "Version: 8")),
            Err(426)
        );
        assert_eq!(upgrade_status(&ok.replace(KEY, "short")), Err(400));
        let no_key = ok.replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), "");
        assert_eq!(upgrade_status(&no_key), Err(400));
    }
}
