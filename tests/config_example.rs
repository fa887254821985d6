//! The example configuration shown in README.md and shipped as
//! docs/wslb.example.toml is a file `wslb check-config` accepts (with its
//! certificate paths pointed at generated certificates), the two are the
//! same text, and it names every key `wslb serve` has.

mod common;
mod config;

use std::path::Path;

use config::{check, run, TempDir};

fn manifest_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The ```toml block between the README's config-example markers.
fn readme_example() -> String {
    let readme = manifest_file("README.md");
    let start = readme
        .find("<!-- config-example:begin -->")
        .expect("begin marker in README.md");
    let end = readme
        .find("<!-- config-example:end -->")
        .expect("end marker in README.md");
    let block = &readme[start..end];
    let open = block.find("```toml\n").expect("```toml block") + "```toml\n".len();
    let close = block[open..].rfind("```").expect("closing ```") + open;
    block[open..close].to_string()
}

/// Writes `example` into a temp dir with its /etc/wslb/ files replaced by
/// generated certificates there, and runs check-config on it.
fn check_example(example: &str) {
    assert!(example.contains("/etc/wslb/"), "the example names no files");
    let dir = TempDir::new();
    let default = common::certs::generate(&["localhost"]);
    let api = common::certs::generate(&["api.example.com"]);
    for (from, to) in [
        (&default.cert, "cert.pem"),
        (&default.key, "key.pem"),
        (&api.cert, "api.pem"),
        (&api.key, "api.key"),
    ] {
        std::fs::copy(from, dir.path.join(to)).expect("copy certificate");
    }
    default.cleanup();
    api.cleanup();
    let local = format!("{}/", dir.path.display());
    let path = dir.write("wslb.toml", &example.replace("/etc/wslb/", &local));
    let out = check(&path);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.starts_with(&format!("{}: ok", path.display())),
        "{out:?}"
    );
    assert!(out.stdout.contains("SNI api.example.com"), "{out:?}");
    // Without the certificates the same file is refused, at the key.
    for name in ["cert.pem", "key.pem", "api.pem", "api.key"] {
        std::fs::remove_file(dir.path.join(name)).expect("remove");
    }
    let out = check(&path);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains(": tls-cert: cannot read certificate file"),
        "{out:?}"
    );
}

#[test]
fn the_readme_example_passes_check_config() {
    check_example(&readme_example());
}

#[test]
fn the_shipped_example_passes_check_config_and_is_the_readmes() {
    let shipped = manifest_file("docs/wslb.example.toml");
    check_example(&shipped);
    assert_eq!(
        readme_example(),
        shipped,
        "README.md's example and docs/wslb.example.toml differ"
    );
}

#[test]
fn the_example_names_every_serve_key() {
    let shipped = manifest_file("docs/wslb.example.toml");
    let help = run(&["serve", "--help"]);
    assert_eq!(help.code, Some(0), "{help:?}");
    let keys: Vec<String> = help
        .stdout
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| l.split([' ', ',']).find(|t| t.starts_with("--")))
        .map(|flag| flag.trim_start_matches("--").to_string())
        .filter(|k| !["help", "config"].contains(&k.as_str()))
        .collect();
    assert!(keys.len() > 40, "{keys:?}");
    let named = |key: &str| {
        shipped.lines().any(|line| {
            let line = line.trim_start_matches(['#', ' ']);
            line.starts_with(&format!("{key} =")) || line.starts_with(&format!("{key}="))
        })
    };
    for key in keys {
        // `no-pin = true` is shown as its positive form, `pin = ...`.
        let shown = key.strip_prefix("no-").filter(|k| named(k)).is_some() || named(&key);
        assert!(shown, "docs/wslb.example.toml does not show the key {key}");
    }
}
