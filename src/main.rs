//! `wslb` command-line entry point: parses flags, sets up logging, and runs
//! the chosen subcommand.

use std::process::ExitCode;

use clap::Parser;

mod cmd;
use crate::cmd::cli::{Cli, Command};

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli.log_level, &cli.log_format, cli.log_file.as_deref()) {
        eprintln!("wslb: {e}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Serve(args) => args
            .into_config()
            .map_err(|e| format!("invalid configuration: {e}"))
            .and_then(crate::cmd::serve::run),
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
