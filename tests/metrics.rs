//! `GET /metrics` through the real binary: the series move by what known
//! traffic makes them move (requests by backend and class, histograms'
//! counts, a session opened and closed with 1000 and its messages, a
//! handshake refused, a per-IP refusal), `latency_ms` in `/api/backends`,
//! and every series docs/OPERATIONS.md documents is exposed (and every
//! exposed one documented), so the docs cannot drift.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::client::{get, raw_status, HttpConn};
use common::proc::{echo, serve, Proc};
use common::ws_client::WsConn;

fn scrape(admin: SocketAddr) -> String {
    let r = get(admin, "/metrics");
    assert_eq!(r.status, 200);
    r.text()
}

/// The value of the series `key` (name with its labels, as exposed); 0
/// when absent.
fn value(text: &str, key: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().expect("a number"))
        .unwrap_or(0.0)
}

fn lb_with_admin(e: &Proc, extra: &[&str]) -> (Proc, SocketAddr) {
    let mut args = vec!["--admin-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let lb = serve(&[e], &args);
    let admin = lb.addr("admin");
    (lb, admin)
}

#[test]
fn series_move_by_the_traffic_sent() {
    let e = echo("e1");
    // One worker: connections are counted against the address in the
    // order they arrive.
    let (lb, admin) = lb_with_admin(&e, &["--max-connections-per-ip", "3", "--workers", "1"]);
    let backend = format!("http://{}", e.http());
    let requests = format!("wslb_requests_total{{backend=\"{backend}\",class=\"2xx\"}}");
    let latency_count = format!("wslb_backend_response_seconds_count{{backend=\"{backend}\"}}");
    let before = scrape(admin);

    let mut c = HttpConn::connect(lb.http());
    for _ in 0..10 {
        assert_eq!(c.get("/ten").status, 200);
    }
    drop(c);
    let mut ws = WsConn::connect(lb.http());
    for i in 0..4 {
        assert!(ws.send_text(&format!("m{i}")));
        ws.recv_msg();
    }
    assert!(ws.send_close(1000, ""));
    assert_eq!(ws.recv_close().map(|c| c.0), Some(1000));
    assert!(ws.closes_within(Duration::from_secs(3)));
    drop(ws);
    let bad_version = b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 12\r\n\r\n";
    assert_eq!(raw_status(lb.http(), bad_version), 426);
    // The connections above are gone before the address is filled up.
    std::thread::sleep(Duration::from_millis(300));
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(lb.http()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        raw_status(lb.http(), b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"),
        429
    );
    drop(held);

    // Session ends are counted as their relay finishes, a refused
    // connection once its answer is done: poll briefly.
    let mut after = scrape(admin);
    let refused = "wslb_requests_total{backend=\"-\",class=\"4xx\"}";
    for _ in 0..50 {
        let closed = value(&after, "wslb_ws_sessions_closed_total{code=\"1000\"}") > 0.0;
        if closed && value(&after, refused) - value(&before, refused) >= 2.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        after = scrape(admin);
    }
    let moved = |key: &str| value(&after, key) - value(&before, key);
    // The 10 requests and the upgrade (101 is 1xx).
    assert_eq!(moved(&requests), 10.0, "{after}");
    assert_eq!(
        moved(&format!(
            "wslb_requests_total{{backend=\"{backend}\",class=\"1xx\"}}"
        )),
        1.0
    );
    assert_eq!(moved(&latency_count), 11.0);
    // And the 426 and the 429, answered by the balancer.
    assert_eq!(
        moved("wslb_requests_total{backend=\"-\",class=\"4xx\"}"),
        2.0
    );
    assert_eq!(moved("wslb_request_duration_seconds_count"), 12.0);
    assert!(moved("wslb_request_duration_seconds_sum") > 0.0);
    assert_eq!(moved("wslb_ws_sessions_opened_total"), 1.0);
    assert_eq!(moved("wslb_ws_sessions_closed_total{code=\"1000\"}"), 1.0);
    assert_eq!(value(&after, "wslb_ws_sessions_open"), 0.0);
    assert_eq!(moved("wslb_ws_messages_total{direction=\"in\"}"), 4.0);
    assert_eq!(moved("wslb_ws_messages_total{direction=\"out\"}"), 4.0);
    assert!(moved("wslb_ws_bytes_total{direction=\"in\"}") >= 4.0 * 8.0);
    assert_eq!(
        moved("wslb_ws_handshake_refusals_total{reason=\"version\"}"),
        1.0
    );
    assert_eq!(
        moved("wslb_connection_limit_refusals_total{limit=\"per_ip\"}"),
        1.0
    );
    assert_eq!(moved("wslb_per_ip_refused_total"), 1.0);
    assert_eq!(value(&after, "wslb_backends"), 1.0);
    assert_eq!(moved("wslb_access_log_dropped_total"), 0.0);
    // Buckets are cumulative: +Inf holds every request.
    let inf = format!("wslb_backend_response_seconds_bucket{{backend=\"{backend}\",le=\"+Inf\"}}");
    assert_eq!(value(&after, &inf), value(&after, &latency_count));

    let list = common::admin::backends(admin);
    let ms = list[0]["latency_ms"].as_f64().expect("latency_ms");
    assert!(ms > 0.0 && ms < 10_000.0, "{ms}");
}

#[test]
fn a_backend_without_answers_has_null_latency_and_no_requests() {
    let e = echo("e1");
    let (_lb, admin) = lb_with_admin(&e, &[]);
    let list = common::admin::backends(admin);
    assert!(list[0]["latency_ms"].is_null(), "{list:?}");
    let text = scrape(admin);
    assert!(!text.contains("class=\"2xx\"} 1"), "{text}");
}

/// The series names in docs/OPERATIONS.md's metrics table: rows whose
/// first cell is a backticked `wslb_` name.
fn documented() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/OPERATIONS.md"))
        .expect("docs/OPERATIONS.md");
    let start = doc.find("## Metrics").expect("a Metrics section");
    doc[start..]
        .lines()
        .filter_map(|l| l.strip_prefix("| `wslb_"))
        .filter_map(|rest| rest.split('`').next())
        .map(|name| format!("wslb_{name}"))
        .collect()
}

#[test]
fn every_documented_series_is_exposed_and_every_exposed_one_documented() {
    let e = echo("e1");
    let (lb, admin) = lb_with_admin(&e, &[]);
    assert_eq!(get(lb.http(), "/").status, 200);
    let text = scrape(admin);
    let exposed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let docs = documented();
    assert!(docs.len() >= 20, "too few documented series: {docs:?}");
    for name in &docs {
        assert!(
            exposed.contains(&name.as_str()),
            "{name} is documented but not exposed"
        );
    }
    for name in &exposed {
        assert!(
            docs.iter().any(|d| d == name),
            "{name} is exposed but not documented"
        );
    }
}

#[test]
fn tls_handshakes_and_failures_are_counted() {
    use common::certs::{client_config, generate};
    use rustls::pki_types::ServerName;
    let cert = generate(&["localhost"]);
    let e = echo("e1");
    let (c, k) = (cert.cert.to_str().unwrap(), cert.key.to_str().unwrap());
    let tls_args = [
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        c,
        "--tls-key",
        k,
    ];
    let (lb, admin) = lb_with_admin(&e, &tls_args);
    let addr = lb.addr("https");
    let before = scrape(admin);
    // One good handshake and request.
    let name = ServerName::try_from("localhost".to_string()).unwrap();
    let conn = rustls::ClientConnection::new(client_config(&cert.cert_pem), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("TLS handshake and request");
    let mut head = [0u8; 12];
    tls.read_exact(&mut head).expect("answer");
    assert_eq!(&head[9..12], b"200");
    drop(tls);
    // One that is not TLS at all.
    let mut junk = TcpStream::connect(addr).unwrap();
    junk.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let _ = junk.read(&mut [0u8; 64]);
    let key = "wslb_tls_handshake_failures_total{reason=\"error\"}";
    let mut after = scrape(admin);
    for _ in 0..50 {
        if value(&after, key) > value(&before, key) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        after = scrape(admin);
    }
    let moved = |k: &str| value(&after, k) - value(&before, k);
    assert_eq!(moved("wslb_tls_handshakes_total"), 1.0, "{after}");
    assert_eq!(moved(key), 1.0, "{after}");
    cert.cleanup();
}
