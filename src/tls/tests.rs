//! Unit tests for TLS loading, SNI choice and handshakes, with rcgen
//! certificates written to unique temporary directories.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, Connection, ServerConnection};

use super::*;
use handshakes::{handshake, insecure_client, leaf, pkcs8_p256_to_sec1};

/// A temp directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "wslb-tls-unit-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed certificate for `names`, written as `<stem>.crt`/`<stem>.key`.
struct Gen {
    pair: CertPair,
    der: Vec<u8>,
    key_der: Vec<u8>,
}

fn gen(dir: &TempDir, stem: &str, names: &[&str]) -> Gen {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names).expect("rcgen");
    let cert = dir.write(&format!("{stem}.crt"), ck.cert.pem().as_bytes());
    let key = dir.write(
        &format!("{stem}.key"),
        ck.key_pair.serialize_pem().as_bytes(),
    );
    Gen {
        pair: CertPair { cert, key },
        der: ck.cert.der().to_vec(),
        key_der: ck.key_pair.serialize_der(),
    }
}

fn settings(default: Option<&Gen>, sni: &[(&str, &Gen)]) -> TlsSettings {
    TlsSettings {
        default_cert: default.map(|g| g.pair.clone()),
        sni: sni
            .iter()
            .map(|(h, g)| (h.to_string(), g.pair.clone()))
            .collect(),
    }
}

/// Settings with just a default certificate pair.
fn only(cert: PathBuf, key: PathBuf) -> TlsSettings {
    TlsSettings {
        default_cert: Some(CertPair { cert, key }),
        sni: vec![],
    }
}

fn err_of(r: Result<Arc<rustls::ServerConfig>, TlsError>) -> TlsError {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

// ---- loading -------------------------------------------------------------

#[test]
fn good_pair_loads_with_alpn_and_tickets() {
    let dir = TempDir::new();
    let g = gen(&dir, "a", &["a.test"]);
    let cfg = build_server_config(&settings(Some(&g), &[])).expect("loads");
    assert_eq!(cfg.alpn_protocols, vec![b"http/1.1".to_vec()]);
    assert!(cfg.ticketer.enabled());
}

#[test]
fn missing_cert_file_names_the_path() {
    let dir = TempDir::new();
    let g = gen(&dir, "a", &["a.test"]);
    let mut s = settings(Some(&g), &[]);
    let missing = dir.0.join("nope.crt");
    s.default_cert = Some(CertPair {
        cert: missing.clone(),
        key: g.pair.key.clone(),
    });
    let e = err_of(build_server_config(&s));
    assert!(
        matches!(&e, TlsError::Read { path, .. } if path == &missing),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.starts_with("cannot read certificate file "), "{msg}");
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
}

#[test]
fn missing_key_file_names_the_path() {
    let dir = TempDir::new();
    let g = gen(&dir, "a", &["a.test"]);
    let missing = dir.0.join("nope.key");
    let s = only(g.pair.cert.clone(), missing.clone());
    let e = err_of(build_server_config(&s));
    assert!(
        matches!(&e, TlsError::ReadKey { path, .. } if path == &missing),
        "{e:?}"
    );
    assert!(e.to_string().contains(&missing.display().to_string()));
}

#[test]
fn garbage_cert_file_has_no_certificates() {
    let dir = TempDir::new();
    let g = gen(&dir, "a", &["a.test"]);
    let junk = dir.write("junk.crt", b"this is not a certificate\n");
    let s = only(junk.clone(), g.pair.key.clone());
    let e = err_of(build_server_config(&s));
    assert!(
        matches!(&e, TlsError::NoCertificates { path } if path == &junk),
        "{e:?}"
    );
    assert!(e.to_string().contains(&junk.display().to_string()));
}

#[test]
fn malformed_pem_block_is_bad_pem() {
    let dir = TempDir::new();
    let g = gen(&dir, "a", &["a.test"]);
    let bad = dir.write(
        "bad.crt",
        b"-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
    );
    let s = only(bad.clone(), g.pair.key.clone());
    let e = err_of(build_server_config(&s));
    assert!(
        matches!(&e, TlsError::BadPem { path, .. } if path == &bad),
        "{e:?}"
    );
}

#[test]
fn certificate_block_that_is_not_x509_is_invalid_certificate() {
    let dir = TempDir::new();
    let g = gen(&dir, "a", &["a.test"]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(b"definitely not DER");
    let bad = dir.write(
        "notder.crt",
        format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n").as_bytes(),
    );
    let s = only(bad.clone(), g.pair.key.clone());
    let e = err_of(build_server_config(&s));
    assert!(
        matches!(&e, TlsError::InvalidCertificate { path, .. } if path == &bad),
        "{e:?}"
    );
}

#[test]
fn key_file_without_key_is_no_private_key() {
    let dir = TempDir::new();
    let g = gen(&dir, "a", &["a.test"]);
    // The certificate file given as the key file.
    let s = only(g.pair.cert.clone(), g.pair.cert.clone());
    let e = err_of(build_server_config(&s));
    assert!(
        matches!(&e, TlsError::NoPrivateKey { path } if path == &g.pair.cert),
        "{e:?}"
    );
}

#[test]
fn mismatched_key_is_key_mismatch() {
    let dir = TempDir::new();
    let a = gen(&dir, "a", &["a.test"]);
    let b = gen(&dir, "b", &["b.test"]);
    let pair = CertPair {
        cert: a.pair.cert.clone(),
        key: b.pair.key.clone(),
    };
    let s = TlsSettings {
        default_cert: Some(pair.clone()),
        sni: vec![],
    };
    let e = err_of(build_server_config(&s));
    assert!(
        matches!(&e, TlsError::KeyMismatch { cert, key } if cert == &pair.cert && key == &pair.key),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&pair.cert.display().to_string())
            && msg.contains(&pair.key.display().to_string())
    );
}

#[test]
fn mismatched_key_in_sni_entry_is_caught_at_startup() {
    let dir = TempDir::new();
    let a = gen(&dir, "a", &["a.test"]);
    let b = gen(&dir, "b", &["b.test"]);
    let s = TlsSettings {
        default_cert: Some(a.pair.clone()),
        sni: vec![(
            "b.test".into(),
            CertPair {
                cert: b.pair.cert.clone(),
                key: a.pair.key.clone(),
            },
        )],
    };
    assert!(matches!(
        err_of(build_server_config(&s)),
        TlsError::KeyMismatch { .. }
    ));
}

#[test]
fn corrupt_key_is_invalid_key() {
    let dir = TempDir::new();
    let g = gen(&dir, "a", &["a.test"]);
    let b64 = base64::engine::general_purpose::STANDARD.encode([0x30u8, 0x03, 0x02, 0x01, 0x00]);
    let key = dir.write(
        "bad.key",
        format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n").as_bytes(),
    );
    let s = only(g.pair.cert.clone(), key.clone());
    let e = err_of(build_server_config(&s));
    assert!(
        matches!(&e, TlsError::InvalidKey { path, .. } if path == &key),
        "{e:?}"
    );
}

#[test]
fn no_certificate_at_all_is_an_error() {
    let e = err_of(build_server_config(&TlsSettings::default()));
    assert!(matches!(e, TlsError::NoCertificateConfigured));
}

#[test]
fn sec1_ec_private_key_loads() {
    let dir = TempDir::new();
    let g = gen(&dir, "a", &["a.test"]);
    let sec1 = pkcs8_p256_to_sec1(&g.key_der);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&sec1);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    let pem = format!(
        "-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----\n",
        lines.join("\n")
    );
    let key = dir.write("a.sec1.key", pem.as_bytes());
    let parsed = load::load_key(&key).expect("parses");
    assert!(matches!(parsed, rustls::pki_types::PrivateKeyDer::Sec1(_)));
    let s = TlsSettings {
        default_cert: Some(CertPair {
            cert: g.pair.cert.clone(),
            key,
        }),
        sni: vec![],
    };
    let cfg = build_server_config(&s).expect("SEC1 key loads and matches");
    let (client, _) = handshake(cfg, insecure_client(), "a.test").expect("handshake");
    assert_eq!(leaf(&client), g.der);
}

// ---- --tls-sni parsing -----------------------------------------------------

#[test]
fn parse_sni_arg_good() {
    let (host, pair) = parse_sni_arg("API.Example.com=/etc/a.crt,/etc/a.key").expect("parses");
    assert_eq!(host, "api.example.com");
    assert_eq!(pair.cert, PathBuf::from("/etc/a.crt"));
    assert_eq!(pair.key, PathBuf::from("/etc/a.key"));
    let (host, _) = parse_sni_arg("x.test.=c,k").expect("trailing dot");
    assert_eq!(host, "x.test");
}

#[test]
fn parse_sni_arg_bad() {
    for s in ["", "host", "host=cert", "=c,k", "h=,k", "h=c,", "h=c"] {
        assert!(
            matches!(parse_sni_arg(s), Err(TlsError::BadSniArg { .. })),
            "{s:?} should be BadSniArg"
        );
    }
    for s in [
        "*.example.com=c,k",
        "127.0.0.1=c,k",
        "bad host=c,k",
        "a..b=c,k",
        ".=c,k",
    ] {
        assert!(
            matches!(parse_sni_arg(s), Err(TlsError::BadSniHost(_))),
            "{s:?} should be BadSniHost"
        );
    }
}

#[test]
fn duplicate_sni_host_is_refused() {
    let dir = TempDir::new();
    let a = gen(&dir, "a", &["a.test"]);
    let s = settings(None, &[("a.test", &a), ("A.TEST", &a)]);
    assert!(
        matches!(err_of(build_server_config(&s)), TlsError::DuplicateSniHost(h) if h == "a.test")
    );
}

#[path = "tests_handshake.rs"]
mod handshakes;
