//! `GET /metrics`: the Prometheus text exposition. The workers' own
//! counters and histograms (`proxy::metrics`) are added up here, at
//! scrape time, together with the process-wide gauges and counters; and
//! the per-backend moving average of backend time for `GET /api/backends`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::pool::registry::BackendInfo;
use crate::proxy::metrics::{Refusal, WorkerMetrics, BUCKETS_US, CLASS_LABELS, CLOSE_LABELS};
use crate::server::Shared;

/// Per-backend series: name, Prometheus type, value.
type Series = (&'static str, &'static str, fn(&BackendInfo) -> u64);

const BACKEND_SERIES: [Series; 4] = [
    ("wslb_backend_active", "gauge", |b| u64::from(b.active)),
    ("wslb_backend_reported_load", "gauge", |b| {
        u64::from(b.reported_load)
    }),
    ("wslb_backend_requests_total", "counter", |b| {
        b.requests_total
    }),
    ("wslb_backend_failures_total", "counter", |b| {
        b.failures_total
    }),
];

const SLOTS: usize = BUCKETS_US.len() + 1;

/// One histogram added up over the workers.
#[derive(Default)]
struct Hist {
    buckets: [u64; SLOTS],
    sum_us: u64,
}

/// One backend's series added up over the workers.
#[derive(Default)]
struct PerBackend {
    requests: [u64; 5],
    latency: Hist,
}

/// Writes `# HELP` and `# TYPE` for `name`.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A series without labels.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// A counter with one label over the workers: `pick` gives each worker's
/// counters, in the order of `labels`.
fn labelled(
    out: &mut String,
    workers: &[std::sync::Arc<WorkerMetrics>],
    (name, help, label): (&str, &str, &str),
    labels: &[&str],
    pick: impl Fn(&WorkerMetrics, usize) -> u64,
) {
    header(out, name, "counter", help);
    for (i, value) in labels.iter().enumerate() {
        let total: u64 = workers.iter().map(|w| pick(w, i)).sum();
        let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {total}");
    }
}

/// A histogram's lines; `labels` is empty or `key="value",`.
fn histogram(out: &mut String, name: &str, labels: &str, h: &Hist) {
    let mut cumulative = 0;
    for (i, count) in h.buckets.iter().enumerate() {
        cumulative += count;
        match BUCKETS_US.get(i) {
            Some(&us) => {
                let le = us as f64 / 1e6;
                let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {cumulative}");
            }
            None => {
                let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {cumulative}");
            }
        }
    }
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", labels.trim_end_matches(','))
    };
    let sum = h.sum_us as f64 / 1e6;
    let _ = writeln!(out, "{name}_sum{braces} {sum}");
    let _ = writeln!(out, "{name}_count{braces} {cumulative}");
}

/// The whole exposition.
pub(super) fn render(shared: &Shared) -> String {
    let mut out = String::with_capacity(8192);
    let workers = &shared.telemetry.workers;
    let o = &mut out;
    single(
        o,
        "wslb_open_connections",
        "gauge",
        "Client connections open now.",
        shared.open_connections.load(Ordering::Relaxed) as u64,
    );
    single(o, "wslb_per_ip_refused_total", "counter", "Connections refused at --max-connections-per-ip (same as wslb_connection_limit_refusals_total{limit=\"per_ip\"}).", shared.per_ip_refused.load(Ordering::Relaxed));
    let totals = &shared.router.totals;
    for (name, help, value) in [
        (
            "wslb_hub_operations_total",
            "Messaging operations applied (publish, send, ping, close, subscribe).",
            &totals.applied,
        ),
        (
            "wslb_hub_delivered_total",
            "Messages queued to sessions by messaging operations.",
            &totals.delivered,
        ),
        (
            "wslb_hub_skipped_total",
            "Sessions a messaging operation matched but skipped.",
            &totals.skipped,
        ),
        (
            "wslb_hub_slow_consumers_closed_total",
            "Sessions closed with 1008 because their send queue was full.",
            &totals.dropped,
        ),
    ] {
        single(o, name, "counter", help, value.load(Ordering::Relaxed));
    }
    let list = shared.registry.list();
    for (name, kind, value) in BACKEND_SERIES {
        header(o, name, kind, backend_help(name));
        for b in &list {
            let _ = writeln!(o, "{name}{{id=\"{}\"}} {}", escape(&b.id), value(b));
        }
    }
    single(
        o,
        "wslb_backends",
        "gauge",
        "Backends in the pool (static and registered).",
        shared.registry.len() as u64,
    );

    // Requests and backend times, by backend, over the workers.
    let mut per_backend: BTreeMap<String, PerBackend> = BTreeMap::new();
    let mut total = Hist::default();
    for w in workers {
        w.request_duration
            .add_to(&mut total.buckets, &mut total.sum_us);
        let Ok(series) = w.backends.lock() else {
            continue;
        };
        for s in series.iter() {
            let entry = per_backend.entry(s.id.to_string()).or_default();
            for (into, c) in entry.requests.iter_mut().zip(&s.requests) {
                *into += c.get();
            }
            s.latency
                .add_to(&mut entry.latency.buckets, &mut entry.latency.sum_us);
        }
    }
    header(
        o,
        "wslb_requests_total",
        "counter",
        "HTTP requests answered, by backend (\"-\": answered by the balancer) and status class.",
    );
    for (id, b) in &per_backend {
        for (class, n) in CLASS_LABELS.iter().zip(b.requests) {
            let _ = writeln!(
                o,
                "wslb_requests_total{{backend=\"{}\",class=\"{class}\"}} {n}",
                escape(id)
            );
        }
    }
    header(
        o,
        "wslb_request_duration_seconds",
        "histogram",
        "Whole HTTP request time, from its head read to its last byte answered.",
    );
    histogram(o, "wslb_request_duration_seconds", "", &total);
    header(
        o,
        "wslb_backend_response_seconds",
        "histogram",
        "Time from a request's head read to its backend's response head, by backend.",
    );
    for (id, b) in per_backend.iter().filter(|(id, _)| id.as_str() != "-") {
        histogram(
            o,
            "wslb_backend_response_seconds",
            &format!("backend=\"{}\",", escape(id)),
            &b.latency,
        );
    }

    let sum = |f: &dyn Fn(&WorkerMetrics) -> u64| workers.iter().map(|w| f(w)).sum::<u64>();
    let opened = sum(&|w| w.ws_opened.get());
    let closed = sum(&|w| w.ws_closed.iter().map(|c| c.get()).sum());
    single(
        o,
        "wslb_ws_sessions_open",
        "gauge",
        "WebSocket sessions open now.",
        opened.saturating_sub(closed),
    );
    single(
        o,
        "wslb_ws_sessions_opened_total",
        "counter",
        "WebSocket sessions established (101 relayed).",
        opened,
    );
    labelled(
        o,
        workers,
        (
            "wslb_ws_sessions_closed_total",
            "WebSocket sessions ended, by close code (1006: lost without a close frame).",
            "code",
        ),
        &CLOSE_LABELS,
        |w, i| w.ws_closed[i].get(),
    );
    labelled(
        o,
        workers,
        (
            "wslb_ws_messages_total",
            "WebSocket data messages: in from clients, out toward clients.",
            "direction",
        ),
        &["in", "out"],
        |w, i| w.ws_messages[i].get(),
    );
    labelled(
        o,
        workers,
        (
            "wslb_ws_bytes_total",
            "WebSocket bytes after the upgrade: in from clients, out from backends.",
            "direction",
        ),
        &["in", "out"],
        |w, i| w.ws_bytes[i].get(),
    );
    let reasons: Vec<&str> = Refusal::ALL.iter().map(|r| r.label()).collect();
    labelled(
        o,
        workers,
        (
            "wslb_ws_handshake_refusals_total",
            "WebSocket upgrades refused before any session existed, by reason.",
            "reason",
        ),
        &reasons,
        |w, i| w.refusals[i].get(),
    );
    single(
        o,
        "wslb_tls_handshakes_total",
        "counter",
        "TLS handshakes completed with clients.",
        sum(&|w| w.tls_handshakes.get()),
    );
    labelled(
        o,
        workers,
        (
            "wslb_tls_handshake_failures_total",
            "TLS handshakes with clients that failed or timed out.",
            "reason",
        ),
        &["error", "timeout"],
        |w, i| w.tls_failures[i].get(),
    );
    single(
        o,
        "wslb_retries_total",
        "counter",
        "Requests sent again (another backend or a fresh connection).",
        sum(&|w| w.retries.get()),
    );
    single(
        o,
        "wslb_ejections_total",
        "counter",
        "Backends ejected after failures (passive health).",
        sum(&|w| w.ejections.get()),
    );
    header(
        o,
        "wslb_connection_limit_refusals_total",
        "counter",
        "Connections refused at a connection limit.",
    );
    let _ = writeln!(
        o,
        "wslb_connection_limit_refusals_total{{limit=\"per_ip\"}} {}",
        shared.per_ip_refused.load(Ordering::Relaxed)
    );
    single(
        o,
        "wslb_max_connections_reached_total",
        "counter",
        "Times accepting paused because --max-connections were open.",
        sum(&|w| w.max_connections_waits.get()),
    );
    single(
        o,
        "wslb_access_log_dropped_total",
        "counter",
        "Access log lines dropped because the writer could not keep up.",
        shared.telemetry.access_log.dropped(),
    );
    out
}

fn backend_help(name: &str) -> &'static str {
    match name {
        "wslb_backend_active" => {
            "Requests in flight and sessions open through this balancer, by backend id."
        }
        "wslb_backend_reported_load" => {
            "Load the backend reported in its heartbeat, by backend id."
        }
        "wslb_backend_requests_total" => "Requests and sessions started, by backend id.",
        _ => "Failures (connect, reset, timeout), by backend id.",
    }
}

/// The moving average of each backend's time to its response head, in
/// milliseconds, by id (the mean of the workers that saw it).
pub(super) fn latency_ms(shared: &Shared) -> BTreeMap<String, f64> {
    let mut acc: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for w in &shared.telemetry.workers {
        let Ok(series) = w.backends.lock() else {
            continue;
        };
        for s in series.iter() {
            let us = s.ewma_us.get();
            if us > 0 {
                let e = acc.entry(s.id.to_string()).or_default();
                e.0 += us;
                e.1 += 1;
            }
        }
    }
    acc.into_iter()
        .map(|(id, (sum, n))| (id, (sum as f64 / n as f64).round() / 1000.0))
        .collect()
}

/// A label value escaped for the exposition format.
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let mut h = Hist::default();
        h.buckets[0] = 2;
        h.buckets[SLOTS - 1] = 1;
        h.sum_us = 1_500_000;
        let mut out = String::new();
        histogram(&mut out, "x", "backend=\"a\",", &h);
        assert!(
            out.contains("x_bucket{backend=\"a\",le=\"0.0005\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{backend=\"a\",le=\"10\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{backend=\"a\",le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("x_sum{backend=\"a\"} 1.5\n"), "{out}");
        assert!(out.contains("x_count{backend=\"a\"} 3\n"), "{out}");
    }
}
