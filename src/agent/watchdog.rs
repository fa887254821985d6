//! The auto-restart watchdog: one task per balancer that connects,
//! registers, runs the session, and after any end reconnects after the
//! backoff delay, forever, until the application stops the agent.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use rustls_pki_types::ServerName;

use super::backoff::Backoff;
use super::conn::{connect, new_reader, register, resolve, upgrade};
use super::ctx::Ctx;
use super::error::SessionError;
use super::handle::{LinkState, Shared};
use super::session::{self, Exit};

/// Why waiting was cut short.
#[derive(Debug, PartialEq, Eq)]
enum Wake {
    Stop,
    Offline,
}

impl Wake {
    fn exit(self) -> Exit {
        match self {
            Wake::Stop => Exit::Stopped,
            Wake::Offline => Exit::Offline,
        }
    }
}

/// Runs a setup step under the connect timeout, abandoning it when the
/// application asks to stop or leave (nothing to deregister yet).
macro_rules! step {
    ($ctx:expr, $limit:expr, $what:expr, $fut:expr) => {
        match unless_leaving($ctx, monoio::time::timeout($limit, $fut)).await {
            Err(wake) => return Ok(wake.exit()),
            Ok(Err(_)) => return Err(SessionError::Timeout($what)),
            Ok(Ok(res)) => res,
        }
    };
}

fn current_wish(shared: &Shared) -> Option<Wake> {
    if shared.wishes.stop.load(Ordering::Acquire) {
        Some(Wake::Stop)
    } else if shared.wishes.offline.load(Ordering::Acquire) {
        Some(Wake::Offline)
    } else {
        None
    }
}

/// Runs `fut` unless the application asks to stop or leave first.
async fn unless_leaving<F: Future>(ctx: &Ctx, fut: F) -> Result<F::Output, Wake> {
    let mut fut = pin!(fut);
    let mut seen = ctx.shared.epoch();
    if let Some(w) = current_wish(&ctx.shared) {
        return Err(w);
    }
    poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        while ctx.shared.poll_changed(ctx.index, seen, cx) {
            seen = ctx.shared.epoch();
            if let Some(w) = current_wish(&ctx.shared) {
                return Poll::Ready(Err(w));
            }
        }
        Poll::Pending
    })
    .await
}

/// Waits until the application wants the backend back in the pool (or
/// stopped); returns false on stop.
async fn wait_online(ctx: &Ctx) -> bool {
    let mut seen = ctx.shared.epoch();
    poll_fn(|cx| loop {
        match current_wish(&ctx.shared) {
            Some(Wake::Stop) => return Poll::Ready(false),
            None => return Poll::Ready(true),
            Some(Wake::Offline) => {}
        }
        if !ctx.shared.poll_changed(ctx.index, seen, cx) {
            return Poll::Pending;
        }
        seen = ctx.shared.epoch();
    })
    .await
}

/// The watchdog loop for one balancer.
pub(super) async fn watch(ctx: Ctx) {
    let cfg = ctx.cfg.clone();
    let mut backoff = Backoff::new(cfg.auto_restart, cfg.max_backoff);
    let mut attempt: u64 = 0;
    loop {
        match current_wish(&ctx.shared) {
            Some(Wake::Stop) => break,
            Some(Wake::Offline) => {
                ctx.shared.update(ctx.index, |s| {
                    s.state = LinkState::Deregistered;
                    s.retry_at = None;
                });
                if !wait_online(&ctx).await {
                    break;
                }
                tracing::info!(balancer = %ctx.url, "agent: registering again on request");
                backoff.reset();
                continue;
            }
            None => {}
        }
        attempt += 1;
        tracing::info!(balancer = %ctx.url, id = %cfg.id, attempt, "agent: connecting");
        ctx.shared.update(ctx.index, |s| {
            s.state = LinkState::Connecting;
            s.attempts = attempt;
            s.retry_at = None;
        });
        let err = match connect_and_run(&ctx, &mut backoff).await {
            Ok(Exit::Stopped) => break,
            Ok(Exit::Offline) => continue,
            Err(e) => e,
        };
        let refused = err.is_refusal();
        let delay = backoff.next_delay(refused);
        if refused {
            tracing::error!(balancer = %ctx.url, error = %err, retry_in = ?delay,
                "agent: balancer REFUSED this backend; retrying at the capped backoff (check token and registration)");
        } else {
            tracing::warn!(balancer = %ctx.url, error = %err, retry_in = ?delay, failures = backoff.failures(),
                "agent: control channel down; will reconnect");
        }
        let retry_at = std::time::Instant::now() + delay;
        ctx.shared.update(ctx.index, |s| {
            s.state = LinkState::Waiting;
            s.last_error = Some(err.to_string());
            s.refused = refused;
            s.retry_at = Some(retry_at);
        });
        match unless_leaving(&ctx, monoio::time::sleep(delay)).await {
            Ok(()) | Err(Wake::Offline) => {}
            Err(Wake::Stop) => break,
        }
    }
    ctx.shared.update(ctx.index, |s| {
        s.state = LinkState::Stopped;
        s.retry_at = None;
    });
}

/// One attempt: resolve, connect, TLS, upgrade, register (all within the
/// connect timeout), then the session.
async fn connect_and_run(ctx: &Ctx, backoff: &mut Backoff) -> Result<Exit, SessionError> {
    let limit = ctx.cfg.connect_timeout;
    let tcp = step!(ctx, limit, "connecting", async {
        let addrs = resolve(&ctx.url).await?;
        connect(&addrs).await
    })?;
    match &ctx.tls {
        None => establish(ctx, tcp, backoff, limit).await,
        Some(connector) => {
            let name = ServerName::try_from(ctx.url.host.clone()).map_err(|e| {
                SessionError::Tls(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    e.to_string(),
                ))
            })?;
            let tls = step!(
                ctx,
                limit,
                "in the TLS handshake",
                connector.connect(name, tcp)
            )
            .map_err(|e| SessionError::Tls(e.into()))?;
            establish(ctx, tls, backoff, limit).await
        }
    }
}

/// Upgrade and register on an open stream, then run the session.
async fn establish<S>(
    ctx: &Ctx,
    mut stream: S,
    backoff: &mut Backoff,
    limit: Duration,
) -> Result<Exit, SessionError>
where
    S: AsyncReadRent + AsyncWriteRent + Split + 'static,
{
    let mut reader = new_reader();
    let version = ctx.version.get();
    let msg = ctx.cfg.register_message(version);
    let answer = step!(
        ctx,
        limit,
        "waiting for the upgrade and the registered answer",
        async {
            let mut buf = upgrade(&mut stream, &ctx.url, ctx.cfg.token.as_deref()).await?;
            let reg = register(&mut stream, &mut buf, &mut reader, &msg).await?;
            Ok::<_, SessionError>((buf, reg))
        }
    );
    let (buf, mut reg) = match answer {
        // A balancer older than protocol v2: register again as v1 (no
        // operations or events through it).
        Err(SessionError::Refused(m))
            if version > 1 && m.contains("unsupported protocol version") =>
        {
            ctx.version.set(1);
            return Err(SessionError::OldBalancer);
        }
        other => other?,
    };
    reg.v = reg.v.min(version);
    backoff.reset();
    tracing::info!(balancer = %ctx.url, id = %ctx.cfg.id, balancer_id = %reg.balancer_id,
        heartbeat = ?reg.heartbeat_interval, bindings = ?reg.bindings, "agent: registered");
    ctx.shared.update(ctx.index, |s| {
        s.state = LinkState::Registered;
        s.registrations += 1;
        s.balancer_id = Some(reg.balancer_id.clone());
        s.heartbeat_interval = Some(reg.heartbeat_interval);
        s.bindings = reg.bindings.clone();
        s.last_error = None;
        s.refused = false;
        s.draining = false;
        s.protocol = reg.v;
    });
    session::run(ctx, stream, buf, reader, &reg).await
}
