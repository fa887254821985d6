//! What a reload changes: every setting of two configurations compared by
//! name (read from their `{:#?}` form, so a setting added to
//! `ServeConfig` is compared without a line here), and the settings only a
//! restart can change put back to their running values.

use crate::config::ServeConfig;

/// Settings a running balancer cannot change: its listeners and threads
/// (bound and started once), the admin listener, the relay mode (its
/// sweeper starts with the workers), the registry's size and expiry clock,
/// and its identity. A reload keeps their running values.
pub(crate) const RESTART_ONLY: &[&str] = &[
    "listen",
    "tls_listen",
    "workers",
    "pin",
    "control_listen",
    "admin_listen",
    "admin_token",
    "admin_max_connections",
    "admin_request_timeout",
    "ws_mode",
    "max_backends",
    "heartbeat_timeout",
    "balancer_id",
    "upgrade_socket",
    "upgrade",
    "backend_ca",
    "access_log",
    "access_log_format",
];

/// Puts every [`RESTART_ONLY`] setting of `new` back to its value in
/// `old`; returns the names of those that differed (a restart would apply
/// them).
pub(crate) fn keep_restart_only(old: &ServeConfig, new: &mut ServeConfig) -> Vec<String> {
    let differed: Vec<String> = changed(old, new)
        .into_iter()
        .filter(|k| RESTART_ONLY.contains(&k.as_str()))
        .collect();
    new.listen.clone_from(&old.listen);
    new.tls_listen.clone_from(&old.tls_listen);
    new.workers = old.workers;
    new.pin = old.pin;
    new.control_listen = old.control_listen;
    new.admin_listen = old.admin_listen;
    new.admin_token.clone_from(&old.admin_token);
    new.admin_max_connections = old.admin_max_connections;
    new.admin_request_timeout = old.admin_request_timeout;
    new.ws_mode = old.ws_mode;
    new.max_backends = old.max_backends;
    new.heartbeat_timeout = old.heartbeat_timeout;
    new.balancer_id.clone_from(&old.balancer_id);
    new.upgrade_socket.clone_from(&old.upgrade_socket);
    new.upgrade = old.upgrade;
    new.backend_ca.clone_from(&old.backend_ca);
    new.access_log.clone_from(&old.access_log);
    new.access_log_format = old.access_log_format;
    differed
}

/// The names of the settings whose values differ, in declaration order.
pub(crate) fn changed(old: &ServeConfig, new: &ServeConfig) -> Vec<String> {
    let (old, new) = (settings(old), settings(new));
    let mut names: Vec<String> = Vec::new();
    for (name, value) in &new {
        match old.iter().find(|(n, _)| n == name) {
            Some((_, before)) if before == value => {}
            _ => names.push(name.clone()),
        }
    }
    names
}

/// A setting's name as its `wslb serve` flag spells it (`tls` stays: the
/// certificate paths of `--tls-cert`, `--tls-key` and `--tls-sni`).
pub(crate) fn flag_name(setting: &str) -> String {
    match setting {
        "backends" => "backend".into(),
        "pin" => "no-pin".into(),
        other => other.replace('_', "-"),
    }
}

/// Every top-level setting of `cfg` and its value, from the pretty
/// `Debug` form: a field starts each line indented by exactly four spaces;
/// deeper lines (nested values) belong to the field above them.
fn settings(cfg: &ServeConfig) -> Vec<(String, String)> {
    let text = format!("{cfg:#?}");
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines().skip(1) {
        let field = line
            .strip_prefix("    ")
            .filter(|rest| !rest.starts_with(' '))
            .and_then(|rest| rest.split_once(": "))
            .filter(|(name, _)| is_identifier(name));
        match (field, out.last_mut()) {
            (Some((name, value)), _) => out.push((name.to_string(), value.to_string())),
            (None, Some(last)) => {
                last.1.push('\n');
                last.1.push_str(line);
            }
            (None, None) => {}
        }
    }
    out
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{Algorithm, CertPair, TlsSettings};

    fn base() -> ServeConfig {
        ServeConfig {
            listen: vec!["127.0.0.1:8080".parse().expect("addr")],
            backends: vec![("http://127.0.0.1:9001".into(), 1)],
            balancer_id: "lb-test".into(),
            ..ServeConfig::default()
        }
    }

    #[test]
    fn every_setting_is_read_by_name() {
        let names: Vec<String> = settings(&base()).into_iter().map(|(n, _)| n).collect();
        for expected in ["listen", "tls", "backends", "algorithm", "backend_publish"] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
        for name in RESTART_ONLY {
            assert!(names.iter().any(|n| n == name), "{name} is not a setting");
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "one entry per setting");
    }

    #[test]
    fn nothing_changed_says_nothing() {
        assert!(changed(&base(), &base()).is_empty());
    }

    #[test]
    fn changes_are_named_including_nested_values() {
        let old = base();
        let mut new = base();
        new.algorithm = Algorithm::RoundRobin;
        new.max_connections = 5;
        new.backends.push(("http://127.0.0.1:9002".into(), 3));
        new.idle_timeout = Duration::from_millis(1500);
        new.tls = Some(TlsSettings {
            default_cert: Some(CertPair {
                cert: "/a.pem".into(),
                key: "/a.key".into(),
            }),
            sni: Vec::new(),
        });
        assert_eq!(
            changed(&old, &new),
            vec![
                "tls",
                "backends",
                "algorithm",
                "max_connections",
                "idle_timeout"
            ]
        );
        // A change deep inside a nested value counts for its field.
        let mut deeper = new.clone();
        if let Some(t) = deeper.tls.as_mut() {
            t.sni.push((
                "api.example.com".into(),
                CertPair {
                    cert: "/b.pem".into(),
                    key: "/b.key".into(),
                },
            ));
        }
        assert_eq!(changed(&new, &deeper), vec!["tls"]);
    }

    #[test]
    fn restart_only_settings_keep_their_running_values() {
        let old = base();
        let mut new = base();
        new.listen = vec!["127.0.0.1:9090".parse().expect("addr")];
        new.workers = old.workers + 3;
        new.pin = !old.pin;
        new.admin_token = Some("t".into());
        new.heartbeat_timeout = Duration::from_secs(99);
        new.balancer_id = "lb-other".into();
        new.max_retries = 7;
        let needs_restart = keep_restart_only(&old, &mut new);
        assert_eq!(
            needs_restart,
            vec![
                "listen",
                "workers",
                "pin",
                "admin_token",
                "heartbeat_timeout",
                "balancer_id"
            ]
        );
        assert_eq!(changed(&old, &new), vec!["max_retries"], "the rest applies");
    }

    #[test]
    fn every_restart_only_setting_is_put_back() {
        // A configuration differing in every restart-only setting comes
        // back equal to the running one in all of them.
        let old = base();
        let mut new = ServeConfig {
            listen: vec!["127.0.0.2:1".parse().expect("addr")],
            tls_listen: vec!["127.0.0.2:2".parse().expect("addr")],
            workers: old.workers + 1,
            pin: !old.pin,
            control_listen: Some("127.0.0.2:3".parse().expect("addr")),
            admin_listen: Some("127.0.0.2:4".parse().expect("addr")),
            admin_token: Some("x".into()),
            admin_max_connections: old.admin_max_connections + 1,
            admin_request_timeout: old.admin_request_timeout * 2,
            ws_mode: crate::config::WsMode::Tunnel,
            max_backends: old.max_backends + 1,
            heartbeat_timeout: old.heartbeat_timeout * 2,
            balancer_id: "lb-x".into(),
            upgrade_socket: Some("/run/x.sock".into()),
            upgrade: !old.upgrade,
            backend_ca: Some("/etc/x.pem".into()),
            access_log: crate::config::AccessLogTarget::Off,
            access_log_format: crate::config::AccessLogFormat::Json,
            ..old.clone()
        };
        let needs_restart = keep_restart_only(&old, &mut new);
        assert_eq!(needs_restart.len(), RESTART_ONLY.len(), "{needs_restart:?}");
        assert!(changed(&old, &new).is_empty());
    }

    #[test]
    fn flag_names() {
        assert_eq!(
            flag_name("max_connections_per_ip"),
            "max-connections-per-ip"
        );
    }
}
