//! A small blocking HTTP/1.1 client for a balancer's admin API (`wslb
//! publish`, the demo): one request per connection (`Connection: close`),
//! JSON bodies, every step bounded by one deadline.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Largest answer read.
const MAX_ANSWER: usize = 4 << 20;

/// Where a balancer's admin API is: `http://HOST:PORT[/prefix]` (or just
/// `HOST:PORT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUrl {
    /// `HOST:PORT`, as given (the Host header and the address to resolve).
    pub authority: String,
    /// A path prefix before `/api/...` (empty or starting with `/`, no
    /// trailing `/`).
    pub prefix: String,
}

impl AdminUrl {
    /// Parses an admin URL; the port defaults to 80.
    pub fn parse(s: &str) -> Result<AdminUrl, String> {
        let rest = if let Some(r) = strip_scheme(s, "http://") {
            r
        } else if strip_scheme(s, "https://").is_some() {
            return Err(format!(
                "{s}: the admin API speaks plain HTTP (use http://)"
            ));
        } else if s.contains("://") {
            return Err(format!("{s}: not an http:// URL"));
        } else {
            s
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains(['@', ' ', '?', '#']) {
            return Err(format!("{s}: bad host"));
        }
        let authority = if has_port(authority) {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(AdminUrl {
            authority,
            prefix: path.trim_end_matches('/').to_string(),
        })
    }
}

impl std::fmt::Display for AdminUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority, self.prefix)
    }
}

fn strip_scheme<'a>(s: &'a str, scheme: &str) -> Option<&'a str> {
    let head = s.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme)
        .then(|| &s[scheme.len()..])
}

/// Whether `host[:port]` names a port (IPv6 literals are bracketed).
fn has_port(authority: &str) -> bool {
    match authority.rfind(']') {
        Some(close) => authority[close..].contains(':'),
        None => authority.contains(':'),
    }
}

/// An admin API answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The `"error"` text of a JSON error answer, or the body as text.
    pub fn error_text(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).trim().to_string())
    }
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out")
}

/// `POST {prefix}{path}` with a JSON body (and a bearer token), all within
/// `timeout`.
pub fn post_json(
    url: &AdminUrl,
    path: &str,
    token: Option<&str>,
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<Answer> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = url.authority.to_socket_addrs()?.collect();
    let mut last = None;
    let mut stream = None;
    for a in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        match TcpStream::connect_timeout(&a, left) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(mut s) = stream else {
        return Err(
            last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))
        );
    };
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "POST {}{path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        url.prefix,
        url.authority,
        body.len()
    );
    s.set_write_timeout(Some(
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1)),
    ))?;
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut got = Vec::with_capacity(1024);
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(answer) = parse_answer(&got)? {
            return Ok(answer);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        s.set_read_timeout(Some(left))?;
        let n = match s.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Err(timed_out()),
            Err(e) => return Err(e),
        };
        if n == 0 {
            return parse_answer_at_end(&got);
        }
        got.extend_from_slice(&chunk[..n]);
        if got.len() > MAX_ANSWER {
            return Err(bad("answer too large"));
        }
    }
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// The head's status, length and size, once it is whole.
fn head(buf: &[u8]) -> std::io::Result<Option<(u16, Option<usize>, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            let status = resp.code.unwrap_or(0);
            let length = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .and_then(|v| v.trim().parse::<usize>().ok());
            Ok(Some((status, length, n)))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(bad(&format!("malformed answer: {e}"))),
    }
}

/// An answer with a Content-Length, once it is all there.
fn parse_answer(buf: &[u8]) -> std::io::Result<Option<Answer>> {
    match head(buf)? {
        Some((status, Some(len), n)) if buf.len() >= n + len => Ok(Some(Answer {
            status,
            body: buf[n..n + len].to_vec(),
        })),
        _ => Ok(None),
    }
}

/// The answer when the connection ended: without a Content-Length, the
/// body is everything up to the end.
fn parse_answer_at_end(buf: &[u8]) -> std::io::Result<Answer> {
    match head(buf)? {
        Some((status, None, n)) => Ok(Answer {
            status,
            body: buf[n..].to_vec(),
        }),
        Some((_, Some(_), _)) => Err(bad("the answer ended early")),
        None => Err(bad("the connection ended before an answer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_urls() {
        let u = AdminUrl::parse("http://127.0.0.1:9090").expect("url");
        assert_eq!(u.authority, "127.0.0.1:9090");
        assert_eq!(u.prefix, "");
        assert_eq!(u.to_string(), "http://127.0.0.1:9090");
        let u = AdminUrl::parse("HTTP://lb.local/admin/").expect("url");
        assert_eq!(
            (u.authority.as_str(), u.prefix.as_str()),
            ("lb.local:80", "/admin")
        );
        let u = AdminUrl::parse("[::1]:9090").expect("url");
        assert_eq!(u.authority, "[::1]:9090");
        assert_eq!(
            AdminUrl::parse("http://[::1]").expect("url").authority,
            "[::1]:80"
        );
        for bad in ["https://x:1", "ftp://x", "http://", "http://a@b:1", ""] {
            assert!(AdminUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_are_framed_by_length_or_by_the_end() {
        let full = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_answer(&full[..full.len() - 1]).expect("ok"), None);
        let a = parse_answer(full).expect("ok").expect("whole");
        assert_eq!((a.status, a.body.as_slice()), (200, &b"{}"[..]));
        let a = parse_answer_at_end(
            b"HTTP/1.1 404 Not Found\r\n\r\n{\"error\":\"no such connection\"}",
        )
        .expect("ok");
        assert_eq!(a.status, 404);
        assert_eq!(a.error_text(), "no such connection");
        assert!(parse_answer_at_end(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}").is_err());
        assert!(parse_answer_at_end(b"HTTP/1.1 200").is_err());
        assert!(parse_answer(b"NOT HTTP\r\n\r\n").is_err());
    }
}
