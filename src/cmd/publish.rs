//! `wslb publish`: one messaging operation (publish, send, ping, close,
//! subscribe, unsubscribe) sent to the admin API of one or more balancers
//! (`POST /api/<op>`), one line per balancer and the total printed. Each
//! balancer reaches only its own clients, so a publish sent to every
//! balancer reaches every client once; a send succeeds when exactly one
//! balancer holds the connection.

use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;
use serde_json::Value;

use crate::cmd::admin_client::{post_json, AdminUrl};
use wslb::config::parse_duration;
use wslb::hub::ops::op_from_value;
use wslb::hub::{CloseTarget, Filter, Outcome, Payload, Request};

/// The operations `wslb publish --op` sends.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpArg {
    /// A message to every session the filter picks.
    Publish,
    /// A message to one session (`--id`).
    Send,
    /// Ping the sessions the filter picks and count the pongs.
    Ping,
    /// Close sessions (`--all`, `--id` or a filter).
    Close,
    /// Add channels (`--channel`, repeatable) to one session (`--id`).
    Subscribe,
    /// Remove channels from one session.
    Unsubscribe,
}

/// Flags of `wslb publish`.
#[derive(clap::Args, Debug, Clone)]
pub struct PublishArgs {
    /// A balancer's admin API (repeatable): http://HOST:PORT.
    #[arg(
        long = "admin",
        value_name = "URL",
        default_value = "http://127.0.0.1:9090"
    )]
    pub admin: Vec<String>,
    /// Bearer token of the admin API (the balancers' --admin-token).
    #[arg(long, env = "WSLB_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// The operation.
    #[arg(long, value_enum, default_value = "publish")]
    pub op: OpArg,
    /// The message, as text.
    #[arg(long, conflicts_with = "binary_file")]
    pub text: Option<String>,
    /// The message, as binary: the bytes of this file.
    #[arg(long, value_name = "FILE")]
    pub binary_file: Option<PathBuf>,
    /// The connection id (send, subscribe, unsubscribe; close one session).
    #[arg(long)]
    pub id: Option<String>,
    /// Only members of this channel; for subscribe and unsubscribe, the
    /// channels (repeatable).
    #[arg(long = "channel", value_name = "NAME")]
    pub channel: Vec<String>,
    /// Only sessions that negotiated this subprotocol.
    #[arg(long)]
    pub subprotocol: Option<String>,
    /// Only sessions on this backend (its id).
    #[arg(long)]
    pub backend: Option<String>,
    /// Only sessions whose upgrade path starts with this.
    #[arg(long)]
    pub path_prefix: Option<String>,
    /// Only these sessions (repeatable).
    #[arg(long = "include", value_name = "ID")]
    pub include: Vec<String>,
    /// Never these sessions (repeatable).
    #[arg(long = "exclude", value_name = "ID")]
    pub exclude: Vec<String>,
    /// Ping: how long pongs are counted (1 to 60000).
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Close: every session.
    #[arg(long)]
    pub all: bool,
    /// Close: the close code.
    #[arg(long)]
    pub code: Option<u16>,
    /// Close: the close reason.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Time allowed for each balancer's answer (a ping's wait comes on top).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Why `wslb publish` failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot read {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

fn usage(s: impl Into<String>) -> PublishError {
    PublishError::Usage(s.into())
}

/// The message of `--text` or `--binary-file`.
fn payload(args: &PublishArgs) -> Result<Option<Payload>, PublishError> {
    if let Some(t) = &args.text {
        return Ok(Some(Payload::Text(t.clone())));
    }
    match &args.binary_file {
        Some(path) => std::fs::read(path)
            .map(|b| Some(Payload::Binary(b)))
            .map_err(|source| PublishError::File {
                path: path.clone(),
                source,
            }),
        None => Ok(None),
    }
}

/// The filter the flags describe (at most one --channel).
fn filter(args: &PublishArgs) -> Result<Filter, PublishError> {
    if args.channel.len() > 1 {
        return Err(usage("give at most one --channel to filter by"));
    }
    Ok(Filter {
        channel: args.channel.first().cloned(),
        subprotocol: args.subprotocol.clone(),
        backend: args.backend.clone(),
        path_prefix: args.path_prefix.clone(),
        include: (!args.include.is_empty()).then(|| args.include.clone()),
        exclude: args.exclude.clone(),
    })
}

/// The request the flags describe (`msg` read from `--text` or the file).
pub fn build_request(args: &PublishArgs, msg: Option<Payload>) -> Result<Request, PublishError> {
    let need_msg = |op: &str| {
        msg.clone()
            .ok_or_else(|| usage(format!("{op} needs --text or --binary-file")))
    };
    let need_id = |op: &str| {
        args.id
            .clone()
            .ok_or_else(|| usage(format!("{op} needs --id")))
    };
    let no_msg = |op: &str| match msg.is_some() {
        true => Err(usage(format!(
            "{op} sends no message: drop --text/--binary-file"
        ))),
        false => Ok(()),
    };
    let req = match args.op {
        OpArg::Publish => {
            if args.id.is_some() {
                return Err(usage(
                    "publish takes a filter: use --include ID (or --op send)",
                ));
            }
            Request::Publish {
                msg: need_msg("publish")?,
                filter: filter(args)?,
            }
        }
        OpArg::Send => {
            if !filter(args)?.is_everyone() {
                return Err(usage("send names one connection: --id, no filter"));
            }
            Request::Send {
                id: need_id("send")?,
                msg: need_msg("send")?,
            }
        }
        OpArg::Ping => {
            no_msg("ping")?;
            if args.id.is_some() {
                return Err(usage("ping takes a filter: use --include ID"));
            }
            Request::Ping {
                filter: filter(args)?,
                timeout_ms: args.timeout_ms,
            }
        }
        OpArg::Close => {
            no_msg("close")?;
            let filter = filter(args)?;
            let target = match (args.all, &args.id) {
                (true, Some(_)) => return Err(usage("close: --all or --id, not both")),
                // `--all` with a filter: all of those.
                (true, None) if filter.is_everyone() => CloseTarget::All,
                (true, None) => CloseTarget::Filter(filter),
                (false, Some(id)) if filter.is_everyone() => CloseTarget::Id(id.clone()),
                (false, Some(_)) => return Err(usage("close --id takes no filter")),
                (false, None) if filter.is_everyone() => {
                    return Err(usage("close needs --all, --id or a filter"))
                }
                (false, None) => CloseTarget::Filter(filter),
            };
            Request::Close {
                target,
                code: args.code,
                reason: args.reason.clone(),
            }
        }
        OpArg::Subscribe | OpArg::Unsubscribe => {
            no_msg("subscribe")?;
            let other_filters = args.subprotocol.is_some()
                || args.backend.is_some()
                || args.path_prefix.is_some()
                || !args.include.is_empty()
                || !args.exclude.is_empty();
            if other_filters {
                return Err(usage(
                    "subscribe and unsubscribe take --id and --channel only",
                ));
            }
            if args.channel.is_empty() {
                return Err(usage("give the channels with --channel (repeatable)"));
            }
            let id = need_id("subscribe")?;
            let channels = args.channel.clone();
            if args.op == OpArg::Subscribe {
                Request::Subscribe { id, channels }
            } else {
                Request::Unsubscribe { id, channels }
            }
        }
    };
    // Checked as the balancers will check it: a mistake is one message
    // here rather than one refusal per balancer.
    let body = Value::Object(req.to_body());
    op_from_value(req.verb(), &body, 0).map_err(|e| usage(e.to_string()))?;
    Ok(req)
}

/// One balancer's answer, as shown and judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Its counts.
    Done(Outcome),
    /// It answered with an error status.
    Refused { status: u16, message: String },
    /// It could not be asked.
    Unreachable(String),
}

/// The counts of every `Done` reply, summed.
pub fn total(replies: &[Reply]) -> Outcome {
    let mut t = Outcome::default();
    for r in replies {
        if let Reply::Done(o) = r {
            t.add(o);
        }
    }
    t
}

/// Whether it went as asked: every balancer answered; for a request that
/// names one session, exactly one balancer found it (the others' "no such
/// connection" is expected).
pub fn succeeded(single: bool, replies: &[Reply]) -> bool {
    let answered = replies.iter().all(|r| match r {
        Reply::Done(_) => true,
        Reply::Refused { status: 404, .. } => single,
        _ => false,
    });
    let found = replies
        .iter()
        .filter(|r| matches!(r, Reply::Done(o) if o.matched > 0))
        .count();
    answered && (!single || found == 1)
}

fn ask(
    url: &AdminUrl,
    token: Option<&str>,
    req: &Request,
    body: &[u8],
    timeout: Duration,
) -> Reply {
    let path = format!("/api/{}", req.verb().name());
    match post_json(url, &path, token, body, timeout) {
        Err(e) => Reply::Unreachable(e.to_string()),
        Ok(a) if a.status == 200 => match serde_json::from_slice::<Outcome>(&a.body) {
            Ok(o) => Reply::Done(o),
            Err(e) => Reply::Unreachable(format!("unexpected answer ({e}): {}", a.error_text())),
        },
        Ok(a) => Reply::Refused {
            status: a.status,
            message: a.error_text(),
        },
    }
}

fn show(o: &Outcome) -> String {
    serde_json::to_string(o).unwrap_or_default()
}

/// Runs `wslb publish`.
pub fn run(args: PublishArgs) -> Result<(), PublishError> {
    let urls = args
        .admin
        .iter()
        .map(|u| AdminUrl::parse(u).map_err(usage))
        .collect::<Result<Vec<_>, _>>()?;
    let msg = payload(&args)?;
    let req = build_request(&args, msg)?;
    let body = Value::Object(req.to_body()).to_string();
    let wait = match &req {
        Request::Ping { timeout_ms, .. } => Duration::from_millis(timeout_ms.unwrap_or(1000)),
        _ => Duration::ZERO,
    };
    let token = args.admin_token.as_deref();
    // Every balancer at once: a slow one does not delay the others.
    let replies: Vec<Reply> = std::thread::scope(|s| {
        let asks: Vec<_> = urls
            .iter()
            .map(|u| {
                let (req, body) = (&req, body.as_bytes());
                s.spawn(move || ask(u, token, req, body, args.timeout + wait))
            })
            .collect();
        asks.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Reply::Unreachable("the request thread failed".into()))
            })
            .collect()
    });
    for (url, reply) in urls.iter().zip(&replies) {
        match reply {
            Reply::Done(o) => println!("{url}  {}", show(o)),
            Reply::Refused { status, message } => println!("{url}  error {status}: {message}"),
            Reply::Unreachable(e) => println!("{url}  failed: {e}"),
        }
    }
    println!("total  {}", show(&total(&replies)));
    let single = req.names_one_session();
    if succeeded(single, &replies) {
        Ok(())
    } else if single {
        Err(PublishError::Failed(
            "not exactly one balancer holds that connection (or one failed)".into(),
        ))
    } else {
        Err(PublishError::Failed("not every balancer answered".into()))
    }
}

#[cfg(test)]
#[path = "publish_tests.rs"]
mod tests;
