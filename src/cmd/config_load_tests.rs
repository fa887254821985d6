//! Unit tests of the mapping from command line and file to a validated
//! configuration: precedence, and refusals pinned to the file's lines.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use super::*;

/// A file in a fresh temporary directory, removed on drop.
struct TempFile {
    dir: PathBuf,
    path: PathBuf,
}

impl TempFile {
    fn new(text: &str) -> TempFile {
        use std::sync::atomic::{AtomicU32, Ordering};
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wslb-config-unit-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("wslb.toml");
        std::fs::write(&path, text).expect("write");
        TempFile { dir, path }
    }

    fn argv(&self, extra: &[&str]) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec!["wslb".into(), "serve".into(), "--config".into()];
        v.push(self.path.clone().into_os_string());
        v.extend(extra.iter().map(OsString::from));
        v
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn errors(e: ConfigFileError) -> Vec<String> {
    e.to_string().lines().map(str::to_string).collect()
}

#[test]
fn file_values_reach_the_config() {
    let f = TempFile::new(
        r#"
listen = ["127.0.0.1:18080"]
backend = ["http://127.0.0.1:9001,weight=3", "http://127.0.0.1:9002"]
algorithm = "fewest-connections"
max-connections = 1234
drain-timeout = "250ms"
ws-ping-interval = 0
pin = false
admin-listen = "off"
"#,
    );
    let cfg = load_serve_config(&f.argv(&[])).expect("valid").config;
    assert_eq!(cfg.listen, ["127.0.0.1:18080".parse().expect("addr")]);
    assert_eq!(
        cfg.backends,
        [
            ("http://127.0.0.1:9001".to_string(), 3),
            ("http://127.0.0.1:9002".to_string(), 1)
        ]
    );
    assert_eq!(cfg.algorithm, wslb::Algorithm::FewestConnections);
    assert_eq!(cfg.max_connections, 1234);
    assert_eq!(cfg.drain_timeout, Duration::from_millis(250));
    assert_eq!(cfg.ws_ping_interval, None);
    assert!(!cfg.pin);
    assert_eq!(cfg.admin_listen, None);
    // Untouched keys keep the flags' defaults.
    assert_eq!(cfg.idle_timeout, Duration::from_secs(60));
}

#[test]
fn flags_override_the_file_key_by_key() {
    let f = TempFile::new(
        "listen = [\"127.0.0.1:18080\", \"127.0.0.1:18081\"]\nmax-connections = 1234\nmax-retries = 5\nbackend = [\"http://127.0.0.1:9001\"]\n",
    );
    let cfg =
        load_serve_config(&f.argv(&["--max-connections", "77", "--listen", "127.0.0.1:19000"]))
            .expect("valid")
            .config;
    assert_eq!(cfg.max_connections, 77);
    assert_eq!(cfg.max_retries, 5);
    // A repeatable flag's list replaces the file's list.
    assert_eq!(cfg.listen, ["127.0.0.1:19000".parse().expect("addr")]);
    assert_eq!(cfg.backends.len(), 1);
}

#[test]
fn the_file_is_read_again_on_every_load() {
    let f = TempFile::new("listen = \"127.0.0.1:18080\"\nmax-retries = 1\n");
    let argv = f.argv(&[]);
    assert_eq!(
        load_serve_config(&argv).expect("valid").config.max_retries,
        1
    );
    std::fs::write(&f.path, "listen = \"127.0.0.1:18080\"\nmax-retries = 4\n").expect("rewrite");
    assert_eq!(
        load_serve_config(&argv).expect("valid").config.max_retries,
        4
    );
    std::fs::write(
        &f.path,
        "listen = \"127.0.0.1:18080\"\nmax-retries = \"x\"\n",
    )
    .expect("rewrite");
    assert!(load_serve_config(&argv).is_err());
}

#[test]
fn conversion_errors_name_the_key_and_line() {
    let f = TempFile::new("listen = \"127.0.0.1:18080\"\n\nadmin-listen = \"nowhere\"\n");
    let e = errors(load_serve_config(&f.argv(&[])).expect_err("bad admin-listen"));
    let want = format!("{}:3: admin-listen: ", f.path.display());
    assert!(e[0].starts_with(&want), "{e:?}");
    // The same value given as a flag is not pinned to the file.
    let f = TempFile::new("listen = \"127.0.0.1:18080\"\n");
    let e = load_serve_config(&f.argv(&["--admin-listen", "nowhere"])).expect_err("bad");
    assert!(matches!(e, ConfigFileError::Flags(_)), "{e:?}");
    // Nor is a certificate given as a flag.
    let f = TempFile::new("tls-listen = \"127.0.0.1:18443\"\ntls-key = \"/nonexistent/k.pem\"\n");
    let e = load_serve_config(&f.argv(&["--tls-cert", "/nonexistent/wslb-flag-cert.pem"]))
        .expect_err("missing");
    assert!(matches!(e, ConfigFileError::Flags(_)), "{e:?}");
    assert!(e.to_string().contains("wslb-flag-cert.pem"), "{e}");
}

#[test]
fn a_backend_that_does_not_parse_names_its_line() {
    let f = TempFile::new(
        "listen = \"127.0.0.1:18080\"\nbackend = [\n  \"http://127.0.0.1:9001\",\n  \"http://not a host:80\",\n]\n",
    );
    let e = errors(load_serve_config(&f.argv(&[])).expect_err("bad backend"));
    let want = format!(
        "{}:4: backend: backend \"http://not a host:80\"",
        f.path.display()
    );
    assert!(e[0].starts_with(&want), "{e:?}");
}

#[test]
fn a_missing_certificate_names_its_key_and_line() {
    let f = TempFile::new(
        "tls-listen = \"127.0.0.1:18443\"\ntls-cert = \"/nonexistent/wslb/cert.pem\"\ntls-key = \"/nonexistent/wslb/key.pem\"\n",
    );
    let e = errors(load_serve_config(&f.argv(&[])).expect_err("missing cert"));
    let want = format!(
        "{}:2: tls-cert: cannot read certificate file",
        f.path.display()
    );
    assert!(e[0].starts_with(&want), "{e:?}");
    let f = TempFile::new(
        "tls-listen = \"127.0.0.1:18443\"\ntls-sni = [\"a.example=/nonexistent/a.pem,/nonexistent/a.key\"]\n",
    );
    let e = errors(load_serve_config(&f.argv(&[])).expect_err("missing sni cert"));
    let want = format!("{}:2: tls-sni: ", f.path.display());
    assert!(e[0].starts_with(&want), "{e:?}");
}

#[test]
fn problems_no_key_carries_name_the_file() {
    let f = TempFile::new("max-retries = 1\n");
    let e = load_serve_config(&f.argv(&[])).expect_err("nothing to listen on");
    assert!(matches!(e, ConfigFileError::File { .. }), "{e:?}");
    assert!(e.to_string().contains("nothing to listen on"), "{e}");
    assert_eq!(e.exit_code(), 1);
}

#[test]
fn unreadable_files_and_plain_flags() {
    let argv: Vec<OsString> = ["wslb", "serve", "--config", "/nonexistent/wslb.toml"]
        .iter()
        .map(OsString::from)
        .collect();
    let e = load_serve_config(&argv).expect_err("no file");
    assert_eq!(e.exit_code(), 2);
    let argv: Vec<OsString> = ["wslb", "serve", "--listen", "127.0.0.1:1"]
        .iter()
        .map(OsString::from)
        .collect();
    let loaded = load_serve_config(&argv).expect("flags alone");
    assert_eq!(loaded.config.listen.len(), 1);
}

#[test]
fn logging_keys_and_flags() {
    let f = TempFile::new(
        "listen = \"127.0.0.1:18080\"\nlog-level = \"debug\"\nlog-format = \"json\"\n",
    );
    let loaded = load_serve_config(&f.argv(&[])).expect("valid");
    assert_eq!(
        (loaded.log_level.as_str(), loaded.log_format.as_str()),
        ("debug", "json")
    );
    // A global flag before `serve` overrides the key too.
    let mut argv: Vec<OsString> = vec!["wslb".into(), "--log-level".into(), "warn".into()];
    argv.extend(f.argv(&[]).into_iter().skip(1));
    let loaded = load_serve_config(&argv).expect("valid");
    assert_eq!(
        (loaded.log_level.as_str(), loaded.log_format.as_str()),
        ("warn", "json")
    );
    let loaded = load_serve_config(&f.argv(&["--log-format", "text"])).expect("valid");
    assert_eq!(loaded.log_format, "text");
    let f = TempFile::new("listen = \"127.0.0.1:18080\"\nlog-format = \"xml\"\n");
    let e = errors(load_serve_config(&f.argv(&[])).expect_err("bad format"));
    assert!(
        e[0].contains(":2: log-format: invalid value \"xml\""),
        "{e:?}"
    );
}
