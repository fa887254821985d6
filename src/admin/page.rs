//! `GET /` on the admin listener: the status page, one self-contained HTML
//! file (`status_page.html`: inline style and script, no external asset)
//! that reads the JSON API (`/api/status`, `/api/backends`,
//! `/api/connections`) every two seconds and drains or resumes backends.
//!
//! The page itself holds no data, so it is served without the admin token;
//! its requests to the API carry the token the operator types into it. It
//! goes out with a Content-Security-Policy that lets only its own inline
//! script and style run (pinned by their SHA-256) and only same-origin
//! fetches leave it: even a value that slipped past the page's escaping
//! could not run code or load anything.

use std::sync::OnceLock;

use base64::Engine as _;
use monoio::net::TcpStream;

use crate::proto::http::{reply, BodyKind, Method, ParsedRequest};
use crate::rt::io::write_vec;

/// The page, as served.
const PAGE: &str = include_str!("status_page.html");

/// True when `req` (whose target is `target`) asks for the status page: a
/// `GET /` (any query) without a body.
pub(super) fn wanted(req: &ParsedRequest, target: &[u8]) -> bool {
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    req.method == Method::Get && path == b"/" && matches!(req.body, BodyKind::Empty)
}

/// Writes the page; false when the write failed (close the connection).
pub(super) async fn serve(stream: &mut TcpStream, keep_alive: bool) -> bool {
    let policy = policy();
    let headers = [
        ("Content-Security-Policy", policy),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-store"),
    ];
    let mut out = Vec::with_capacity(PAGE.len() + 512);
    let framed = reply::write_response(
        &mut out,
        200,
        "text/html; charset=utf-8",
        &headers,
        PAGE.as_bytes(),
        keep_alive,
    );
    write_vec(stream, out).await.0.is_ok() && framed
}

/// The Content-Security-Policy of the page, computed once.
fn policy() -> &'static str {
    static POLICY: OnceLock<String> = OnceLock::new();
    POLICY.get_or_init(|| policy_for(PAGE))
}

/// The policy for `page`: nothing by default; scripts and styles only the
/// page's own inline ones (by hash); fetches to its origin only; images
/// only `data:` (the blank favicon); no base, form target or framing.
fn policy_for(page: &str) -> String {
    let script = inline(page, "script")
        .map(sha256_source)
        .unwrap_or_default();
    let style = inline(page, "style").map(sha256_source).unwrap_or_default();
    format!(
        "default-src 'none'; script-src {script}; style-src {style}; connect-src 'self'; \
         img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// The text between the page's first `<TAG>` and `</TAG>`.
fn inline<'a>(page: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = page.find(&open)? + open.len();
    let len = page[start..].find(&format!("</{tag}>"))?;
    Some(&page[start..start + len])
}

/// A CSP hash source (`'sha256-BASE64'`) for an inline block.
fn sha256_source(text: &str) -> String {
    let digest = sha256(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// SHA-256, from the TLS stack's own crypto provider (no extra crate).
fn sha256(data: &[u8]) -> Vec<u8> {
    match rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256.tls13() {
        Some(suite) => suite.common.hash_provider.hash(data).as_ref().to_vec(),
        // A TLS 1.3 suite always is one; an empty digest would only make
        // the browser refuse the script, never allow more.
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_a_known_digest() {
        let hex: String = sha256(b"abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn the_page_is_self_contained() {
        assert_eq!(PAGE.matches("<script").count(), 1, "one inline script");
        assert_eq!(PAGE.matches("<style").count(), 1, "one inline style");
        for external in ["src=\"http", "href=\"http", "@import", "url(http", "//cdn"] {
            assert!(!PAGE.contains(external), "external reference {external}");
        }
        assert!(!PAGE.contains("innerHTML"), "data goes in with textContent");
        assert!(
            !PAGE.contains("style=\""),
            "no inline style attribute (CSP)"
        );
    }

    #[test]
    fn the_policy_pins_the_inline_blocks() {
        let policy = policy_for(PAGE);
        let script = inline(PAGE, "script").expect("script");
        let style = inline(PAGE, "style").expect("style");
        assert!(policy.contains(&format!("script-src {}", sha256_source(script))));
        assert!(policy.contains(&format!("style-src {}", sha256_source(style))));
        assert!(policy.starts_with("default-src 'none';"));
        assert!(policy.contains("connect-src 'self'"));
        assert!(!policy.contains("unsafe"));
    }

    #[test]
    fn only_a_bodyless_get_of_the_root_is_the_page() {
        let parse = |raw: &[u8]| {
            let limits = crate::proto::http::Limits {
                max_header_bytes: 4096,
                max_headers: 16,
            };
            let fwd = crate::proto::http::ForwardInfo {
                client_ip: std::net::Ipv4Addr::LOCALHOST.into(),
                tls: false,
                trusted: true,
            };
            let mut scratch = Vec::new();
            crate::proto::http::parse_request(raw, &limits, &fwd, &mut scratch)
        };
        let cases: [(&[u8], bool); 5] = [
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
            (b"GET /?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", true),
            (b"GET /api/status HTTP/1.1\r\nHost: a\r\n\r\n", false),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
                false,
            ),
        ];
        for (raw, expected) in cases {
            let Ok(Some(req)) = parse(raw) else {
                panic!("did not parse: {}", String::from_utf8_lossy(raw));
            };
            assert_eq!(
                wanted(&req, &raw[req.path.clone()]),
                expected,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
