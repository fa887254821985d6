//! Hardening of the plain HTTP path against clients that stop reading a
//! response: a write toward such a client that gets nowhere for
//! `--idle-timeout` ends the exchange (nginx's `send_timeout`), frees the
//! client's and the backend's connections, does not blame the backend, and
//! over TLS does not bring the balancer down.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::certs;
use common::client::get;
use common::proc::{echo, serve, Proc};
use common::sockets::{open_connections, small_buffer_socket, within};
use rustls::pki_types::ServerName;

/// How long a stalled response may hold its connection before the test
/// fails (the balancer's bound is 1 s of no progress).
const BOUND: Duration = Duration::from_secs(10);

/// A response far larger than every buffer between the balancer and the
/// client, so that the balancer's writes stall.
const BIG: &str = "/bytes/67108864";

fn balancer(backend: &Proc, extra: &[&str]) -> Proc {
    let mut flags = vec![
        "--workers",
        "1",
        "--admin-listen",
        "127.0.0.1:0",
        "--idle-timeout",
        "1s",
    ];
    flags.extend_from_slice(extra);
    serve(&[backend], &flags)
}

/// With a client that asked for [`BIG`] and never reads: the balancer
/// closes its connection within [`BOUND`], the backend's active count goes
/// back to zero, and the backend is neither ejected nor charged a failure.
fn stalled_response_is_let_go(lb: &Proc) {
    let admin = lb.addr("admin");
    assert!(
        within(BOUND, || open_connections(admin) == 1).is_some(),
        "the stalled client's connection was never counted"
    );
    let stalled_at = Instant::now();
    let ended = within(BOUND, || open_connections(admin) == 0);
    assert!(
        ended.is_some(),
        "the balancer held a client that stopped reading for {BOUND:?}"
    );
    eprintln!("stalled response let go after {:?}", stalled_at.elapsed());
    let idle = within(BOUND, || {
        common::admin::backends(admin)
            .iter()
            .all(|b| b["active"] == 0)
    });
    assert!(idle.is_some(), "the backend's active count stayed up");
    let list = common::admin::backends(admin);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["state"], "up", "backend ejected: {list:?}");
    assert_eq!(list[0]["failures_total"], 0, "backend blamed: {list:?}");
}

#[test]
fn a_client_that_stops_reading_a_response_is_let_go() {
    let e = echo("send-plain");
    let lb = balancer(&e, &[]);
    let mut client = small_buffer_socket(lb.http());
    client
        .write_all(format!("GET {BIG} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .expect("send request");
    stalled_response_is_let_go(&lb);
    // The balancer and the backend still serve.
    let r = get(lb.http(), "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "send-plain\n");
    drop(client);
}

#[test]
fn a_tls_client_that_stops_reading_a_response_is_let_go_without_a_crash() {
    let cert = certs::generate(&["localhost", "127.0.0.1"]);
    let e = echo("send-tls");
    let (c, k) = (cert.cert.to_string_lossy(), cert.key.to_string_lossy());
    let mut lb = balancer(
        &e,
        &[
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            &c,
            "--tls-key",
            &k,
        ],
    );
    let config = certs::client_config(&cert.cert_pem);
    let tcp = small_buffer_socket(lb.addr("https"));
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok();
    tcp.set_write_timeout(Some(Duration::from_secs(5))).ok();
    let name = ServerName::try_from("localhost").expect("server name");
    let conn = rustls::ClientConnection::new(config.clone(), name).expect("client connection");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // The handshake happens in this write; after it, nothing is read.
    tls.write_all(format!("GET {BIG} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .expect("TLS write (handshake)");
    tls.flush().expect("flush");
    stalled_response_is_let_go(&lb);
    // Reusing the cut TLS writer used to panic the worker (and abort the
    // whole balancer in release builds): it is alive and serving.
    assert!(
        matches!(lb.child.try_wait(), Ok(None)),
        "the balancer exited"
    );
    let r = get(lb.http(), "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "send-tls\n");
    let tcp = TcpStream::connect(lb.addr("https")).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let name = ServerName::try_from("localhost").expect("server name");
    let conn = rustls::ClientConnection::new(config, name).expect("client connection");
    let mut again = rustls::StreamOwned::new(conn, tcp);
    again
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("TLS write");
    let mut out = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        match std::io::Read::read(&mut again, &mut tmp) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("TLS read: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(text.ends_with("send-tls\n"), "{text}");
    drop(tls);
    cert.cleanup();
}
