//! Balancer addresses for the agent: `ws://HOST:PORT/PATH` or `wss://...`
//! (`http://`/`https://` and a bare `HOST:PORT` are accepted too), with the
//! control path defaulting to `/_lb/register`.

use std::fmt;

use super::error::AgentError;
use crate::pool::registry::protocol::split_authority;

/// The control channel path on a balancer.
pub const DEFAULT_PATH: &str = "/_lb/register";

/// Where one balancer's control channel is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalancerUrl {
    /// `wss://` (TLS) rather than `ws://`.
    pub tls: bool,
    /// Host name or IP literal, without IPv6 brackets.
    pub host: String,
    /// TCP port (80 or 443 when the URL gives none).
    pub port: u16,
    /// Request target, starting with `/` (query kept).
    pub path: String,
}

impl BalancerUrl {
    /// Parses `ws://h:p/path`, `wss://...`, `http://...` (as ws), `https://...`
    /// (as wss) or `h:p` (as ws). An empty path or `/` means `/_lb/register`.
    pub fn parse(s: &str) -> Result<BalancerUrl, AgentError> {
        let bad = |reason: &'static str| AgentError::BadUrl {
            url: s.to_string(),
            reason,
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(bad("empty"));
        }
        let (tls, rest) = match t.split_once("://") {
            Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
                "ws" | "http" => (false, rest),
                "wss" | "https" => (true, rest),
                _ => return Err(bad("scheme must be ws://, wss://, http:// or https://")),
            },
            None => (false, t),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not allowed; use --token"));
        }
        let (host, port) = split_authority(authority).map_err(bad)?;
        if authority.starts_with('[') && host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("bad IPv6 address in brackets"));
        }
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        if !host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b':'))
        {
            return Err(bad("host has characters a host name cannot have"));
        }
        let port = match port {
            None => {
                if tls {
                    443
                } else {
                    80
                }
            }
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| bad("port must be 1 to 65535"))?,
        };
        let path = path.split('#').next().unwrap_or("");
        let path = if path.is_empty() || path == "/" {
            DEFAULT_PATH.to_string()
        } else if path.starts_with('?') {
            format!("{DEFAULT_PATH}{path}")
        } else {
            path.to_string()
        };
        if path.bytes().any(|c| c <= b' ' || c == 0x7f) {
            return Err(bad("path may not hold spaces or control characters"));
        }
        Ok(BalancerUrl {
            tls,
            host: host.to_string(),
            port,
            path,
        })
    }

    /// The `Host` header value: the host (bracketed if IPv6) plus the port
    /// when it is not the scheme's default.
    pub(crate) fn host_header(&self) -> String {
        let host = self.bracketed_host();
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The IP address, if the host is a literal (no DNS needed).
    pub(crate) fn ip(&self) -> Option<std::net::IpAddr> {
        self.host.parse().ok()
    }

    fn bracketed_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

impl fmt::Display for BalancerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "wss" } else { "ws" };
        write!(
            f,
            "{scheme}://{}:{}{}",
            self.bracketed_host(),
            self.port,
            self.path
        )
    }
}

impl std::str::FromStr for BalancerUrl {
    type Err = AgentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BalancerUrl::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> BalancerUrl {
        BalancerUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn schemes_and_defaults() {
        let u = ok("ws://10.0.0.1:8080");
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (false, "10.0.0.1", 8080, DEFAULT_PATH)
        );
        let u = ok("wss://lb.example.com");
        assert_eq!((u.tls, u.port), (true, 443));
        assert_eq!(u.host_header(), "lb.example.com");
        let u = ok("http://lb:81/");
        assert_eq!((u.tls, u.port, u.path.as_str()), (false, 81, DEFAULT_PATH));
        assert!(ok("HTTPS://lb").tls);
        let u = ok("127.0.0.1:9000");
        assert_eq!(
            (u.tls, u.port, u.host_header().as_str()),
            (false, 9000, "127.0.0.1:9000")
        );
        assert_eq!(ok("ws://h").port, 80);
    }

    #[test]
    fn paths_and_queries() {
        assert_eq!(ok("ws://h:1/custom/reg").path, "/custom/reg");
        assert_eq!(ok("ws://h:1?x=1").path, "/_lb/register?x=1");
        assert_eq!(ok("ws://h:1/a?b=c#frag").path, "/a?b=c");
        assert!(BalancerUrl::parse("ws://h:1/a b").is_err());
    }

    #[test]
    fn ipv6() {
        let u = ok("ws://[::1]:7000/x");
        assert_eq!((u.host.as_str(), u.port), ("::1", 7000));
        assert_eq!(u.host_header(), "[::1]:7000");
        assert_eq!(u.to_string(), "ws://[::1]:7000/x");
        assert!(u.ip().is_some());
        assert!(BalancerUrl::parse("ws://::1:7000").is_err());
        assert!(BalancerUrl::parse("ws://[::1:7000").is_err());
        assert!(BalancerUrl::parse("ws://[zz]:1").is_err());
    }

    #[test]
    fn refusals() {
        for s in [
            "",
            "ftp://h:1",
            "ws://:80",
            "ws://h:0",
            "ws://h:65536",
            "ws://h:",
            "ws://h:x",
            "ws://user:pw@h:1",
            "ws://h\r\nX: y:1",
        ] {
            assert!(BalancerUrl::parse(s).is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "ws://1.2.3.4:5/_lb/register",
            "wss://lb.example.com:443/p?q=1",
        ] {
            assert_eq!(ok(s).to_string(), s);
            assert_eq!(ok(&ok(s).to_string()), ok(s));
        }
        assert_eq!(ok("wss://h").ip(), None);
    }
}
