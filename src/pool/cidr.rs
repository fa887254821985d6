//! IP networks (`10.0.0.0/8`, `fd00::/8`): the type behind
//! `--allow-backend-cidr` and `--trusted-proxies`, with IPv4-mapped IPv6
//! addresses compared as IPv4.

use std::net::IpAddr;

/// An IP network (`10.0.0.0/8`, `fd00::/8`; a bare address is a /32 or
/// /128). IPv4-mapped IPv6 addresses are compared as IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The network's address and prefix length.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr, String> {
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("prefix /{prefix} is longer than {max} bits"));
        }
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` (mapped addresses normalised first) is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| format!("invalid network {s:?}: expected e.g. 10.0.0.0/8 or fd00::/8"))?;
        let prefix = match prefix {
            None if addr.is_ipv4() => 32,
            None => 128,
            Some(p) => p
                .parse::<u8>()
                .map_err(|_| format!("invalid network {s:?}: bad prefix length"))?,
        };
        // `::ffff:a.b.c.d/N` is the IPv4 network a.b.c.d/(N-96).
        let prefix = match addr {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() && prefix <= 128 => {
                prefix.checked_sub(96).ok_or_else(|| {
                    format!(
                        "invalid network {s:?}: a mapped IPv4 network needs a prefix of 96 or more"
                    )
                })?
            }
            _ => prefix,
        };
        Cidr::new(addr, prefix).map_err(|e| format!("invalid network {s:?}: {e}"))
    }
}

/// Whether any network in `list` contains `ip`.
pub(crate) fn cidr_list_contains(list: &[Cidr], ip: IpAddr) -> bool {
    list.iter().any(|c| c.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_match_mapped_addresses() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(!net.contains("fd00::1".parse().unwrap()));
        let one: Cidr = "192.168.1.5".parse().unwrap();
        assert!(one.contains("192.168.1.5".parse().unwrap()));
        assert!(!one.contains("192.168.1.6".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        let mapped: Cidr = "::ffff:127.0.0.0/104".parse().unwrap();
        assert_eq!(mapped, "127.0.0.0/8".parse().unwrap());
        assert!("::ffff:0.0.0.0/64".parse::<Cidr>().is_err());
        assert_eq!(
            "::ffff:1.2.3.4".parse::<Cidr>().unwrap(),
            "1.2.3.4/32".parse().unwrap()
        );
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("fd00::/129".parse::<Cidr>().is_err());
        assert!("ten/8".parse::<Cidr>().is_err());
        assert!("10.0.0.0/x".parse::<Cidr>().is_err());
        assert_eq!(net.to_string(), "10.0.0.0/8");
    }
}
