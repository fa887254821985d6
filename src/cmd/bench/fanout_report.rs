//! The fan-out bench's vocabulary: its phases, the payload each publish
//! carries (phase, sequence number, send time), the subscribe URL, and the
//! report (`--json` prints [`FanoutSummary`] as one line).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::publisher::{PublishFormat, PublishOutcome};
use super::stats::{Latency, Stats};

/// Shortest payload that holds the tag, a sequence number and a timestamp.
pub const MIN_PAYLOAD: usize = 40;

/// What a publish is for; its tag travels in the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Checks that the sessions receive, before anything is measured.
    Probe = 0,
    /// As fast as deliveries keep up.
    Saturation = 1,
    /// A fixed publish rate, for publish-to-receive latency.
    Rate = 2,
}

impl Phase {
    /// Every phase, indexed by `as usize`.
    pub const ALL: [Phase; 3] = [Phase::Probe, Phase::Saturation, Phase::Rate];

    fn tag(self) -> char {
        match self {
            Phase::Probe => 'p',
            Phase::Saturation => 's',
            Phase::Rate => 'r',
        }
    }

    fn from_tag(tag: &str) -> Option<Phase> {
        Phase::ALL
            .into_iter()
            .find(|p| tag.len() == 1 && tag.starts_with(p.tag()))
    }
}

/// The text a publish carries: `"<tag> <seq> <sent_ns>"`, padded with
/// spaces to `size` bytes (never cut below what it needs). `sent_ns` is
/// nanoseconds since the bench's epoch, which publisher and subscribers share.
pub fn encode_payload(phase: Phase, seq: u64, sent_ns: u64, size: usize) -> String {
    let mut s = format!("{} {seq} {sent_ns}", phase.tag());
    while s.len() < size {
        s.push(' ');
    }
    s
}

/// Reads a payload written by [`encode_payload`]: (phase, seq, sent_ns).
pub fn parse_payload(payload: &[u8]) -> Option<(Phase, u64, u64)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.split_ascii_whitespace();
    let phase = Phase::from_tag(parts.next()?)?;
    let seq = parts.next()?.parse().ok()?;
    let sent = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((phase, seq, sent))
}

/// `path` with `subscribe=<channel>` added to its query, the channel
/// percent-encoded (everything but unreserved characters).
pub fn subscribe_path(path: &str, channel: &str) -> String {
    let mut out = String::with_capacity(path.len() + channel.len() + 11);
    out.push_str(path);
    out.push(if path.contains('?') { '&' } else { '?' });
    out.push_str("subscribe=");
    for b in channel.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// One bench thread's latency records, one set per phase.
pub struct PhaseStats {
    /// Indexed by `Phase as usize`.
    pub by_phase: [Stats; 3],
}

impl PhaseStats {
    /// Empty records.
    pub fn new() -> PhaseStats {
        PhaseStats {
            by_phase: [Stats::new(), Stats::new(), Stats::new()],
        }
    }

    /// Fold another thread's records in.
    pub fn merge(&mut self, other: &PhaseStats) {
        for (a, b) in self.by_phase.iter_mut().zip(other.by_phase.iter()) {
            a.merge(b);
        }
    }
}

/// The saturation phase.
#[derive(Debug, Clone, Serialize)]
pub struct SaturationReport {
    /// Length of the measured window.
    pub duration_s: f64,
    /// Most publishes whose deliveries may be outstanding.
    pub in_flight: u64,
    pub publishes: u64,
    /// Deliveries received inside the window.
    pub deliveries: u64,
    pub deliveries_per_sec: f64,
    /// Deliveries expected (sessions open at each publish) and never seen.
    pub lost: u64,
    /// CPU of the watched processes over the window, per delivery in it.
    pub proxy_cpu_us_per_delivery: Option<f64>,
    /// Cores the bench itself kept busy over the window: near the load
    /// generator's share of the machine (1.0 on its one core), the client
    /// set the pace and deliveries/s is a lower bound for the proxy.
    pub bench_cores_busy: Option<f64>,
    /// Publish-to-receive, every delivery of the phase (queueing included).
    pub latency_us: Latency,
}

/// The fixed-rate phase.
#[derive(Debug, Clone, Serialize)]
pub struct RateReport {
    pub publish_rate: f64,
    pub duration_s: f64,
    pub publishes: u64,
    pub expected: u64,
    pub deliveries: u64,
    pub lost: u64,
    /// Publish-to-receive over every delivery of the phase.
    pub latency_us: Latency,
}

/// The fan-out report; `--json` prints exactly this object.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutSummary {
    pub mode: &'static str,
    pub url: String,
    pub publish_url: String,
    pub publish_format: PublishFormat,
    pub channel: String,
    /// Sessions asked for (`-c`).
    pub connections: usize,
    /// Sessions that completed the upgrade.
    pub subscribed: u64,
    /// Sessions the last probe publish reached.
    pub receiving: u64,
    pub threads: usize,
    pub message_size: usize,
    /// Why publishing stopped early (a refused publish, nothing received).
    pub publish_error: Option<String>,
    pub saturation: Option<SaturationReport>,
    pub rate: Option<RateReport>,
    /// RSS of the watched processes before any session, and with every
    /// session subscribed and idle.
    pub proxy_rss_kib_before: Option<u64>,
    pub proxy_rss_kib_subscribed: Option<u64>,
    /// RSS growth over the subscribed sessions.
    pub proxy_bytes_per_session: Option<u64>,
    /// The publish answers summed (wslb's `{"matched",...}`; absent for Pushpin).
    pub publish_answers: Option<PublishOutcome>,
    pub connects: u64,
    pub errors_total: u64,
    pub errors: BTreeMap<String, u64>,
}

impl FanoutSummary {
    /// Human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let na = |v: Option<String>| v.unwrap_or_else(|| "n/a".into());
        let _ = writeln!(s, "{:<16}{}", "mode", self.mode);
        let _ = writeln!(s, "{:<16}{}", "target", self.url);
        let _ = writeln!(
            s,
            "{:<16}{} ({}), channel {:?}",
            "publish",
            self.publish_url,
            self.publish_format.name(),
            self.channel
        );
        let _ = writeln!(
            s,
            "{:<16}{} of {} subscribed, {} receiving",
            "sessions", self.subscribed, self.connections, self.receiving
        );
        if let Some(e) = &self.publish_error {
            let _ = writeln!(s, "{:<16}{e}", "publish error");
        }
        if let Some(r) = &self.saturation {
            let _ = writeln!(
                s,
                "{:<16}{:.0} deliveries/s ({} in {:.2} s, {} publishes, {} lost), CPU {} µs/delivery, bench busy {} cores",
                "saturation",
                r.deliveries_per_sec,
                r.deliveries,
                r.duration_s,
                r.publishes,
                r.lost,
                na(r.proxy_cpu_us_per_delivery.map(|v| format!("{v:.2}"))),
                na(r.bench_cores_busy.map(|v| format!("{v:.2}")))
            );
        }
        if let Some(r) = &self.rate {
            let l = &r.latency_us;
            let _ = writeln!(
                s,
                "{:<16}{}/s: {} of {} delivered; p50 {} p99 {} max {} µs",
                "fixed rate", r.publish_rate, r.deliveries, r.expected, l.p50, l.p99, l.max
            );
        }
        let _ = writeln!(
            s,
            "{:<16}{} B per subscribed session",
            "memory",
            na(self.proxy_bytes_per_session.map(|v| v.to_string()))
        );
        let errs: Vec<String> = self
            .errors
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            s,
            "{:<16}{}",
            "errors",
            if errs.is_empty() {
                "none".into()
            } else {
                errs.join(", ")
            }
        );
        s
    }
}
