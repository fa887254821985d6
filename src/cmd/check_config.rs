//! `wslb check-config FILE`: checks a configuration file the way `wslb
//! serve --config FILE` would start from it (keys, values, certificates
//! loaded, static backends parsed), binding nothing and starting nothing.
//! Prints `FILE: ok` and a summary on stdout and exits 0, or prints every
//! problem on stderr and exits 1 (2: the file cannot be read or is not TOML).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use wslb::{ServeConfig, StickyMode};

use crate::cmd::config_load::{load_serve_config, Loaded};

/// Runs the check; the exit code says how it went.
pub fn run(file: &Path) -> ExitCode {
    let argv: Vec<OsString> = vec![
        "wslb".into(),
        "serve".into(),
        "--config".into(),
        file.as_os_str().to_owned(),
    ];
    match load_serve_config(&argv) {
        Ok(loaded) => {
            print!("{}", summary(file, &loaded));
            ExitCode::SUCCESS
        }
        Err(e) => {
            for line in e.to_string().lines() {
                eprintln!("{line}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// `FILE: ok` and what the configuration would start.
fn summary(file: &Path, loaded: &Loaded) -> String {
    let cfg = &loaded.config;
    let mut out = format!("{}: ok\n", file.display());
    let _ = writeln!(out, "  listeners: {}", listeners(cfg));
    let backends: Vec<String> = cfg
        .backends
        .iter()
        .zip(&loaded.preflight.backend_addrs)
        .map(|((url, weight), addr)| format!("{url} ({addr}, weight {weight})"))
        .collect();
    let _ = writeln!(
        out,
        "  backends: {} static{}{}; algorithm {}, sticky {}",
        backends.len(),
        if backends.is_empty() { "" } else { ": " },
        backends.join(", "),
        cfg.algorithm,
        sticky(&cfg.sticky),
    );
    let registration = match (&cfg.register_token, cfg.control_listen) {
        (None, _) => "off (no register-token)".to_string(),
        (Some(_), Some(addr)) => format!("on, control listener {addr}"),
        (Some(_), None) => "on, on the client listeners".to_string(),
    };
    let _ = writeln!(out, "  registration: {registration}");
    let _ = writeln!(out, "  tls: {}", tls(cfg));
    let _ = writeln!(
        out,
        "  workers: {}, max connections {}, ws mode {}",
        cfg.workers,
        cfg.max_connections,
        match cfg.ws_mode {
            wslb::WsMode::Inspect => "inspect",
            wslb::WsMode::Tunnel => "tunnel",
        }
    );
    out
}

fn sticky(mode: &StickyMode) -> String {
    match mode {
        StickyMode::None => "none".into(),
        StickyMode::ClientIp => "ip".into(),
        StickyMode::Cookie(name) => format!("cookie:{name}"),
        StickyMode::Header(name) => format!("header:{name}"),
    }
}

fn listeners(cfg: &ServeConfig) -> String {
    let mut all: Vec<String> = Vec::new();
    all.extend(cfg.listen.iter().map(|a| format!("http {a}")));
    all.extend(cfg.tls_listen.iter().map(|a| format!("tls {a}")));
    all.extend(cfg.control_listen.iter().map(|a| format!("control {a}")));
    match cfg.admin_listen {
        Some(a) if cfg.admin_token.is_some() => all.push(format!("admin {a} (token)")),
        Some(a) => all.push(format!("admin {a}")),
        None => all.push("admin off".into()),
    }
    all.join(", ")
}

fn tls(cfg: &ServeConfig) -> String {
    let Some(settings) = cfg.tls.as_ref().filter(|_| !cfg.tls_listen.is_empty()) else {
        return "off".into();
    };
    let mut parts = Vec::new();
    if let Some(pair) = &settings.default_cert {
        parts.push(format!("default certificate {}", pair.cert.display()));
    }
    if !settings.sni.is_empty() {
        let hosts: Vec<&str> = settings.sni.iter().map(|(h, _)| h.as_str()).collect();
        parts.push(format!("SNI {}", hosts.join(", ")));
    }
    format!("{} (loaded, keys match)", parts.join("; "))
}
