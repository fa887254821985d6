//! Connection ids: `{tag}-{worker}-{n}`, where `tag` is 12 hex digits drawn
//! at random when the balancer starts (so ids do not repeat across
//! restarts), `worker` the owning worker's index and `n` that worker's
//! counter. The worker in the id routes a command to the session's owner.

/// The id scheme of one running balancer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnIds {
    tag: String,
}

/// Bits of the local connection number (the rest carries the worker).
pub const LOCAL_BITS: u32 = 48;

impl ConnIds {
    /// A fresh scheme with a random tag.
    pub fn random() -> Self {
        Self::with_tag(fastrand::u64(..) & ((1 << 48) - 1))
    }

    /// A scheme with a given 48-bit tag (tests).
    pub fn with_tag(tag: u64) -> Self {
        ConnIds {
            tag: format!("{:012x}", tag & ((1 << 48) - 1)),
        }
    }

    /// This balancer's tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The public id of local connection `local` (worker in the top 16
    /// bits, as the connection tables number them).
    pub fn format(&self, local: u64) -> String {
        let worker = local >> LOCAL_BITS;
        let n = local & ((1 << LOCAL_BITS) - 1);
        format!("{}-{worker}-{n}", self.tag)
    }

    /// The worker and local connection number an id names, if it is one of
    /// this balancer's (None for a malformed id or another balancer's).
    pub fn parse(&self, id: &str) -> Option<(usize, u64)> {
        let mut parts = id.split('-');
        let (tag, worker, n) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || tag != self.tag {
            return None;
        }
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 15 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(worker) || !digits(n) {
            return None;
        }
        let worker: u64 = worker.parse().ok()?;
        let n: u64 = n.parse().ok()?;
        if worker >= 1 << 16 || n >= 1 << LOCAL_BITS {
            return None;
        }
        Some((worker as usize, (worker << LOCAL_BITS) | n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_refuse_strangers() {
        let ids = ConnIds::with_tag(0xabc);
        let local = (3u64 << LOCAL_BITS) | 42;
        let s = ids.format(local);
        assert_eq!(s, "000000000abc-3-42");
        assert_eq!(ids.parse(&s), Some((3, local)));
        let other = ConnIds::with_tag(0xabd);
        assert_eq!(other.parse(&s), None);
        for bad in [
            "",
            "000000000abc",
            "000000000abc-3",
            "000000000abc-3-42-1",
            "000000000abc--42",
            "000000000abc-x-42",
            "000000000abc-3-+42",
            "000000000abc-65536-1",
            "000000000abc-1-999999999999999",
        ] {
            assert_eq!(ids.parse(bad), None, "{bad}");
        }
        assert_ne!(ConnIds::random().tag(), ConnIds::random().tag());
    }
}
