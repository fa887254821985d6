//! End-to-end tests of `wslb bench http` against a tiny blocking HTTP server
//! on loopback that answers every request with a chunked body.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread;

use super::{run_http, CommonArgs, HttpArgs};

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";

fn chunked_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut acc = Vec::new();
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    acc.extend_from_slice(&buf[..n]);
                    while let Some(i) = acc.windows(4).position(|w| w == b"\r\n\r\n") {
                        acc.drain(..i + 4);
                        if s.write_all(RESPONSE).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

fn args(addr: SocketAddr, rate: Option<f64>) -> HttpArgs {
    HttpArgs {
        common: CommonArgs {
            url: format!("http://{addr}/x"),
            connections: 4,
            duration: Some(0.6),
            threads: 2,
            cpu: None,
            timeout: 2.0,
            json: true,
        },
        rate,
        handshakes: false,
        resume: false,
        ca: None,
    }
}

#[test]
fn closed_loop_reads_chunked_responses() {
    let addr = chunked_server();
    let (s, _) = run_http(args(addr, None)).expect("run");
    assert_eq!(s.mode, "http");
    assert!(s.ops > 100, "only {} requests", s.ops);
    assert_eq!(s.errors_total, 0, "{:?}", s.errors);
    assert_eq!(s.connects, 4);
    assert!(s.bytes_received >= s.ops * RESPONSE.len() as u64);
}

#[test]
fn open_loop_keeps_the_rate() {
    let addr = chunked_server();
    let (s, _) = run_http(args(addr, Some(500.0))).expect("run");
    assert_eq!(s.mode, "http-rate");
    // 500/s for 0.6 s is 300 requests; allow for the random start phase.
    assert!((200..=320).contains(&s.ops), "{} requests", s.ops);
    assert_eq!(s.errors_total, 0, "{:?}", s.errors);
}

#[test]
fn refused_port_counts_connect_errors() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let mut a = args(port, None);
    a.common.duration = Some(0.3);
    let (s, _) = run_http(a).expect("run");
    assert_eq!(s.ops, 0);
    assert!(
        s.errors.get("connect").copied().unwrap_or(0) > 0,
        "{:?}",
        s.errors
    );
}
