//! Tests of the fan-out bench: its payload, subscribe URL, publish bodies
//! and answers, /proc parsing, and whole runs against a tiny fake hub (a
//! thread that upgrades WebSockets and, on each POST, writes the published
//! text to every one of them), including a publish API that answers 404.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use wslb::proto::ws::frame::{write_frame, OpCode};
use wslb::proto::ws::handshake::accept_key;

use super::fanout::{self, FanoutArgs};
use super::fanout_report::{encode_payload, parse_payload, subscribe_path, Phase};
use super::procstat::{stat_cpu_ticks, status_rss_kib};
use super::publisher::{parse_outcome, publish_body, PublishFormat, PublishOutcome};
use super::{CommonArgs, WsArgs};

#[test]
fn payload_round_trip() {
    let p = encode_payload(Phase::Rate, 42, 1_234_567_890_123, 64);
    assert_eq!(p.len(), 64);
    assert_eq!(
        parse_payload(p.as_bytes()),
        Some((Phase::Rate, 42, 1_234_567_890_123))
    );
    // A size too small for the fields is not cut.
    let p = encode_payload(Phase::Saturation, u64::MAX, u64::MAX, 8);
    assert_eq!(
        parse_payload(p.as_bytes()),
        Some((Phase::Saturation, u64::MAX, u64::MAX))
    );
    for bad in [
        &b"x 1 2"[..],
        b"s 1",
        b"s 1 2 3",
        b"s a 2",
        b"ss 1 2",
        b"\xff 1 2",
    ] {
        assert_eq!(
            parse_payload(bad),
            None,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn subscribe_query_is_added_and_encoded() {
    assert_eq!(subscribe_path("/", "bench"), "/?subscribe=bench");
    assert_eq!(
        subscribe_path("/ws?a=1", "room:1 b"),
        "/ws?a=1&subscribe=room%3A1%20b"
    );
}

#[test]
fn publish_bodies_have_each_apis_shape() {
    let text = "s 1 2 \"quoted\"";
    let v: Value =
        serde_json::from_slice(&publish_body(PublishFormat::Wslb, "bench", text)).expect("json");
    assert_eq!(v["text"], text);
    assert_eq!(v["channel"], "bench");
    let v: Value =
        serde_json::from_slice(&publish_body(PublishFormat::Pushpin, "bench", text)).expect("json");
    assert_eq!(v["items"][0]["channel"], "bench");
    assert_eq!(v["items"][0]["formats"]["ws-message"]["content"], text);
}

#[test]
fn publish_answers_parse() {
    let o = parse_outcome(br#"{"matched":5,"delivered":4,"skipped":1,"dropped":0}"#);
    assert_eq!(
        o,
        Some(PublishOutcome {
            matched: 5,
            delivered: 4,
            skipped: 1,
            dropped: 0
        })
    );
    let o = parse_outcome(br#"{"matched":2,"delivered":2,"pongs":null}"#).expect("lenient");
    assert_eq!((o.skipped, o.dropped), (0, 0));
    assert_eq!(parse_outcome(b"Published\n"), None);
    assert_eq!(parse_outcome(br#"{"error":"not found"}"#), None);
    let mut sum = PublishOutcome::default();
    sum.add(&PublishOutcome {
        matched: 3,
        delivered: 2,
        skipped: 0,
        dropped: 1,
    });
    sum.add(&PublishOutcome {
        matched: 3,
        delivered: 3,
        skipped: 0,
        dropped: 0,
    });
    assert_eq!((sum.matched, sum.delivered, sum.dropped), (6, 5, 1));
}

#[test]
fn proc_files_parse() {
    let stat = "1234 (pushpin (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 57 13 0 0 20 0 3 0";
    assert_eq!(stat_cpu_ticks(stat), Some(70));
    assert_eq!(stat_cpu_ticks("1 (x) S 1 2"), None);
    let status = "Name:\tcondure\nVmPeak:\t  9000 kB\nVmRSS:\t    5120 kB\nThreads:\t2\n";
    assert_eq!(status_rss_kib(status), Some(5120));
    assert_eq!(status_rss_kib("Name:\tx\n"), None);
}

/// WebSocket sessions the fake hub holds.
type Sessions = Arc<Mutex<Vec<TcpStream>>>;

fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr");
    (l, a)
}

/// A fake hub: ws://addr upgrades anything; http://pub_addr/publish writes
/// each published text to every session (status `status`, wslb's answer).
fn fake_hub(status: u16) -> (SocketAddr, SocketAddr) {
    let sessions: Sessions = Arc::default();
    let (ws, ws_addr) = listener();
    let held = Arc::clone(&sessions);
    std::thread::spawn(move || {
        for s in ws.incoming().flatten() {
            let held = Arc::clone(&held);
            std::thread::spawn(move || upgrade(s, &held));
        }
    });
    let (publish, pub_addr) = listener();
    std::thread::spawn(move || {
        for s in publish.incoming().flatten() {
            let sessions = Arc::clone(&sessions);
            std::thread::spawn(move || serve_publishes(s, &sessions, status));
        }
    });
    (ws_addr, pub_addr)
}

fn upgrade(s: TcpStream, held: &Sessions) {
    let mut r = BufReader::new(s);
    let mut key = String::new();
    let mut line = String::new();
    while r.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
        match line.split_once(':') {
            Some((name, v)) if name.eq_ignore_ascii_case("sec-websocket-key") => {
                key = v.trim().to_string();
            }
            _ => {}
        }
        line.clear();
    }
    let mut s = r.into_inner();
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key.as_bytes())
    );
    if s.write_all(head.as_bytes()).is_ok() {
        held.lock().expect("lock").push(s);
    }
}

fn serve_publishes(s: TcpStream, sessions: &Sessions, status: u16) {
    let mut r = BufReader::new(s);
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if !r.read_line(&mut line).is_ok_and(|n| n > 0) {
                return;
            }
            if line == "\r\n" {
                break;
            }
            match line.split_once(':') {
                Some((name, v)) if name.eq_ignore_ascii_case("content-length") => {
                    len = v.trim().parse().unwrap_or(0);
                }
                _ => {}
            }
        }
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let answer = if status == 200 {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let text = v["text"].as_str().unwrap_or("");
            let mut frame = Vec::new();
            write_frame(&mut frame, true, OpCode::Text, None, text.as_bytes());
            let mut all = sessions.lock().expect("lock");
            let n = all
                .iter_mut()
                .map(|s| s.write_all(&frame).is_ok())
                .filter(|ok| *ok)
                .count();
            format!(r#"{{"matched":{n},"delivered":{n},"skipped":0,"dropped":0}}"#)
        } else {
            r#"{"error":"not found"}"#.to_string()
        };
        let reply = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if r.get_mut().write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn args(ws: SocketAddr, publish: SocketAddr, sessions: usize) -> WsArgs {
    WsArgs {
        common: CommonArgs {
            url: format!("ws://{ws}/"),
            connections: sessions,
            duration: Some(0.5),
            threads: 1,
            cpu: None,
            timeout: 2.0,
            json: true,
        },
        size: 64,
        rate: None,
        connect_rate: false,
        hold: None,
        batch: 500,
        warmup: 0.0,
        fanout: FanoutArgs {
            subscribe: Some("bench".into()),
            publish_url: format!("http://{publish}/publish"),
            publish_rate: 10.0,
            open_rate: 500.0,
            // This process stands in for the proxy: CPU and RSS are measured.
            watch_pids: vec![std::process::id()],
            ..FanoutArgs::default()
        },
    }
}

#[test]
fn fanout_measures_every_phase() {
    let (ws, publish) = fake_hub(200);
    let (s, _) = fanout::run(&args(ws, publish, 20)).expect("run");
    assert_eq!(s.publish_error, None);
    assert_eq!((s.subscribed, s.receiving), (20, 20));
    let sat = s.saturation.as_ref().expect("saturation");
    assert!(sat.publishes > 0 && sat.deliveries > 0, "{sat:?}");
    assert_eq!(sat.lost, 0);
    assert!(sat.proxy_cpu_us_per_delivery.is_some() && sat.bench_cores_busy.is_some());
    let rate = s.rate.as_ref().expect("rate");
    assert_eq!(rate.publishes, 5);
    assert_eq!((rate.expected, rate.deliveries, rate.lost), (100, 100, 0));
    assert!(rate.latency_us.p99 >= rate.latency_us.p50 && rate.latency_us.p50 > 0);
    let answers = s.publish_answers.expect("wslb-style answers");
    assert_eq!(answers.delivered, answers.matched);
    assert!(s.proxy_rss_kib_before.is_some() && s.proxy_bytes_per_session.is_some());
    assert_eq!(s.errors_total, 0, "{:?}", s.errors);
    let json: Value = serde_json::to_value(&s).expect("json");
    assert_eq!(json["mode"], "ws-fanout");
    assert_eq!(json["publish_format"], "wslb");
}

#[test]
fn refused_publish_is_reported_not_fatal() {
    let (ws, publish) = fake_hub(404);
    let (s, _) = fanout::run(&args(ws, publish, 5)).expect("run");
    let e = s.publish_error.as_deref().expect("publish error");
    assert!(e.contains("answered 404"), "{e}");
    assert!(s.saturation.is_none() && s.rate.is_none());
    assert_eq!(s.subscribed, 5);
    assert!(s.table().contains("answered 404"));
}
