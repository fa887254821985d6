//! End-to-end tests of `wslb bench http --handshakes` against a tiny
//! blocking rustls server on loopback (a fresh self-signed certificate,
//! stateless tickets) that answers one request per connection and closes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::{run_http, CommonArgs, HttpArgs};

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

/// A TLS server for `localhost` and the PEM file of its certificate.
fn tls_server(tag: &str) -> (SocketAddr, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
    let ca = std::env::temp_dir().join(format!("wslb-bench-{tag}-{}.pem", std::process::id()));
    std::fs::write(&ca, ck.cert.pem()).expect("write the CA file");
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(wslb::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
    config.ticketer = rustls::crypto::ring::Ticketer::new().expect("ticketer");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(tcp) = stream else { continue };
            let config = Arc::clone(&config);
            thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut acc = Vec::new();
                let mut buf = [0u8; 1024];
                while !acc.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => acc.extend_from_slice(&buf[..n]),
                    }
                }
                if tls.write_all(RESPONSE).is_ok() {
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                }
            });
        }
    });
    (addr, ca)
}

fn args(addr: SocketAddr, ca: PathBuf, resume: bool) -> HttpArgs {
    HttpArgs {
        common: CommonArgs {
            url: format!("https://localhost:{}/x", addr.port()),
            connections: 4,
            duration: Some(0.6),
            threads: 1,
            cpu: None,
            timeout: 2.0,
            json: true,
        },
        rate: None,
        handshakes: true,
        resume,
        ca: Some(ca),
    }
}

#[test]
fn full_handshakes_are_never_resumed() {
    let (addr, ca) = tls_server("full");
    let (s, _) = run_http(args(addr, ca, false)).expect("run");
    assert_eq!(s.mode, "tls-handshakes");
    assert!(s.ops > 10, "only {} sessions", s.ops);
    assert_eq!(s.errors_total, 0, "{:?}", s.errors);
    assert_eq!(s.connects, s.ops);
    assert_eq!(s.resumed, Some(0));
}

#[test]
fn resumed_handshakes_use_tickets() {
    let (addr, ca) = tls_server("resume");
    let (s, _) = run_http(args(addr, ca, true)).expect("run");
    assert_eq!(s.mode, "tls-resumed");
    assert_eq!(s.errors_total, 0, "{:?}", s.errors);
    let resumed = s.resumed.unwrap_or(0);
    // Only each slot's first session (and any that found no ticket) is full.
    assert!(resumed * 10 >= s.ops * 8, "{resumed} of {} resumed", s.ops);
}

#[test]
fn an_untrusted_certificate_counts_tls_errors() {
    let (addr, _ca) = tls_server("untrusted");
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
    let wrong = std::env::temp_dir().join(format!("wslb-bench-wrong-{}.pem", std::process::id()));
    std::fs::write(&wrong, other.cert.pem()).expect("write");
    let mut a = args(addr, wrong, false);
    a.common.duration = Some(0.3);
    let (s, _) = run_http(a).expect("run");
    assert_eq!(s.ops, 0);
    assert!(
        s.errors.get("tls").copied().unwrap_or(0) > 0,
        "{:?}",
        s.errors
    );
}

#[test]
fn handshakes_need_an_https_url_and_a_ca_file() {
    let (addr, ca) = tls_server("args");
    let mut a = args(addr, ca, false);
    a.common.url = format!("http://{addr}/");
    assert!(run_http(a).is_err());
    let (addr, ca) = tls_server("noca");
    let mut a = args(addr, ca, false);
    a.ca = None;
    assert!(run_http(a).is_err());
}
