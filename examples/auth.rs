//! A balancer that lets a WebSocket session through only with a token: the
//! `on_handshake` hook refuses an upgrade without a valid one (`?token=T` in
//! the query, or `Authorization: Bearer T`) with 401, and tells the backend
//! who the user is in an `X-User` header.
//!
//! ```text
//! cargo run --example auth -- --listen 127.0.0.1:8080 \
//!     --backend http://127.0.0.1:9001 --token secret --user alice
//! ```
//!
//! Every flag has a default (the token also comes from `WSLB_AUTH_TOKEN`).
//! It prints `listening http ADDR` and `ready` once it serves, and drains
//! on SIGTERM or SIGINT.

use std::io::Write as _;
use std::process::ExitCode;

use signal_hook::consts::{SIGINT, SIGTERM};
use wslb::{Balancer, Decision, Hooks, Request};

/// The settings, from the command line.
struct Args {
    listen: String,
    backend: String,
    token: String,
    user: String,
}

const USAGE: &str = "usage: auth [--listen ADDR] [--backend URL] [--token TOKEN] [--user NAME]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:8080".into(),
        backend: "http://127.0.0.1:9001".into(),
        token: std::env::var("WSLB_AUTH_TOKEN").unwrap_or_else(|_| "secret".into()),
        user: "demo".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let slot = match flag.as_str() {
            "--listen" => &mut args.listen,
            "--backend" => &mut args.backend,
            "--token" => &mut args.token,
            "--user" => &mut args.user,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        };
        *slot = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
    }
    if args.token.is_empty() {
        return Err("the token may not be empty".into());
    }
    Ok(args)
}

/// The hook: one token, one user.
struct TokenAuth {
    token: String,
    user: String,
}

impl TokenAuth {
    /// The token the request carries, if any: `?token=` first, then a
    /// bearer `Authorization`.
    fn token_of<'a>(req: &'a Request<'_>) -> Option<&'a [u8]> {
        let from_query = req.query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("token="))
                .map(str::as_bytes)
        });
        from_query.or_else(|| req.header("authorization")?.strip_prefix(b"Bearer "))
    }
}

/// Compares without stopping at the first difference, so that the time
/// taken does not tell how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    let diff = a
        .iter()
        .zip(b)
        .fold(a.len() ^ b.len(), |d, (x, y)| d | usize::from(x ^ y));
    diff == 0
}

impl Hooks for TokenAuth {
    fn on_handshake(&self, req: &Request<'_>) -> Decision {
        match Self::token_of(req) {
            Some(t) if same(t, self.token.as_bytes()) => {
                Decision::accept().header("X-User", self.user.as_str())
            }
            Some(_) => Decision::refuse(401, "invalid token"),
            None => Decision::refuse(401, "token required"),
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let lb = Balancer::builder()
        .listen(args.listen.as_str())
        .backend(&args.backend)
        .hooks(TokenAuth {
            token: args.token.clone(),
            user: args.user.clone(),
        })
        .start();
    let lb = match lb {
        Ok(lb) => lb,
        Err(e) => {
            eprintln!("auth: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("auth: signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    for (kind, addr) in lb.local_addrs() {
        let _ = writeln!(out, "listening {kind} {addr}");
    }
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    drop(out);
    if let Some(addr) = lb.local_addr() {
        eprintln!(
            "try it (with a backend at {}, e.g. `wslb echo --listen {}`):\n  \
             websocat 'ws://{addr}/?token={}'   -> the session opens, the backend sees X-User: {}\n  \
             websocat 'ws://{addr}/'            -> refused: 401 token required",
            args.backend,
            args.backend.trim_start_matches("http://").trim_start_matches("ws://"),
            args.token,
            args.user,
        );
    }
    let _ = signals.forever().next();
    eprintln!("auth: draining");
    lb.handle().drain();
    lb.wait();
    ExitCode::SUCCESS
}
