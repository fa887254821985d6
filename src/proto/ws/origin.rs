//! Allowed-origins policy for the upgrade request's `Origin` header.
//!
//! Entries: `*` (any origin), `null` (the opaque origin), or
//! `scheme://host[:port]` where host may be `*.domain` (any subdomain) and
//! port may be `*` (any port). Scheme and host compare case-insensitively;
//! a missing port means the scheme's default. An empty policy allows all.

/// A parsed allowed-origins list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    any: bool,
    null: bool,
    entries: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    scheme: String,
    /// Lowercase host; for a `*.domain` entry, `.domain` with `suffix` set.
    host: String,
    suffix: bool,
    /// `None` = any port; `Some(p)` = that effective port (default applied).
    port: Option<Option<u16>>,
}

/// An origin split into lowercase scheme, lowercase host, effective port.
struct Parsed {
    scheme: String,
    host: String,
    port: Option<u16>,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// Splits `scheme://host[:port]`; `port_any` tells whether `:*` is allowed.
fn split(s: &str, port_any: bool) -> Result<(String, String, Option<Option<u16>>), String> {
    let (scheme, rest) = s.split_once("://").ok_or("missing scheme://")?;
    let ok_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !ok_scheme {
        return Err("bad scheme".into());
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    // IPv6 literal hosts are bracketed; the port follows the bracket.
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("unclosed [")?;
        match after {
            "" => (format!("[{h}]"), None),
            p => (
                format!("[{h}]"),
                Some(p.strip_prefix(':').ok_or("junk after ]")?),
            ),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    let bad_host = |c: char| c.is_ascii_whitespace() || "/?#@".contains(c) || c.is_control();
    if host.is_empty() || host.contains(bad_host) {
        return Err("bad host".into());
    }
    let scheme = scheme.to_ascii_lowercase();
    let port = match port {
        None => Some(default_port(&scheme)),
        Some("*") if port_any => None,
        Some(p) => Some(Some(
            p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?,
        )),
    };
    Ok((scheme, host.to_ascii_lowercase(), port))
}

impl OriginPolicy {
    /// Parses the configured entries; the error names the offending entry.
    pub fn parse(entries: &[String]) -> Result<OriginPolicy, String> {
        let mut policy = OriginPolicy::default();
        for raw in entries {
            let e = raw.trim();
            if e == "*" {
                policy.any = true;
                continue;
            }
            if e.eq_ignore_ascii_case("null") {
                policy.null = true;
                continue;
            }
            let (scheme, host, port) =
                split(e, true).map_err(|m| format!("origin {raw:?}: {m}"))?;
            let (host, suffix) = match host.strip_prefix("*.") {
                Some(d) if !d.is_empty() && !d.contains('*') => (format!(".{d}"), true),
                _ if host.contains('*') => return Err(format!("origin {raw:?}: bad wildcard")),
                _ => (host, false),
            };
            policy.entries.push(Entry {
                scheme,
                host,
                suffix,
                port,
            });
        }
        Ok(policy)
    }

    /// Whether the request's `Origin` value is allowed.
    pub fn allows(&self, origin: &[u8]) -> bool {
        if self.is_empty() || self.any {
            return true;
        }
        let Ok(s) = std::str::from_utf8(origin) else {
            return false;
        };
        let s = s.trim();
        if s.eq_ignore_ascii_case("null") {
            return self.null;
        }
        let Ok((scheme, host, Some(port))) = split(s, false) else {
            return false;
        };
        let o = Parsed { scheme, host, port };
        self.entries.iter().any(|e| {
            e.scheme == o.scheme
                && if e.suffix {
                    o.host.ends_with(&e.host)
                } else {
                    o.host == e.host
                }
                && e.port.is_none_or(|p| p == o.port)
        })
    }

    /// No entries at all (which allows every origin).
    pub fn is_empty(&self) -> bool {
        !self.any && !self.null && self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(e: &[&str]) -> OriginPolicy {
        OriginPolicy::parse(&e.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn exact_entries_and_default_ports() {
        let p = policy(&["https://Example.com", "http://api.test:8080"]);
        assert!(!p.is_empty());
        assert!(p.allows(b"https://example.com"));
        assert!(p.allows(b"HTTPS://EXAMPLE.COM:443"));
        assert!(!p.allows(b"http://example.com"));
        assert!(!p.allows(b"https://example.com:8443"));
        assert!(!p.allows(b"https://evil-example.com"));
        assert!(!p.allows(b"https://example.com.evil.net"));
        assert!(p.allows(b"http://api.test:8080"));
        assert!(!p.allows(b"http://api.test"));
        assert!(!p.allows(b"null"));
        assert!(!p.allows(b"\xFF"));
    }

    #[test]
    fn port_and_subdomain_wildcards() {
        let p = policy(&[
            "http://localhost:*",
            "https://*.example.org",
            "http://[::1]:*",
        ]);
        assert!(p.allows(b"http://localhost"));
        assert!(p.allows(b"http://localhost:3000"));
        assert!(p.allows(b"http://LOCALHOST:65535"));
        assert!(!p.allows(b"https://localhost:3000"));
        assert!(!p.allows(b"http://localhost:*"));
        assert!(!p.allows(b"http://localhost:99999"));
        assert!(p.allows(b"https://a.b.example.org"));
        assert!(!p.allows(b"https://example.org"));
        assert!(!p.allows(b"https://badexample.org"));
        assert!(p.allows(b"http://[::1]:8000"));
    }

    #[test]
    fn any_null_empty_and_errors() {
        assert!(OriginPolicy::parse(&[]).unwrap().allows(b"http://anything"));
        assert!(policy(&["*"]).allows(b"whatever"));
        assert!(policy(&["null"]).allows(b"null"));
        for bad in [
            "example.com",
            "http://",
            "http://a:b",
            "1x://a",
            "http://a*b.com",
            "http://a b",
        ] {
            assert!(OriginPolicy::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
    }
}
