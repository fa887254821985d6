//! `wslb` command-line entry point: parses flags, sets up logging, and runs
//! the chosen subcommand.

use std::process::ExitCode;

use clap::Parser;

mod cmd;
use crate::cmd::cli::{Cli, Command};

/// mimalloc unless the `system-alloc` feature asks for the system allocator
/// (heap profilers cannot see through mimalloc).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sets up the log on stderr, or appended to `file` (no colours there);
/// an error when the file cannot be opened.
fn init_logging(level: &str, format: &str, file: Option<&std::path::Path>) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let writer = match file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("--log-file {}: {e}", path.display()))?;
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::sync::Mutex::new(f))
        }
        None => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
    };
    let builder = builder.with_writer(writer).with_ansi(file.is_none());
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}

/// Reads `wslb serve`'s configuration again, as this process was started
/// (its command line and the `--config` file it names, re-read): what
/// SIGHUP and `POST /api/reload` apply.
fn reread_serve_config() -> Result<wslb::ServeConfig, String> {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    crate::cmd::config_load::load_serve_config(&argv)
        .map(|loaded| loaded.config)
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `wslb serve` reads its configuration again from the command line
    // itself, the way a reload reads it: the flags, the --config file under
    // them (which may set the log level), checked before anything starts.
    let serve = match &cli.command {
        Command::Serve(_) => {
            let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
            match crate::cmd::config_load::load_serve_config(&argv) {
                Ok(loaded) => Some(loaded),
                Err(e) => {
                    for line in e.to_string().lines() {
                        eprintln!("wslb: {line}");
                    }
                    return ExitCode::from(e.exit_code());
                }
            }
        }
        _ => None,
    };
    let logging = match &serve {
        Some(loaded) => init_logging(
            &loaded.log_level,
            &loaded.log_format,
            loaded.log_file.as_deref(),
        ),
        None => init_logging(&cli.log_level, &cli.log_format, cli.log_file.as_deref()),
    };
    if let Err(e) = logging {
        eprintln!("wslb: {e}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Serve(_) => match serve {
            Some(loaded) => crate::cmd::serve::run(loaded.config, reread_serve_config),
            None => Err("no serve configuration".into()),
        },
        Command::CheckConfig(args) => return crate::cmd::check_config::run(&args.file),
        Command::Echo(args) => {
            let agent = crate::cmd::agent_cli::echo_agent(&args);
            let name = args
                .name
                .unwrap_or_else(|| format!("echo-{}", args.listen.port()));
            crate::cmd::echo::run_echo(crate::cmd::echo::EchoConfig {
                listen: args.listen,
                name,
                workers: args.workers,
                agent,
            })
            .map_err(|e| format!("echo: {e}"))
        }
        Command::Bench(args) => crate::cmd::bench::run(args).map_err(|e| format!("bench: {e}")),
        Command::Demo(args) => crate::cmd::demo::run(args).map_err(|e| format!("demo: {e}")),
        Command::Agent(args) => crate::cmd::agent_cli::run(args).map_err(|e| format!("agent: {e}")),
        Command::Publish(args) => {
            crate::cmd::publish::run(*args).map_err(|e| format!("publish: {e}"))
        }
        Command::Floor(args) => {
            crate::cmd::floor::run(args.listen, args.backend).map_err(|e| format!("floor: {e}"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wslb: {e}");
            ExitCode::FAILURE
        }
    }
}
