//! Target URL parsing for the load generator: `http://`, `ws://` and (for
//! the TLS handshake mode) `https://` URLs into a resolved socket address, a
//! Host header value and a request path.

use std::net::{SocketAddr, ToSocketAddrs};

use super::BenchError;

/// Which scheme the URL named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `http://`
    Http,
    /// `ws://`
    Ws,
    /// `https://` (TLS handshake mode only)
    Https,
}

/// A parsed and resolved target.
#[derive(Debug, Clone)]
pub struct Target {
    /// Scheme of the URL.
    pub scheme: Scheme,
    /// Value for the Host header (`host` or `host:port`, as written).
    pub host: String,
    /// Path and query, at least `/`.
    pub path: String,
    /// First resolved address.
    pub addr: SocketAddr,
}

fn bad(url: &str, reason: &'static str) -> BenchError {
    BenchError::Url {
        url: url.to_string(),
        reason,
    }
}

impl Target {
    /// Parse `url` and resolve its host (blocking; call before the runtimes start).
    pub fn parse(url: &str) -> Result<Target, BenchError> {
        let (scheme, rest, default_port) = if let Some(r) = url.strip_prefix("http://") {
            (Scheme::Http, r, 80)
        } else if let Some(r) = url.strip_prefix("ws://") {
            (Scheme::Ws, r, 80)
        } else if let Some(r) = url.strip_prefix("https://") {
            (Scheme::Https, r, 443)
        } else if url.starts_with("wss://") {
            return Err(bad(url, "wss:// targets are not supported by the bench"));
        } else {
            return Err(bad(url, "expected an http://, https:// or ws:// URL"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.is_empty() {
            return Err(bad(url, "missing host"));
        }
        if authority.contains('@') {
            return Err(bad(url, "user info is not supported"));
        }
        let (hostname, port) =
            split_host_port(authority, default_port).ok_or_else(|| bad(url, "bad port"))?;
        if hostname.is_empty() {
            return Err(bad(url, "missing host"));
        }
        let addr = (hostname, port)
            .to_socket_addrs()
            .map_err(|source| BenchError::Resolve {
                host: hostname.to_string(),
                source,
            })?
            .next()
            .ok_or_else(|| bad(url, "host resolved to no address"))?;
        Ok(Target {
            scheme,
            host: authority.to_string(),
            path,
            addr,
        })
    }
}

/// Split `host[:port]` or `[v6][:port]`; the port defaults to `default_port`.
fn split_host_port(authority: &str, default_port: u16) -> Option<(&str, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        if after.is_empty() {
            return Some((host, default_port));
        }
        let port = after.strip_prefix(':')?.parse().ok()?;
        return Some((host, port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h, p.parse().ok()?)),
        None => Some((authority, default_port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_with_port_and_path() {
        let t = Target::parse("http://127.0.0.1:8080/a/b?x=1").expect("parse");
        assert_eq!(t.scheme, Scheme::Http);
        assert_eq!(t.host, "127.0.0.1:8080");
        assert_eq!(t.path, "/a/b?x=1");
        assert_eq!(t.addr.port(), 8080);
    }

    #[test]
    fn defaults_path_and_port() {
        let t = Target::parse("ws://127.0.0.1").expect("parse");
        assert_eq!(t.scheme, Scheme::Ws);
        assert_eq!(t.path, "/");
        assert_eq!(t.addr.port(), 80);
        let t = Target::parse("ws://[::1]:9000?q").expect("parse");
        assert_eq!(t.path, "/?q");
        assert_eq!(t.addr.port(), 9000);
    }

    #[test]
    fn parses_https_with_its_default_port() {
        let t = Target::parse("https://localhost/x").expect("parse");
        assert_eq!(t.scheme, Scheme::Https);
        assert_eq!(t.addr.port(), 443);
        assert_eq!(t.host, "localhost");
    }

    #[test]
    fn rejects_bad_urls() {
        for u in [
            "ftp://x",
            "wss://x",
            "http://",
            "http://h:notaport/",
            "http://:80/",
        ] {
            assert!(Target::parse(u).is_err(), "{u}");
        }
    }
}
