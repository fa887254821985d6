//! Unit tests of the file reader: keys to flags, values through the flags'
//! parsers, and every refusal with its line.

use std::path::Path;

use super::*;
use crate::cmd::config_keys::{cli_command, serve_command, serve_keys};

fn parse_text(text: &str) -> Result<ConfigFile, ConfigFileError> {
    let cli = cli_command();
    let serve = serve_command(&cli).expect("serve");
    parse(Path::new("wslb.toml"), text, serve, &serve_keys(serve))
}

fn key_errors(text: &str) -> Vec<String> {
    match parse_text(text) {
        Err(ConfigFileError::Keys(errors)) => errors.iter().map(ToString::to_string).collect(),
        other => panic!("expected key errors, got {other:?}"),
    }
}

fn tokens(text: &str) -> Vec<String> {
    let file = parse_text(text).expect("valid file");
    file.entries
        .iter()
        .flat_map(FileEntry::tokens)
        .map(|t| t.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn scalars_arrays_and_switches_become_flags() {
    let text = r#"
listen = ["127.0.0.1:8080", "127.0.0.1:8081"]
max-connections = 9000
backend-timeout = 1.5
drain-timeout = "3s"
max-header-bytes = 0x4000
no-pin = true
ws-validate-utf8 = false
backend = "http://127.0.0.1:9001,weight=2"
allowed-origins = "https://a.example,http://localhost:*"
"#;
    assert_eq!(
        tokens(text),
        [
            "--listen=127.0.0.1:8080",
            "--listen=127.0.0.1:8081",
            "--max-connections=9000",
            "--backend-timeout=1.5",
            "--drain-timeout=3s",
            "--max-header-bytes=16384",
            "--no-pin",
            "--backend=http://127.0.0.1:9001,weight=2",
            "--allowed-origins=https://a.example,http://localhost:*",
        ]
    );
    assert_eq!(tokens("pin = false"), ["--no-pin"]);
    assert!(tokens("pin = true").is_empty());
    assert!(tokens("backend = []").is_empty());
}

#[test]
fn values_keep_their_lines() {
    let file =
        parse_text("\n\nbackend = [\n  \"http://127.0.0.1:1\",\n  \"http://127.0.0.1:2\",\n]\n")
            .expect("valid");
    let entry = &file.entries[0];
    assert_eq!(entry.line, 3);
    let lines: Vec<usize> = entry.values().iter().map(|v| v.line).collect();
    assert_eq!(lines, [4, 5]);
}

#[test]
fn unknown_keys_are_refused_with_a_suggestion() {
    assert_eq!(
        key_errors("listen = \"127.0.0.1:1\"\n\nmax-conections = 9000\n"),
        ["wslb.toml:3: max-conections: unknown key (did you mean max-connections?)"]
    );
    let e = key_errors("frobnicate = 1");
    assert!(
        e[0].starts_with("wslb.toml:1: frobnicate: unknown key"),
        "{e:?}"
    );
    let e = key_errors("config = \"other.toml\"");
    assert!(e[0].contains("cannot name another"), "{e:?}");
    assert_eq!(tokens("log-level = \"debug\""), ["--log-level=debug"]);
}

#[test]
fn tables_are_refused_with_the_flat_key() {
    let e = key_errors("[tls]\ncert = \"c.pem\"\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("wslb.toml:1: tls: keys are flat"), "{e:?}");
    assert!(e[0].contains("tls-cert"), "{e:?}");
    let e = key_errors("[server]\nport = 1\n");
    assert!(e[0].contains("there are no tables"), "{e:?}");
}

#[test]
fn bad_values_are_refused_by_the_flags_own_parser() {
    let e = key_errors("max-connections = 10\nlisten = \"x\"\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("wslb.toml:2: listen: invalid value \"x\""),
        "{e:?}"
    );
    let e = key_errors("drain-timeout = \"5 parsecs\"");
    assert!(e[0].contains("invalid duration"), "{e:?}");
    let e = key_errors("max-header-bytes = \"lots\"");
    assert!(e[0].contains("invalid size"), "{e:?}");
    let e = key_errors("max-connections = -1");
    assert!(
        e[0].starts_with("wslb.toml:1: max-connections: invalid value \"-1\""),
        "{e:?}"
    );
    let e = key_errors("backend = [\"http://127.0.0.1:1\",\n \"ftp://h:1\"]");
    assert!(
        e[0].starts_with("wslb.toml:2: backend: invalid value"),
        "{e:?}"
    );
    let e = key_errors("trusted-proxies = \"10.0.0.0/8,nonsense\"");
    assert!(e[0].contains("trusted-proxies: invalid value"), "{e:?}");
    let e = key_errors("ws-mode = \"sideways\"");
    assert!(e[0].contains("sideways"), "{e:?}");
}

#[test]
fn shapes_are_checked() {
    let e = key_errors("max-connections = [1, 2]");
    assert!(e[0].contains("not an array"), "{e:?}");
    let e = key_errors("no-pin = \"yes\"");
    assert!(e[0].contains("expected true or false"), "{e:?}");
    let e = key_errors("listen = 1979-05-27T07:32:00Z");
    assert!(e[0].contains("date-time"), "{e:?}");
    let e = key_errors("pin = false\nno-pin = true\n");
    assert!(
        e[0].starts_with("wslb.toml:2: no-pin: sets --no-pin again"),
        "{e:?}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let e = key_errors("a-typo = 1\nlisten = \"x\"\nworkers = \"many\"\n");
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].starts_with("wslb.toml:1:"));
    assert!(e[1].starts_with("wslb.toml:2:"));
    assert!(e[2].starts_with("wslb.toml:3:"));
}

#[test]
fn syntax_errors_name_the_line() {
    match parse_text("listen = \"127.0.0.1:1\"\nmax-connections = = 3\n") {
        Err(ConfigFileError::Syntax { line, .. }) => assert_eq!(line, 2),
        other => panic!("{other:?}"),
    }
    match parse_text("workers = 1\nworkers = 2\n") {
        Err(e @ ConfigFileError::Syntax { .. }) => assert_eq!(e.exit_code(), 2),
        other => panic!("{other:?}"),
    }
}
