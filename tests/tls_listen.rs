//! Integration tests of the TLS listener: HTTPS through `--tls-listen` with
//! an rcgen certificate and an independent rustls client, certificate choice
//! by SNI, and clear startup errors for a missing file or a mismatched key.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::certs::{client_config, der, generate, https_exchange, TestCert};
use common::proc::{echo, serve, Proc};
use rustls::pki_types::CertificateDer;

/// A finished HTTPS exchange: the response text and the leaf certificate
/// the server presented.
struct Seen {
    response: String,
    leaf: CertificateDer<'static>,
}

/// Sends one request with `Connection: close` over TLS to `addr`, naming
/// `server_name` (SNI for DNS names; none for an IP), reads to EOF.
fn https_get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    server_name: &str,
    path: &str,
) -> Seen {
    let (response, leaf) =
        https_exchange(addr, config, server_name, path).unwrap_or_else(|e| panic!("{e}"));
    Seen { response, leaf }
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn https_get_through_tls_listener() {
    let cert = generate(&["localhost", "127.0.0.1"]);
    let a = echo("alpha");
    let lb = serve(
        &[&a],
        &[
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            path(&cert.cert),
            "--tls-key",
            path(&cert.key),
        ],
    );
    let config = client_config(&cert.cert_pem);
    let seen = https_get(lb.addr("https"), config.clone(), "localhost", "/");
    assert!(
        seen.response.starts_with("HTTP/1.1 200 "),
        "{}",
        seen.response
    );
    assert!(
        seen.response.ends_with("\r\n\r\nalpha\n"),
        "{}",
        seen.response
    );
    assert_eq!(seen.leaf, der(&cert));
    // The backend learns the client came over TLS.
    let seen = https_get(lb.addr("https"), config, "localhost", "/headers");
    assert!(
        seen.response.contains("X-Forwarded-Proto: https\r\n"),
        "{}",
        seen.response
    );
    // The plain listener still answers plain HTTP.
    assert_eq!(common::client::get(lb.http(), "/").text(), "alpha\n");
    cert.cleanup();
}

#[test]
fn sni_selects_the_named_certificate() {
    let default = generate(&["127.0.0.1"]);
    let one = generate(&["one.test"]);
    let two = generate(&["two.test"]);
    let sni = |host: &str, c: &TestCert| format!("{host}={},{}", path(&c.cert), path(&c.key));
    let (sni_one, sni_two) = (sni("one.test", &one), sni("two.test", &two));
    let a = echo("alpha");
    let lb = serve(
        &[&a],
        &[
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            path(&default.cert),
            "--tls-key",
            path(&default.key),
            "--tls-sni",
            &sni_one,
            "--tls-sni",
            &sni_two,
        ],
    );
    let trusted = format!("{}{}{}", default.cert_pem, one.cert_pem, two.cert_pem);
    let config = client_config(&trusted);
    let addr = lb.addr("https");
    for (name, want) in [("one.test", &one), ("two.test", &two), ("ONE.test", &one)] {
        let seen = https_get(addr, config.clone(), name, "/");
        assert_eq!(seen.leaf, der(want), "SNI {name} got the wrong certificate");
        assert!(seen.response.ends_with("alpha\n"), "{}", seen.response);
    }
    // No SNI (an IP address): the default certificate.
    let seen = https_get(addr, config, "127.0.0.1", "/");
    assert_eq!(seen.leaf, der(&default));
    for c in [default, one, two] {
        c.cleanup();
    }
}

/// Runs `wslb serve ARGS` expecting it to fail at startup: returns the exit
/// code and stderr. Panics if it is still running after 10 s.
fn startup_failure(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wslb"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
            "--no-pin",
            "--workers",
            "1",
        ])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wslb");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wslb {args:?} did not exit on a bad configuration");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .ok();
    (status.code(), err)
}

#[test]
fn missing_certificate_file_is_a_clear_startup_error() {
    let good = generate(&["localhost"]);
    let missing = good.dir.join("no-such-cert.pem");
    let (code, err) = startup_failure(&[
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        path(&missing),
        "--tls-key",
        path(&good.key),
    ]);
    assert_ne!(code, Some(0));
    assert!(code.is_some(), "killed by a signal: {err}");
    assert!(
        err.contains(path(&missing)),
        "message does not name the file: {err}"
    );
    assert!(err.contains("certificate"), "{err}");
    // A missing key file is named too.
    let missing_key = good.dir.join("no-such-key.pem");
    let (code, err) = startup_failure(&[
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        path(&good.cert),
        "--tls-key",
        path(&missing_key),
    ]);
    assert!(code.is_some_and(|c| c != 0), "{code:?}");
    assert!(err.contains(path(&missing_key)), "{err}");
    good.cleanup();
}

#[test]
fn mismatched_key_is_a_clear_startup_error() {
    let one = generate(&["localhost"]);
    let other = generate(&["localhost"]);
    let (code, err) = startup_failure(&[
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        path(&one.cert),
        "--tls-key",
        path(&other.key),
    ]);
    assert!(code.is_some_and(|c| c != 0), "{code:?}: {err}");
    assert!(
        err.contains(path(&other.key)),
        "message does not name the key: {err}"
    );
    assert!(
        err.contains(path(&one.cert)),
        "message does not name the certificate: {err}"
    );
    assert!(err.contains("does not match"), "{err}");
    // Also for an SNI certificate.
    let sni = format!("api.test={},{}", path(&one.cert), path(&other.key));
    let (code, err) = startup_failure(&["--tls-listen", "127.0.0.1:0", "--tls-sni", &sni]);
    assert!(code.is_some_and(|c| c != 0), "{code:?}: {err}");
    assert!(err.contains(path(&other.key)), "{err}");
    one.cleanup();
    other.cleanup();
}

/// A TLS client that stalls mid-handshake does not keep the listener from
/// serving others, and is dropped within the header timeout.
#[test]
fn stalled_tls_handshake_does_not_block_others() {
    let cert = generate(&["localhost"]);
    let a = echo("alpha");
    let lb: Proc = serve(
        &[&a],
        &[
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            path(&cert.cert),
            "--tls-key",
            path(&cert.key),
            "--client-header-timeout",
            "500ms",
            "--workers",
            "1",
        ],
    );
    let addr = lb.addr("https");
    let mut stalled = TcpStream::connect(addr).expect("connect");
    stalled
        .write_all(&[0x16, 0x03, 0x01])
        .expect("partial record");
    let seen = https_get(addr, client_config(&cert.cert_pem), "localhost", "/");
    assert!(seen.response.ends_with("alpha\n"));
    stalled.set_read_timeout(Some(Duration::from_secs(3))).ok();
    let started = Instant::now();
    let mut tmp = [0u8; 64];
    let _ = stalled.read(&mut tmp);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "stalled handshake kept open"
    );
    cert.cleanup();
}
