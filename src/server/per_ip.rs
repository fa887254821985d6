//! `--max-connections-per-ip`: how many client connections each IP address
//! has open, over all workers. Consulted once per accepted connection (never
//! per request), so a small table of sharded mutexes is cheap enough; an
//! address leaves the table when its count returns to zero, so the table
//! holds at most one entry per open connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

const SHARDS: usize = 16;

/// Open connections per client address: an IPv4 address (IPv4-mapped IPv6
/// counts as the IPv4 address it maps), or an IPv6 /64. A single IPv6 host
/// is usually given a whole /64 and can pick any address in it, so counting
/// /128s would let one client multiply its share at will.
pub(crate) struct PerIpTable {
    shards: [Mutex<HashMap<IpAddr, u32>>; SHARDS],
}

impl Default for PerIpTable {
    fn default() -> Self {
        Self::new()
    }
}

impl PerIpTable {
    pub(crate) fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }

    fn shard(&self, ip: &IpAddr) -> &Mutex<HashMap<IpAddr, u32>> {
        // Sharding only spreads contention; the maps themselves hash with
        // random keys, so a chosen set of addresses cannot slow them down.
        let folded = match ip {
            IpAddr::V4(v4) => u32::from(*v4) as u64,
            IpAddr::V6(v6) => {
                let n = u128::from(*v6);
                (n as u64) ^ ((n >> 64) as u64)
            }
        };
        let mixed = folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58;
        &self.shards[mixed as usize % SHARDS]
    }

    /// Counts one more connection from `ip` if it has fewer than `limit`
    /// open; false (and nothing counted) when it is at the limit.
    pub(crate) fn try_acquire(&self, ip: IpAddr, limit: usize) -> bool {
        let ip = client_key(ip);
        let mut map = lock(self.shard(&ip));
        let count = map.entry(ip).or_insert(0);
        if *count as usize >= limit {
            if *count == 0 {
                map.remove(&ip);
            }
            return false;
        }
        *count += 1;
        true
    }

    /// Gives back a connection counted by a successful [`try_acquire`].
    ///
    /// [`try_acquire`]: PerIpTable::try_acquire
    pub(crate) fn release(&self, ip: IpAddr) {
        let ip = client_key(ip);
        let mut map = lock(self.shard(&ip));
        if let Some(count) = map.get_mut(&ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&ip);
            }
        }
    }

    /// Connections open from `ip` now.
    #[cfg(test)]
    pub(crate) fn count(&self, ip: IpAddr) -> usize {
        let ip = client_key(ip);
        lock(self.shard(&ip)).get(&ip).map_or(0, |&c| c as usize)
    }

    /// Addresses in the table (each has at least one connection open).
    #[cfg(test)]
    pub(crate) fn addresses(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }
}

/// The address a connection is counted under: canonical IPv4, or the /64
/// an IPv6 address belongs to.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

/// A shard's map; a panic elsewhere while it was held leaves counts that
/// are still valid numbers, so a poisoned lock is used as it is.
fn lock(m: &Mutex<HashMap<IpAddr, u32>>) -> std::sync::MutexGuard<'_, HashMap<IpAddr, u32>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::PerIpTable;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn limit_per_address_and_release() {
        let t = PerIpTable::new();
        for _ in 0..3 {
            assert!(t.try_acquire(ip("10.0.0.1"), 3));
        }
        assert!(!t.try_acquire(ip("10.0.0.1"), 3));
        assert!(
            t.try_acquire(ip("10.0.0.2"), 3),
            "other addresses unaffected"
        );
        assert_eq!(t.count(ip("10.0.0.1")), 3);
        t.release(ip("10.0.0.1"));
        assert!(t.try_acquire(ip("10.0.0.1"), 3));
        assert!(!t.try_acquire(ip("10.0.0.1"), 3));
    }

    #[test]
    fn mapped_ipv6_counts_as_ipv4() {
        let t = PerIpTable::new();
        assert!(t.try_acquire(ip("192.0.2.7"), 2));
        assert!(t.try_acquire(ip("::ffff:192.0.2.7"), 2));
        assert!(!t.try_acquire(ip("192.0.2.7"), 2));
        assert!(!t.try_acquire(ip("::ffff:192.0.2.7"), 2));
        t.release(ip("::ffff:192.0.2.7"));
        assert_eq!(t.count(ip("192.0.2.7")), 1);
        assert!(t.try_acquire(ip("2001:db8::1"), 2), "real IPv6 is its own");
    }

    #[test]
    fn ipv6_counts_per_64() {
        let t = PerIpTable::new();
        assert!(t.try_acquire(ip("2001:db8:1:2::1"), 2));
        assert!(t.try_acquire(ip("2001:db8:1:2:ffff::9"), 2));
        assert!(
            !t.try_acquire(ip("2001:db8:1:2:abcd::1"), 2),
            "another address in the same /64 shares its count"
        );
        assert!(
            t.try_acquire(ip("2001:db8:1:3::1"), 2),
            "the next /64 is its own"
        );
        t.release(ip("2001:db8:1:2::77"));
        assert_eq!(t.count(ip("2001:db8:1:2::1")), 1);
    }

    #[test]
    fn entries_leave_when_their_count_is_zero() {
        let t = PerIpTable::new();
        for i in 0..1000u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000u32 + i));
            assert!(t.try_acquire(a, 1));
        }
        assert_eq!(t.addresses(), 1000);
        for i in 0..1000u32 {
            t.release(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000u32 + i)));
        }
        assert_eq!(t.addresses(), 0);
        // A refusal with limit 0 leaves nothing behind either; so does a
        // stray release.
        assert!(!t.try_acquire(ip("10.9.9.9"), 0));
        t.release(ip("10.9.9.8"));
        assert_eq!(t.addresses(), 0);
    }

    #[test]
    fn shared_between_threads() {
        let t = std::sync::Arc::new(PerIpTable::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    (0..100)
                        .filter(|_| t.try_acquire(ip("10.1.1.1"), 50))
                        .count()
                })
            })
            .collect();
        let won: usize = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
        assert_eq!(won, 50);
        assert_eq!(t.count(ip("10.1.1.1")), 50);
    }
}
