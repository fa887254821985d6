//! The agent's command-line faces: `wslb agent` (register a backend that
//! runs elsewhere, until SIGTERM/SIGINT, then deregister) and the agent
//! settings of `wslb echo --register`.

use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

use crate::cmd::cli::{AgentArgs, EchoArgs};
use wslb::agent::AgentError;
use wslb::agent::{generate_id, port_binding, AgentConfig};

/// How long a stopping agent waits for its balancers to see it leave.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The configuration `wslb agent` flags describe, and the load to report.
pub fn agent_config(args: AgentArgs) -> Result<(AgentConfig, u32), AgentError> {
    let bindings = match args.advertise_port {
        Some(port) => vec![port_binding(port)],
        None => args.advertise,
    };
    let metadata = match args.metadata {
        Some(text) => {
            Some(serde_json::from_str(&text).map_err(|e| AgentError::BadMetadata(e.to_string()))?)
        }
        None => None,
    };
    let mut cfg = AgentConfig::new(args.lb, bindings);
    cfg.token = args.token;
    cfg.id = args.id.unwrap_or_else(generate_id);
    cfg.weight = args.weight;
    cfg.metadata = metadata;
    cfg.auto_restart = args.auto_restart;
    cfg.max_backoff = args.max_backoff;
    cfg.tls_ca = args.tls_ca;
    cfg.tls_insecure = args.tls_insecure;
    cfg.validate()?;
    Ok((cfg, args.load))
}

/// Runs `wslb agent` until SIGTERM or SIGINT, then deregisters and exits.
pub fn run(args: AgentArgs) -> Result<(), AgentError> {
    let (cfg, load) = agent_config(args)?;
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(AgentError::Signals)?;
    tracing::info!(id = %cfg.id, balancers = cfg.balancers.len(), bindings = ?cfg.bindings, "agent starting");
    let handle = wslb::agent::spawn(cfg, Arc::new(AtomicU32::new(load)))?;
    if let Some(sig) = signals.forever().next() {
        tracing::info!(signal = sig, "agent: signal received, deregistering");
    }
    if !handle.stop(STOP_GRACE) {
        tracing::warn!("agent: balancers did not confirm in time; exiting anyway");
    }
    Ok(())
}

/// The agent settings of `wslb echo --register ...`, or `None` without
/// `--register`. The bindings are left empty: the echo fills in its port
/// once it has bound its listener.
pub fn echo_agent(args: &EchoArgs) -> Option<AgentConfig> {
    if args.register.is_empty() {
        return None;
    }
    let mut cfg = AgentConfig::new(args.register.clone(), Vec::new());
    cfg.token = args.token.clone();
    cfg.id = args.id.clone().unwrap_or_else(generate_id);
    cfg.weight = args.weight;
    cfg.auto_restart = args.auto_restart;
    cfg.max_backoff = args.max_backoff;
    Some(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::cli::{Cli, Command};
    use clap::Parser;

    fn agent_args(argv: &[&str]) -> Result<AgentArgs, clap::Error> {
        let mut full = vec!["wslb", "agent"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full)?.command {
            Command::Agent(a) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn agent_flags() {
        let a = agent_args(&[
            "--lb",
            "ws://10.0.0.1:8080",
            "--lb",
            "wss://lb2:8443/x",
            "--token",
            "t",
            "--id",
            "api-1",
            "--advertise-port",
            "9001",
            "--weight",
            "3",
            "--auto-restart",
            "500ms",
            "--max-backoff",
            "1m",
            "--load",
            "4",
            "--metadata",
            r#"{"zone":"a"}"#,
        ])
        .expect("parses");
        let (cfg, load) = agent_config(a).expect("valid");
        assert_eq!(cfg.balancers.len(), 2);
        assert!(cfg.balancers[1].tls);
        assert_eq!(cfg.balancers[1].path, "/x");
        assert_eq!(cfg.token.as_deref(), Some("t"));
        assert_eq!(cfg.id, "api-1");
        assert_eq!(cfg.bindings, vec![":9001".to_string()]);
        assert_eq!(cfg.weight, 3);
        assert_eq!(cfg.auto_restart, Duration::from_millis(500));
        assert_eq!(cfg.max_backoff, Duration::from_secs(60));
        assert_eq!(load, 4);
        assert_eq!(cfg.metadata, Some(serde_json::json!({"zone": "a"})));
    }

    #[test]
    fn agent_defaults_and_refusals() {
        let a = agent_args(&[
            "--lb",
            "127.0.0.1:8080",
            "--advertise",
            "http://10.0.0.2:9001",
        ])
        .expect("parses");
        let (cfg, load) = agent_config(a).expect("valid");
        assert!(cfg.id.starts_with("backend-"));
        assert_eq!((cfg.weight, load), (1, 0));
        assert_eq!(cfg.auto_restart, Duration::from_secs(2));
        assert_eq!(cfg.max_backoff, Duration::from_secs(30));
        assert!(
            agent_args(&["--lb", "ws://h:1"]).is_err(),
            "needs an advertised binding"
        );
        assert!(
            agent_args(&["--advertise-port", "9"]).is_err(),
            "needs --lb"
        );
        assert!(agent_args(&["--lb", "ftp://h", "--advertise-port", "9"]).is_err());
        assert!(agent_args(&[
            "--lb",
            "ws://h:1",
            "--advertise-port",
            "9",
            "--advertise",
            "http://1.2.3.4:5"
        ])
        .is_err());
        assert!(agent_args(&[
            "--lb",
            "ws://h:1",
            "--advertise-port",
            "9",
            "--auto-restart",
            "soon"
        ])
        .is_err());
        let bad_weight =
            agent_args(&["--lb", "ws://h:1", "--advertise-port", "9", "--weight", "0"])
                .expect("parses");
        assert!(agent_config(bad_weight).is_err());
        let bad_meta = agent_args(&[
            "--lb",
            "ws://h:1",
            "--advertise-port",
            "9",
            "--metadata",
            "{",
        ])
        .expect("parses");
        assert!(matches!(
            agent_config(bad_meta),
            Err(AgentError::BadMetadata(_))
        ));
    }

    #[test]
    fn echo_register_flags() {
        let parse = |argv: &[&str]| {
            let mut full = vec!["wslb", "echo"];
            full.extend_from_slice(argv);
            match Cli::try_parse_from(full).map(|c| c.command) {
                Ok(Command::Echo(e)) => Ok(e),
                Ok(other) => panic!("parsed as {other:?}"),
                Err(e) => Err(e),
            }
        };
        assert!(echo_agent(&parse(&[]).expect("parses")).is_none());
        let e = parse(&[
            "--register",
            "ws://127.0.0.1:8080/_lb/register",
            "--token",
            "t",
            "--id",
            "echo-1",
            "--weight",
            "2",
        ])
        .expect("parses");
        let cfg = echo_agent(&e).expect("agent wanted");
        assert_eq!(
            (cfg.id.as_str(), cfg.weight, cfg.token.as_deref()),
            ("echo-1", 2, Some("t"))
        );
        assert!(cfg.bindings.is_empty());
        assert!(
            parse(&["--token", "t"]).is_err(),
            "--token needs --register"
        );
    }
}
