//! End-to-end tests of `wslb bench ws` (echo, connect-rate, hold) against the
//! crate's own echo backend on a loopback port, and of the echo backend
//! naming the channels a session asks for in its 101.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use super::{ws, CommonArgs, WsArgs};
use crate::cmd::echo::{run_echo, EchoConfig};

/// One echo backend for all the tests in this file.
fn echo() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        std::thread::spawn(move || {
            let _ = run_echo(EchoConfig {
                listen: addr,
                name: "bench-test".into(),
                workers: 1,
                agent: None,
            });
        });
        for _ in 0..100 {
            if TcpStream::connect(addr).is_ok() {
                return addr;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("echo backend did not start on {addr}");
    })
}

fn args(connections: usize) -> WsArgs {
    WsArgs {
        common: CommonArgs {
            url: format!("ws://{}/", echo()),
            connections,
            duration: Some(0.5),
            threads: 1,
            cpu: None,
            timeout: 2.0,
            json: true,
        },
        size: 1000,
        rate: None,
        connect_rate: false,
        hold: None,
        batch: 500,
        warmup: 0.0,
        fanout: Default::default(),
    }
}

#[test]
fn echo_round_trips() {
    let (s, _) = ws::run(args(4)).expect("run");
    assert_eq!(s.mode, "ws-echo");
    assert!(s.ops > 50, "only {} messages", s.ops);
    assert_eq!(s.errors_total, 0, "{:?}", s.errors);
    assert_eq!(s.message_size, Some(1000));
    // Every round trip sends at least the payload and reads it back.
    assert!(s.bytes_sent >= s.ops * 1000 && s.bytes_received >= s.ops * 1000);
}

#[test]
fn warmup_measures_only_the_window_after_every_session_is_up() {
    let mut a = args(20);
    a.size = 64;
    a.rate = Some(100.0);
    a.warmup = 5.0;
    a.fanout.open_rate = 100.0;
    a.fanout.watch_pids = vec![std::process::id()];
    a.common.duration = Some(1.0);
    let (s, _) = ws::run(a).expect("run");
    assert_eq!(s.errors_total, 0, "{:?}", s.errors);
    assert_eq!(s.open_at_window, Some(20));
    assert!(
        (0.9..1.3).contains(&s.duration_s),
        "window {} s",
        s.duration_s
    );
    // 100 messages/s over a 1 s window, none from the opening.
    assert!((80..=120).contains(&s.ops), "{} messages", s.ops);
    assert!(s.proxy_cpu_us_per_op.is_some());
}

#[test]
fn connect_rate_completes_sessions() {
    let mut a = args(2);
    a.connect_rate = true;
    let (s, _) = ws::run(a).expect("run");
    assert_eq!(s.mode, "ws-connect-rate");
    assert!(s.ops > 10, "only {} sessions", s.ops);
    assert_eq!(s.errors_total, 0, "{:?}", s.errors);
    // Sessions cut short by the end of the run were connected but not counted.
    assert!(
        (s.ops..=s.ops + 2).contains(&s.connects),
        "{} of {}",
        s.ops,
        s.connects
    );
}

#[test]
fn hold_keeps_connections_open() {
    let mut a = args(0);
    a.hold = Some(50);
    a.batch = 20;
    a.common.duration = Some(1.0);
    let (s, _) = ws::run(a).expect("run");
    assert_eq!(s.mode, "ws-hold");
    assert_eq!(s.held, 50);
    assert_eq!(s.errors_total, 0, "{:?}", s.errors);
}

#[test]
fn echo_names_requested_channels_in_its_101() {
    let upgrade = |target: &str, extra: &str| {
        let mut s = TcpStream::connect(echo()).expect("connect");
        let req = format!(
            "GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        );
        s.write_all(req.as_bytes()).expect("write");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).expect("read") == 1 {
            head.push(byte[0]);
        }
        String::from_utf8(head).expect("utf-8 head")
    };
    let head = upgrade("/?subscribe=bench%2Cnews", "X-Wslb-Subscribe: sport\r\n");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains("\r\nX-Wslb-Channels: bench, news, sport\r\n"),
        "{head}"
    );
    let head = upgrade("/", "");
    assert!(
        head.starts_with("HTTP/1.1 101") && !head.contains("X-Wslb-Channels"),
        "{head}"
    );
}
