//! Backend bindings: the grammar (`http://IP[:PORT][/path]`, `ws://...`,
//! `https://...` and `wss://...` for TLS backends, `:PORT`, `PORT`), the
//! normalisation (IPv4-mapped IPv6 compared as IPv4,
//! unspecified hosts filled with the peer's address) and the address policy
//! that keeps a registering backend from pointing the balancer at places it
//! must not reach (loopback from afar, link-local, multicast, broadcast, or
//! outside `--allow-backend-cidr`). See docs/PROTOCOL.md.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::error::ProtocolError;
use crate::pool::cidr::{cidr_list_contains, Cidr};

/// Longest binding accepted, bytes.
pub(crate) const MAX_BINDING_LEN: usize = 2048;

/// How to fill in hosts a binding leaves open, and which policy applies.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fill<'a> {
    /// Registered backend: port-only and unspecified hosts take the peer's
    /// address; the refused ranges and the allow-list (when not empty)
    /// apply to the address the balancer would connect to.
    Peer { ip: IpAddr, allow: &'a [Cidr] },
    /// Static configuration (`--backend`, operator-given): the URL must name
    /// a host that can be connected to; loopback and link-local are fine and
    /// the allow-list does not apply.
    Static,
}

/// Resolve one registered binding against the address the backend connected
/// from, with no allow-list (the agent's own check uses this). See
/// [`resolve_binding_in`].
pub(crate) fn resolve_binding(
    binding: &str,
    peer_ip: IpAddr,
) -> Result<(String, SocketAddr), ProtocolError> {
    resolve_binding_in(binding, peer_ip, &[])
}

/// Resolve one registered binding against the address the backend connected
/// from. Port-only forms (`":9001"`, `"9001"`) and unspecified hosts
/// (`0.0.0.0`, `[::]`, `[::ffff:0.0.0.0]`) take `peer_ip`. Hosts must be IP
/// literals (workers do no DNS); `localhost` means 127.0.0.1. The resolved
/// address must pass the registered-backend policy, and fall in `allow`
/// when that is not empty.
pub(crate) fn resolve_binding_in(
    binding: &str,
    peer_ip: IpAddr,
    allow: &[Cidr],
) -> Result<(String, SocketAddr), ProtocolError> {
    parse_binding(binding, Fill::Peer { ip: peer_ip, allow })
}

/// Splits a URL authority (`host`, `host:port`, `[v6]`, `[v6]:port`) into
/// host and optional port text; the error says what is malformed. Shared by
/// bindings and the agent's balancer URLs.
pub(crate) fn split_authority(authority: &str) -> Result<(&str, Option<&str>), &'static str> {
    if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("unclosed [ in IPv6 host")?;
        match after {
            "" => Ok((h, None)),
            p => Ok((h, Some(p.strip_prefix(':').ok_or("junk after ]")?))),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => Err("IPv6 hosts need [brackets]"),
            Some((h, p)) => Ok((h, Some(p))),
            None => Ok((authority, None)),
        }
    }
}

/// Whether every byte is visible ASCII (0x21..=0x7E): no space, no control
/// character (CR, LF, NUL, DEL), nothing beyond ASCII. Bindings end up in
/// response headers (`Location`), so this is what keeps them inert there.
pub(crate) fn is_visible_ascii(s: &[u8]) -> bool {
    s.iter().all(|&c| (0x21..=0x7E).contains(&c))
}

/// Parses, normalises and checks one binding.
pub(crate) fn parse_binding(
    binding: &str,
    fill: Fill<'_>,
) -> Result<(String, SocketAddr), ProtocolError> {
    // Echoed back in errors: keep it short.
    let short = || binding.chars().take(128).collect::<String>();
    let bad = |reason| ProtocolError::BadBinding {
        binding: short(),
        reason,
    };
    let s = binding.trim();
    if s.is_empty() {
        return Err(bad("empty"));
    }
    if s.len() > MAX_BINDING_LEN {
        return Err(bad("longer than 2048 bytes"));
    }
    if !is_visible_ascii(s.as_bytes()) {
        return Err(bad(
            "only visible ASCII is allowed (no spaces, CR, LF or other control characters)",
        ));
    }
    let digits = s.strip_prefix(':').unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
        let port = parse_port(digits).ok_or_else(|| bad("port must be 1 to 65535"))?;
        let Fill::Peer { ip, allow } = fill else {
            return Err(bad(
                "a port-only binding needs a registering backend; write http://IP:PORT",
            ));
        };
        let ip = check_registered(ip.to_canonical(), ip).map_err(bad)?;
        let ip = check_allowed(short(), ip, allow)?;
        let addr = SocketAddr::new(ip, port);
        return Ok((format!("http://{addr}"), addr));
    }
    let (scheme, rest) = s.split_once("://").ok_or_else(|| {
        bad("expected http://IP:PORT, ws://IP:PORT, https://IP:PORT, wss://IP:PORT, :PORT or PORT")
    })?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        _ => return Err(bad("scheme must be http://, ws://, https:// or wss://")),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if path.contains('#') {
        return Err(bad("a fragment (#) has no meaning in a binding"));
    }
    if authority.contains('@') {
        return Err(bad("credentials in the URL are not allowed"));
    }
    let (host, port) = split_authority(authority).map_err(bad)?;
    let port = match port {
        None => default_port,
        Some(p) => parse_port(p).ok_or_else(|| bad("port must be 1 to 65535"))?,
    };
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse::<IpAddr>()
            .map_err(|_| bad("host must be an IP literal or localhost (no DNS)"))?
    }
    .to_canonical();
    let ip = match fill {
        Fill::Peer { ip: peer, allow } => {
            let target = if ip.is_unspecified() { peer } else { ip };
            let ip = check_registered(target.to_canonical(), peer).map_err(bad)?;
            check_allowed(short(), ip, allow)?
        }
        Fill::Static => {
            check_static(ip).map_err(bad)?;
            ip
        }
    };
    let addr = SocketAddr::new(ip, port);
    Ok((format!("{scheme}://{addr}{path}"), addr))
}

/// The host a TLS binding (`https://`, `wss://`) names, as written (an IP
/// literal, `[v6]` or `localhost`): what the backend's certificate is
/// checked against. `None` for a plain binding. Meant for bindings that
/// [`parse_binding`] accepted.
pub(crate) fn tls_host(binding: &str) -> Option<&str> {
    let (scheme, rest) = binding.trim().split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss")) {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (host, _) = split_authority(&rest[..end]).ok()?;
    Some(host)
}

/// The policy for an address a registered backend asks the balancer to
/// connect to (`ip` canonical, after filling). Returns it when accepted.
fn check_registered(ip: IpAddr, peer: IpAddr) -> Result<IpAddr, &'static str> {
    let peer = peer.to_canonical();
    if ip.is_unspecified() {
        return Err("0.0.0.0 / [::] is not an address to connect to");
    }
    if ip.is_loopback() && !peer.is_loopback() {
        return Err("loopback host from a backend that is not on this machine");
    }
    check_common(ip)?;
    if is_link_local(ip) {
        return Err("link-local addresses (169.254.0.0/16, fe80::/10) are refused");
    }
    if let IpAddr::V6(v6) = ip {
        if let Some(v4) = embedded_ipv4(v6) {
            let v4 = IpAddr::V4(v4);
            if v4.is_loopback() || v4.is_unspecified() || is_link_local(v4) {
                return Err(
                    "a NAT64 or 6to4 address that embeds a loopback, link-local or unspecified IPv4 address is refused",
                );
            }
            check_common(v4).map_err(|_| {
                "a NAT64 or 6to4 address that embeds a multicast, broadcast or 0.0.0.0/8 IPv4 address is refused"
            })?;
        }
    }
    Ok(ip)
}

/// The IPv4 address a NAT64 (`64:ff9b::/96`, `64:ff9b:1::/48`) or 6to4
/// (`2002::/16`) address carries: a translator or relay on the way would
/// deliver to it, so it gets the IPv4 policy too.
fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || s[..3] == [0x64, 0xff9b, 1] {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

/// The allow-list (`--allow-backend-cidr`) for a registered address; an
/// empty list allows everything the ranges above do not refuse.
fn check_allowed(binding: String, ip: IpAddr, allow: &[Cidr]) -> Result<IpAddr, ProtocolError> {
    if allow.is_empty() || cidr_list_contains(allow, ip) {
        return Ok(ip);
    }
    let allowed: Vec<String> = allow.iter().map(ToString::to_string).collect();
    Err(ProtocolError::NotAllowed {
        binding,
        addr: ip,
        allowed: allowed.join(", "),
    })
}

/// The policy for an operator-given (static) address (`ip` canonical).
fn check_static(ip: IpAddr) -> Result<(), &'static str> {
    if ip.is_unspecified() {
        return Err("0.0.0.0 / [::] is not an address to connect to");
    }
    check_common(ip)
}

/// Refusals shared by static and registered bindings.
fn check_common(ip: IpAddr) -> Result<(), &'static str> {
    if ip.is_multicast() {
        return Err("multicast addresses are refused");
    }
    match ip {
        IpAddr::V4(v4) if v4.is_broadcast() => Err("the broadcast address is refused"),
        // 0.0.0.0/8 is "this network": Linux connects 0.x to the host itself.
        IpAddr::V4(v4) if v4.octets()[0] == 0 => Err("0.0.0.0/8 is not an address to connect to"),
        // Deprecated IPv4-compatible form (::a.b.c.d), never a real backend.
        IpAddr::V6(v6) if is_ipv4_compatible(v6) => {
            Err("IPv4-compatible IPv6 addresses (::a.b.c.d) are refused; write the IPv4 address")
        }
        _ => Ok(()),
    }
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// `::/96` other than `::` and `::1`.
fn is_ipv4_compatible(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    s[..6] == [0; 6] && !v6.is_unspecified() && !v6.is_loopback()
}

fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|&p| p != 0)
}

#[cfg(test)]
#[path = "binding_tests.rs"]
mod tests;
