//! Measurement state of the load generator: a latency histogram and counters
//! per thread, merged at the end into a `Summary` printed as a table or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histogram tracks, in microseconds (one minute).
const MAX_TRACKED_US: u64 = 60_000_000;

/// What went wrong on a connection; each kind is counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// TCP connect failed or timed out.
    Connect,
    /// WebSocket upgrade refused or malformed.
    Handshake,
    /// A read failed.
    Read,
    /// A write failed.
    Write,
    /// The peer sent bytes that do not parse (HTTP or WebSocket).
    Protocol,
    /// An HTTP response with a status outside 2xx/3xx.
    Status,
    /// The peer closed the connection in the middle of an exchange.
    Closed,
    /// An echo came back with the wrong length or opcode.
    Mismatch,
    /// Waited too long for a connect or handshake.
    Timeout,
    /// The TLS handshake failed.
    Tls,
}

impl ErrorKind {
    const ALL: [ErrorKind; 10] = [
        ErrorKind::Connect,
        ErrorKind::Handshake,
        ErrorKind::Read,
        ErrorKind::Write,
        ErrorKind::Protocol,
        ErrorKind::Status,
        ErrorKind::Closed,
        ErrorKind::Mismatch,
        ErrorKind::Timeout,
        ErrorKind::Tls,
    ];

    /// Short name used in the table and as the JSON key.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Handshake => "handshake",
            ErrorKind::Read => "read",
            ErrorKind::Write => "write",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Status => "status",
            ErrorKind::Closed => "closed",
            ErrorKind::Mismatch => "mismatch",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Tls => "tls",
        }
    }
}

/// Per-thread measurements.
pub struct Stats {
    hist: Histogram<u64>,
    /// Completed operations (requests, round trips, sessions).
    pub ops: u64,
    /// Bytes written to sockets.
    pub bytes_sent: u64,
    /// Bytes read from sockets.
    pub bytes_received: u64,
    /// Connections established (TCP connect + handshake where there is one).
    pub connects: u64,
    /// Connections held at the end (hold mode).
    pub held: u64,
    /// TLS sessions whose handshake was a resumption (handshake mode).
    pub resumed: u64,
    errors: [u64; ErrorKind::ALL.len()],
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Empty statistics.
    pub fn new() -> Stats {
        // Bounds are constants that satisfy hdrhistogram's requirements
        // (low >= 1, high >= 2 * low, sigfig <= 5), so this cannot fail.
        let hist = Histogram::new_with_bounds(1, MAX_TRACKED_US, 3)
            .expect("constant histogram bounds are valid");
        Stats {
            hist,
            ops: 0,
            bytes_sent: 0,
            bytes_received: 0,
            connects: 0,
            held: 0,
            resumed: 0,
            errors: [0; ErrorKind::ALL.len()],
        }
    }

    /// Record one completed operation and its latency.
    pub fn record(&mut self, latency: Duration) {
        self.ops += 1;
        let us = (latency.as_micros() as u64).clamp(1, MAX_TRACKED_US);
        self.hist.saturating_record(us);
    }

    /// Count one error of `kind`.
    pub fn error(&mut self, kind: ErrorKind) {
        self.errors[kind as usize] += 1;
    }

    /// Total errors of every kind.
    pub fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Fold another thread's statistics into this one.
    pub fn merge(&mut self, other: &Stats) {
        // Same bounds on both sides, so adding cannot fail; ignore defensively.
        let _ = self.hist.add(&other.hist);
        self.ops += other.ops;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.connects += other.connects;
        self.held += other.held;
        self.resumed += other.resumed;
        for (a, b) in self.errors.iter_mut().zip(other.errors.iter()) {
            *a += b;
        }
    }

    /// Latency quantiles of what was recorded, in microseconds.
    pub fn latency(&self) -> Latency {
        let q = |p: f64| self.hist.value_at_quantile(p);
        Latency {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: self.hist.max(),
            mean: (self.hist.mean() * 10.0).round() / 10.0,
        }
    }

    /// Errors by kind name, the kinds that occurred only.
    pub fn error_map(&self) -> BTreeMap<String, u64> {
        ErrorKind::ALL
            .iter()
            .map(|k| (k.name().to_string(), self.errors[*k as usize]))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Build the final report.
    pub fn summary(&self, info: RunInfo, elapsed: Duration) -> Summary {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let latency_us = self.latency();
        let errors = self.error_map();
        Summary {
            mode: info.mode,
            url: info.url,
            connections: info.connections,
            threads: info.threads,
            rate: info.rate,
            message_size: info.message_size,
            duration_s: (secs * 1000.0).round() / 1000.0,
            ops: self.ops,
            ops_per_sec: (self.ops as f64 / secs * 10.0).round() / 10.0,
            connects: self.connects,
            held: self.held,
            bytes_sent: self.bytes_sent,
            bytes_received: self.bytes_received,
            errors_total: self.error_total(),
            errors,
            latency_us,
            resumed: None,
            proxy_cpu_us_per_op: None,
            open_at_window: None,
        }
    }
}

/// What was run, for the report.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// `http`, `http-rate`, `ws-echo`, `ws-connect-rate`, `ws-hold`, `sse-echo`.
    pub mode: &'static str,
    /// Target URL as given.
    pub url: String,
    /// Connections (or concurrency, or held connections).
    pub connections: usize,
    /// Worker threads.
    pub threads: usize,
    /// Target rate in operations per second, if open-loop.
    pub rate: Option<f64>,
    /// WebSocket message size, if any.
    pub message_size: Option<usize>,
}

/// Latency quantiles in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

/// The final report; `--json` prints exactly this object.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub mode: &'static str,
    pub url: String,
    pub connections: usize,
    pub threads: usize,
    pub rate: Option<f64>,
    pub message_size: Option<usize>,
    pub duration_s: f64,
    pub ops: u64,
    pub ops_per_sec: f64,
    pub connects: u64,
    pub held: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub errors_total: u64,
    pub errors: BTreeMap<String, u64>,
    pub latency_us: Latency,
    /// Handshake mode: sessions whose TLS handshake was a resumption.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed: Option<u64>,
    /// With `--watch-pid` (echo with a warm-up): CPU of the watched
    /// processes over the measurement window per operation, in µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_cpu_us_per_op: Option<f64>,
    /// Echo with a warm-up: sessions up when the measurement window opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_at_window: Option<i64>,
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl Summary {
    /// Name of one operation in this mode, for the table.
    fn unit(&self) -> &'static str {
        match self.mode {
            "http" | "http-rate" => "requests",
            "ws-echo" | "sse-echo" => "messages",
            "ws-connect-rate" | "tls-handshakes" | "tls-resumed" => "sessions",
            _ => "operations",
        }
    }

    /// Human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let l = &self.latency_us;
        let _ = writeln!(s, "{:<14}{}", "mode", self.mode);
        let _ = writeln!(s, "{:<14}{}", "target", self.url);
        let _ = writeln!(
            s,
            "{:<14}{} connections, {} threads, {:.2} s{}",
            "setup",
            self.connections,
            self.threads,
            self.duration_s,
            self.rate
                .map(|r| format!(", target rate {r}/s"))
                .unwrap_or_default()
        );
        if let Some(size) = self.message_size {
            let _ = writeln!(s, "{:<14}{size} B", "message size");
        }
        let _ = writeln!(
            s,
            "{:<14}{} ({:.1}/s)",
            self.unit(),
            self.ops,
            self.ops_per_sec
        );
        let _ = writeln!(s, "{:<14}{}", "connects", self.connects);
        if self.mode == "ws-hold" {
            let _ = writeln!(s, "{:<14}{}", "held", self.held);
        }
        if let Some(r) = self.resumed {
            let _ = writeln!(s, "{:<14}{r}", "resumed");
        }
        if let Some(cpu) = self.proxy_cpu_us_per_op {
            let _ = writeln!(s, "{:<14}{cpu} µs per {}", "watched cpu", self.unit());
        }
        let _ = writeln!(
            s,
            "{:<14}sent {}, received {}",
            "bytes",
            human_bytes(self.bytes_sent),
            human_bytes(self.bytes_received)
        );
        let errs = if self.errors.is_empty() {
            "none".to_string()
        } else {
            let parts: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            parts.join(", ")
        };
        let _ = writeln!(s, "{:<14}{}", "errors", errs);
        let _ = writeln!(
            s,
            "{:<14}p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {:.1}",
            "latency µs", l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_summary() {
        let mut a = Stats::new();
        let mut b = Stats::new();
        for i in 1..=100u64 {
            a.record(Duration::from_micros(i));
            b.record(Duration::from_micros(i + 100));
        }
        b.error(ErrorKind::Read);
        a.merge(&b);
        let info = RunInfo {
            mode: "http",
            url: "http://x/".into(),
            connections: 2,
            threads: 2,
            rate: None,
            message_size: None,
        };
        let s = a.summary(info, Duration::from_secs(2));
        assert_eq!(s.ops, 200);
        assert_eq!(s.ops_per_sec, 100.0);
        assert_eq!(s.errors_total, 1);
        assert_eq!(s.errors.get("read"), Some(&1));
        assert!(
            (99..=101).contains(&s.latency_us.p50),
            "{}",
            s.latency_us.p50
        );
        assert_eq!(s.latency_us.max, 200);
        assert!(s.table().contains("read 1"));
    }
}
