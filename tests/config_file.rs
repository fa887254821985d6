//! `wslb serve --config FILE` and `wslb check-config FILE` on the real
//! binary: a file alone starts a working balancer, flags override keys (a
//! repeatable flag's list replaces the file's), and every refusal names the
//! file, the line and the key, with the documented exit codes.

mod common;
mod config;

use common::client::get;
use common::proc::{echo, Proc};
use config::{check, run, TempDir};

/// A file for a balancer on a free port in front of `backends`, admin
/// API off, plus `extra` lines.
fn serve_file(dir: &TempDir, backends: &[&Proc], extra: &str) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("  \"http://{}\",\n", b.http()))
        .collect();
    let text = format!(
        "# test balancer\nlisten = [\"127.0.0.1:0\"]\nbackend = [\n{}]\nworkers = 1\npin = false\nadmin-listen = \"off\"\n{extra}",
        list.concat()
    );
    let path = dir.write("wslb.toml", &text);
    path.to_str().expect("utf-8").to_string()
}

/// The names answering four requests.
fn four_answers(lb: &Proc) -> Vec<String> {
    (0..4)
        .map(|_| {
            let r = get(lb.http(), "/");
            assert_eq!(r.status, 200);
            r.text().trim().to_string()
        })
        .collect()
}

#[test]
fn a_config_file_alone_starts_a_working_balancer() {
    let a = echo("alpha");
    let b = echo("beta");
    let dir = TempDir::new();
    let file = serve_file(&dir, &[&a, &b], "algorithm = \"round-robin\"\n");
    let lb = Proc::start(&["serve", "--config", &file]);
    assert_eq!(lb.addrs.len(), 1, "{:?}", lb.addrs);
    let seen = four_answers(&lb);
    // Round-robin over the file's two backends: both answer, twice each.
    assert_eq!(seen.iter().filter(|s| *s == "alpha").count(), 2, "{seen:?}");
    assert_eq!(seen.iter().filter(|s| *s == "beta").count(), 2, "{seen:?}");
}

#[test]
fn a_flag_overrides_its_key() {
    let a = echo("alpha");
    let dir = TempDir::new();
    // The file turns the admin API off; the flag turns it on.
    let file = serve_file(&dir, &[&a], "");
    let lb = Proc::start(&["serve", "--config", &file, "--admin-listen", "127.0.0.1:0"]);
    let admin = lb.addr("admin");
    assert_eq!(get(admin, "/api/backends").status, 200);
    // The file's other keys still apply: its backend answers.
    assert_eq!(four_answers(&lb), ["alpha"; 4]);
}

#[test]
fn a_repeatable_flag_replaces_the_files_list() {
    let a = echo("alpha");
    let b = echo("beta");
    let dir = TempDir::new();
    let file = serve_file(&dir, &[&a], "");
    let beta = format!("http://{}", b.http());
    let lb = Proc::start(&["serve", "--config", &file, "--backend", &beta]);
    assert_eq!(four_answers(&lb), ["beta"; 4]);
}

#[test]
fn an_unknown_key_is_refused_with_file_line_and_key() {
    let dir = TempDir::new();
    let path = dir.write(
        "wslb.toml",
        "listen = [\"127.0.0.1:0\"]\n\nmax-conections = 9000\n",
    );
    let want = format!(
        "{}:3: max-conections: unknown key (did you mean max-connections?)",
        path.display()
    );
    let served = run(&["serve", "--config", path.to_str().expect("utf-8")]);
    assert_eq!(served.code, Some(1), "{served:?}");
    assert!(served.stderr.contains(&want), "{served:?}");
    assert!(!served.stdout.contains("ready"), "{served:?}");
    let checked = check(&path);
    assert_eq!(checked.code, Some(1), "{checked:?}");
    assert!(checked.stderr.contains(&want), "{checked:?}");
}

#[test]
fn a_bad_value_is_refused_with_its_line() {
    let dir = TempDir::new();
    let path = dir.write(
        "wslb.toml",
        "listen = [\n  \"127.0.0.1:0\",\n  \"not-an-address\",\n]\ndrain-timeout = \"soon\"\n",
    );
    let out = check(&path);
    assert_eq!(out.code, Some(1), "{out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    let file = path.display().to_string();
    assert!(
        lines[0].starts_with(&format!(
            "{file}:3: listen: invalid value \"not-an-address\""
        )),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with(&format!("{file}:5: drain-timeout: invalid value \"soon\"")),
        "{lines:?}"
    );
}

#[test]
fn a_missing_certificate_is_refused_with_its_key_and_line() {
    let dir = TempDir::new();
    let cert = common::certs::generate(&["localhost"]);
    let missing = dir.path.join("missing-key.pem");
    let path = dir.write(
        "wslb.toml",
        &format!(
            "tls-listen = \"127.0.0.1:0\"\ntls-cert = \"{}\"\n\ntls-key = \"{}\"\n",
            cert.cert.display(),
            missing.display()
        ),
    );
    let out = check(&path);
    assert_eq!(out.code, Some(1), "{out:?}");
    let want = format!(
        "{}:4: tls-key: cannot read private key file",
        path.display()
    );
    assert!(out.stderr.starts_with(&want), "{out:?}");
    // `wslb serve` refuses it the same way, before binding anything.
    let served = run(&["serve", "--config", path.to_str().expect("utf-8")]);
    cert.cleanup();
    assert_eq!(served.code, Some(1), "{served:?}");
    assert!(served.stderr.contains(&want), "{served:?}");
}

#[test]
fn a_backend_url_that_does_not_parse_is_refused_with_its_line() {
    let dir = TempDir::new();
    let path = dir.write(
        "wslb.toml",
        "listen = \"127.0.0.1:0\"\nbackend = [\n  \"http://127.0.0.1:9001\",\n  \"http://backend.internal:9000\",\n]\n",
    );
    let out = check(&path);
    assert_eq!(out.code, Some(1), "{out:?}");
    let want = format!(
        "{}:4: backend: backend \"http://backend.internal:9000\"",
        path.display()
    );
    assert!(out.stderr.starts_with(&want), "{out:?}");
}

#[test]
fn check_config_accepts_a_good_file_without_binding_anything() {
    // Its listener's port is held here: check-config must not bind it.
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = held.local_addr().expect("addr").port();
    let dir = TempDir::new();
    let cert = common::certs::generate(&["localhost"]);
    let path = dir.write(
        "wslb.toml",
        &format!(
            "listen = \"127.0.0.1:{port}\"\ntls-listen = \"127.0.0.1:{port}\"\ntls-cert = \"{}\"\ntls-key = \"{}\"\nbackend = [\"http://127.0.0.1:9001,weight=3\"]\nadmin-listen = \"127.0.0.1:{port}\"\n",
            cert.cert.display(),
            cert.key.display()
        ),
    );
    let out = check(&path);
    cert.cleanup();
    assert_eq!(out.code, Some(0), "{out:?}");
    let mut lines = out.stdout.lines();
    assert_eq!(
        lines.next(),
        Some(format!("{}: ok", path.display()).as_str())
    );
    assert!(
        out.stdout.contains(&format!("http 127.0.0.1:{port}")),
        "{out:?}"
    );
    assert!(
        out.stdout.contains(&format!("tls 127.0.0.1:{port}")),
        "{out:?}"
    );
    assert!(out.stdout.contains("1 static"), "{out:?}");
    assert!(out.stdout.contains("weight 3"), "{out:?}");
    assert!(out.stdout.contains("default certificate"), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    drop(held);
}

#[test]
fn check_config_refusals_and_exit_codes() {
    let dir = TempDir::new();
    // Not readable: 2.
    let absent = dir.path.join("absent.toml");
    let out = check(&absent);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("cannot read"), "{out:?}");
    let served = run(&["serve", "--config", absent.to_str().expect("utf-8")]);
    assert_eq!(served.code, Some(2), "{served:?}");
    // Not TOML: 2, with the line.
    let path = dir.write("syntax.toml", "listen = \"127.0.0.1:0\"\nworkers = = 2\n");
    let out = check(&path);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr
            .starts_with(&format!("{}:2: not valid TOML", path.display())),
        "{out:?}"
    );
    // Valid TOML, refused configuration: 1, every problem listed.
    let path = dir.write(
        "keys.toml",
        "listen = \"127.0.0.1:0\"\nworker = 2\n[tls]\ncert = \"c.pem\"\n",
    );
    let out = check(&path);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 2, "{out:?}");
    assert!(out
        .stderr
        .contains(":2: worker: unknown key (did you mean workers?)"));
    assert!(out.stderr.contains(":3: tls: keys are flat"), "{out:?}");
    // A problem no key carries names the file: 1.
    let path = dir.write("empty.toml", "# nothing\n");
    let out = check(&path);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .starts_with(&format!("{}: nothing to listen on", path.display())),
        "{out:?}"
    );
}

#[test]
fn tls_from_the_file_serves_https() {
    use std::io::{Read, Write};
    let a = echo("alpha");
    let dir = TempDir::new();
    let cert = common::certs::generate(&["localhost"]);
    let file = serve_file(
        &dir,
        &[&a],
        &format!(
            "listen = []\ntls-listen = \"127.0.0.1:0\"\ntls-cert = \"{}\"\ntls-key = \"{}\"\n",
            cert.cert.display(),
            cert.key.display()
        ),
    );
    // `listen = []` above is a second `listen`: TOML refuses it.
    let refused = run(&["serve", "--config", &file]);
    assert_eq!(refused.code, Some(2), "{refused:?}");
    let text = std::fs::read_to_string(&file).expect("read");
    std::fs::write(&file, text.replace("listen = [\"127.0.0.1:0\"]\n", "")).expect("write");
    let lb = Proc::start(&["serve", "--config", &file]);
    let config = common::certs::client_config(&cert.cert_pem);
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(config, name).expect("client");
    let tcp = std::net::TcpStream::connect(lb.addr("https")).expect("connect");
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tls.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("TLS read: {e}"),
        }
    }
    cert.cleanup();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("alpha"), "{answer}");
}
