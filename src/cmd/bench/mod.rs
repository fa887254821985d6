//! `wslb bench`: a thread-per-core load generator for HTTP/1.1 keep-alive
//! requests, TLS handshakes (`http --handshakes`) and WebSocket echo,
//! session-setup, idle-hold and fan-out (`--subscribe`) workloads, used by `perf/run.sh` to compare wslb with
//! HAProxy, nginx and Pushpin; and echo through the SSE fallback (`sse`).
//!
//! The CLI wires `BenchArgs` as the `bench` subcommand and calls [`run`].

mod conn;
mod fanout;
mod fanout_drive;
mod fanout_report;
#[cfg(test)]
mod fanout_tests;
mod http;
mod procstat;
mod publisher;
mod response;
mod runner;
mod sse;
mod sse_http;
mod sse_parse;
mod sse_session;
#[cfg(test)]
mod sse_tests;
mod stats;
#[cfg(test)]
mod tests;
mod ticket_store;
mod tls_handshake;
#[cfg(test)]
mod tls_tests;
mod url;
mod ws;
mod ws_session;
#[cfg(test)]
mod ws_tests;
mod ws_window;

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

pub use fanout::FanoutArgs;
pub use sse::SseArgs;
pub use stats::Summary;
pub use url::{Scheme, Target};

use runner::{run_threads, Plan};
use stats::RunInfo;

/// Errors that stop a bench run before or outside measurement.
#[derive(Debug, Error)]
pub enum BenchError {
    /// The URL does not parse or names an unsupported scheme.
    #[error("invalid url {url:?}: {reason}")]
    Url { url: String, reason: &'static str },
    /// The host did not resolve.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    /// Flags that do not fit together.
    #[error("invalid arguments: {0}")]
    Args(String),
    /// A worker thread could not be started.
    #[error("cannot start a bench thread: {0}")]
    Thread(std::io::Error),
    /// A monoio runtime could not be built.
    #[error("cannot build the runtime: {0}")]
    Runtime(std::io::Error),
    /// A bench thread panicked.
    #[error("a bench thread panicked")]
    Panicked,
    /// Installing the SIGINT/SIGTERM handler failed.
    #[error("cannot install a signal handler: {0}")]
    Signal(std::io::Error),
    /// The summary could not be serialized.
    #[error("cannot write the JSON summary: {0}")]
    Json(#[from] serde_json::Error),
}

/// `wslb bench` arguments.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// What to measure.
    #[command(subcommand)]
    pub mode: BenchMode,
}

/// The bench workloads.
#[derive(clap::Subcommand, Debug)]
pub enum BenchMode {
    /// WebSocket echo round trips, session setup rate (--connect-rate), idle connections (--hold N)
    /// or fan-out to subscribed sessions (--subscribe CHANNEL).
    Ws(WsArgs),
    /// HTTP/1.1 keep-alive GET requests, closed-loop or at a fixed rate (--rate),
    /// or TLS handshakes (--handshakes, https:// URL).
    Http(HttpArgs),
    /// Echo round trips through the balancer's SSE fallback: an event stream
    /// per connection, messages POSTed to /_lb/sse/<token> (--timeout also
    /// bounds each echo).
    Sse(SseArgs),
}

/// Flags every mode shares.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Target URL (http://HOST:PORT/path or ws://HOST:PORT/path).
    #[arg(long)]
    pub url: String,
    /// Connections (concurrency for --connect-rate).
    #[arg(short = 'c', long = "connections", default_value_t = 10)]
    pub connections: usize,
    /// Seconds to run (default 10; --hold: until SIGINT/SIGTERM).
    #[arg(short = 'd', long)]
    pub duration: Option<f64>,
    /// Worker threads, each with its own runtime.
    #[arg(short = 't', long, default_value_t = 1)]
    pub threads: usize,
    /// Pin thread i to core CPU+i.
    #[arg(long)]
    pub cpu: Option<usize>,
    /// Connect/handshake timeout in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `wslb bench http`.
#[derive(clap::Args, Debug, Clone)]
pub struct HttpArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Total requests per second (open loop, latency from the intended send time).
    #[arg(long)]
    pub rate: Option<f64>,
    /// TLS handshakes (https:// URL): each connection loops on connect, a TLS 1.3
    /// handshake, one GET with `Connection: close`, the response, close.
    #[arg(long, conflicts_with = "rate", requires = "ca")]
    pub handshakes: bool,
    /// With --handshakes: resume sessions from the tickets of earlier ones.
    #[arg(long, requires = "handshakes")]
    pub resume: bool,
    /// PEM file of the CA certificates the server's certificate is checked against.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

/// `wslb bench ws`.
#[derive(clap::Args, Debug, Clone)]
pub struct WsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Message size in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Total messages per second (open loop).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Measure session setup: connect, handshake, one message, close, repeat.
    #[arg(long, conflicts_with_all = ["hold", "rate"])]
    pub connect_rate: bool,
    /// Open N idle connections and hold them (prints `holding N` on stderr).
    #[arg(long, value_name = "N", conflicts_with = "rate")]
    pub hold: Option<usize>,
    /// Connections opened at a time while building up --hold.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Echo: at most this many seconds of warm-up. Sessions open at
    /// --open-rate from the start; the --duration window opens 2 s after the
    /// last is up (or when the warm-up runs out); only round trips sent in it
    /// count, and --watch-pid processes' CPU is read at its edges.
    #[arg(long, default_value_t = 0.0, conflicts_with_all = ["connect_rate", "hold"])]
    pub warmup: f64,
    #[command(flatten)]
    pub fanout: FanoutArgs,
}

fn check_common(c: &CommonArgs, scheme: Scheme) -> Result<Target, BenchError> {
    if c.threads == 0 {
        return Err(BenchError::Args("--threads must be at least 1".into()));
    }
    if c.duration.is_some_and(|d| !(d > 0.0 && d.is_finite())) {
        return Err(BenchError::Args("--duration must be positive".into()));
    }
    if !(c.timeout > 0.0 && c.timeout.is_finite()) {
        return Err(BenchError::Args("--timeout must be positive".into()));
    }
    let target = Target::parse(&c.url)?;
    if target.scheme != scheme {
        return Err(BenchError::Args(format!(
            "{} needs a {:?} URL",
            c.url, scheme
        )));
    }
    Ok(target)
}

fn check_rate(rate: Option<f64>) -> Result<(), BenchError> {
    if rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(BenchError::Args("--rate must be positive".into()));
    }
    Ok(())
}

fn emit(summary: &Summary, json: bool) -> Result<(), BenchError> {
    if json {
        println!("{}", serde_json::to_string(summary)?);
    } else {
        print!("{}", summary.table());
    }
    Ok(())
}

/// Run a bench to completion (blocking) and print its summary on stdout.
pub fn run(args: BenchArgs) -> Result<(), BenchError> {
    let summary = match args.mode {
        BenchMode::Http(a) => run_http(a)?,
        BenchMode::Ws(a) if a.fanout.subscribe.is_some() => {
            let (s, json) = fanout::run(&a)?;
            if json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                print!("{}", s.table());
            }
            return Ok(());
        }
        BenchMode::Ws(a) => ws::run(a)?,
        BenchMode::Sse(a) => sse::run(a)?,
    };
    let json = summary.1;
    emit(&summary.0, json)
}

/// The plan of a run that lasts `--duration` (10 s by default) over `-c`
/// connections, counting `unit`s.
fn timed_plan(c: &CommonArgs, unit: &'static str) -> Result<Plan, BenchError> {
    if c.connections == 0 {
        return Err(BenchError::Args("-c must be at least 1".into()));
    }
    Ok(Plan {
        threads: c.threads,
        cpu: c.cpu,
        connections: c.connections,
        duration: Some(Duration::from_secs_f64(c.duration.unwrap_or(10.0))),
        unit,
    })
}

fn run_http(a: HttpArgs) -> Result<(Summary, bool), BenchError> {
    if a.handshakes {
        return run_handshakes(a);
    }
    let c = &a.common;
    let target = check_common(c, Scheme::Http)?;
    check_rate(a.rate)?;
    let plan = timed_plan(c, "req")?;
    let job = Arc::new(http::HttpJob {
        target,
        rate: a.rate,
        connections: c.connections,
        timeout: Duration::from_secs_f64(c.timeout),
    });
    let (stats, elapsed) = run_threads(&plan, move |w| {
        let job = Rc::new((*job).clone());
        http::thread_main(job, w)
    })?;
    let info = RunInfo {
        mode: if a.rate.is_some() {
            "http-rate"
        } else {
            "http"
        },
        url: c.url.clone(),
        connections: c.connections,
        threads: plan.threads.min(c.connections),
        rate: a.rate,
        message_size: None,
    };
    Ok((stats.summary(info, elapsed), c.json))
}

fn run_handshakes(a: HttpArgs) -> Result<(Summary, bool), BenchError> {
    let c = &a.common;
    let target = check_common(c, Scheme::Https)?;
    let plan = timed_plan(c, "sess")?;
    let ca =
        a.ca.as_deref()
            .ok_or_else(|| BenchError::Args("--handshakes needs --ca FILE".into()))?;
    let config = tls_handshake::client_config(ca, a.resume)?;
    let server_name = tls_handshake::server_name(&target)?;
    let timeout = Duration::from_secs_f64(c.timeout);
    let (stats, elapsed) = run_threads(&plan, move |w| {
        let job = Rc::new(tls_handshake::HandshakeJob {
            request: tls_handshake::request(&target),
            target: target.clone(),
            server_name: server_name.clone(),
            config: Arc::clone(&config),
            timeout,
        });
        tls_handshake::thread_main(job, w)
    })?;
    let info = RunInfo {
        mode: if a.resume {
            "tls-resumed"
        } else {
            "tls-handshakes"
        },
        url: c.url.clone(),
        connections: c.connections,
        threads: plan.threads.min(c.connections),
        rate: None,
        message_size: None,
    };
    let mut summary = stats.summary(info, elapsed);
    summary.resumed = Some(stats.resumed);
    Ok((summary, c.json))
}
