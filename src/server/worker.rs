//! One worker: a pinned thread running its own monoio runtime (io_uring, or
//! the legacy driver where io_uring is unavailable), accepting on its own
//! SO_REUSEPORT listeners and serving every connection it accepts.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::{TcpListener, TcpStream};

use super::Shared;
use crate::proxy::conns::{ConnCommand, ConnKind};
use crate::proxy::env::{Common, Env};
use crate::proxy::ListenerKind;
use crate::rt::live::LocalCopy;
use crate::rt::notify::Phase;

/// The worker's own state: the proxy environment it lends its connections,
/// plus what only the accept side needs.
pub(crate) struct WorkerCtx {
    pub index: usize,
    pub shared: Arc<Shared>,
    /// What every connection task of this worker borrows.
    pub env: Rc<Env>,
    /// This worker's copy of the TLS configuration (a reload replaces it).
    pub tls: LocalCopy<Option<Arc<rustls::ServerConfig>>>,
    /// Connections refused over the per-IP limit: answers under way and
    /// the throttle of their warnings.
    pub refusals: super::refuse::Refusals,
    /// Accept loops and connection tasks alive (the drain waits for them).
    pub tasks: super::tasks::TaskCount,
}

/// Startup handshake of a worker: it reports whether its runtime could be
/// built, then waits at `go` until every worker has, so that no worker
/// accepts (and takes descriptors) while another is still being set up.
pub(crate) struct Started {
    pub report: std::sync::mpsc::Sender<Result<(), String>>,
    pub go: Arc<std::sync::Barrier>,
}

impl Started {
    fn ready(&self) {
        let _ = self.report.send(Ok(()));
        self.go.wait();
    }
}

/// Runs worker `index` on the current thread until the process drains.
/// `started` hears, before any connection is served, whether the runtime
/// could be built: startup fails rather than running short of a worker.
pub(crate) fn run_worker(
    index: usize,
    shared: Arc<Shared>,
    listeners: Vec<(ListenerKind, std::net::TcpListener)>,
    core: Option<core_affinity::CoreId>,
    started: Started,
) {
    if let Some(core) = core {
        if !core_affinity::set_for_current(core) {
            tracing::warn!(
                worker = index,
                core = core.id,
                "could not pin worker to core"
            );
        }
    }
    let force_legacy = std::env::var("WSLB_DRIVER").is_ok_and(|v| v == "legacy");
    let tuned = std::env::var("WSLB_URING").map_or(true, |v| v != "plain");
    if !force_legacy {
        // Tuned ring first; kernels before 6.0 refuse its flags, then the
        // kernel defaults; without io_uring at all, the legacy driver.
        let attempts: &[bool] = if tuned { &[true, false] } else { &[false] };
        for &with_flags in attempts {
            let mut builder = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new();
            if with_flags {
                builder = builder.uring_builder(tuned_uring());
            }
            match builder.with_entries(4096).enable_timer().build() {
                Ok(mut rt) => {
                    tracing::debug!(
                        worker = index,
                        tuned = with_flags,
                        "io_uring runtime started"
                    );
                    started.ready();
                    rt.block_on(worker_main(index, shared, listeners));
                    return;
                }
                Err(e) => {
                    tracing::warn!(worker = index, tuned = with_flags, error = %e, "cannot set up this io_uring ring");
                }
            }
        }
        tracing::warn!(
            worker = index,
            "io_uring unavailable, using the legacy (epoll) driver"
        );
    }
    match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(mut rt) => {
            started.ready();
            rt.block_on(worker_main(index, shared, listeners))
        }
        Err(e) => {
            let _ = started
                .report
                .send(Err(format!("worker {index}: cannot start a runtime: {e}")));
            started.go.wait();
        }
    }
}

/// Ring settings for a worker: one thread submits (`SINGLE_ISSUER`), and
/// the task work that completes an operation runs when the worker next
/// enters the kernel instead of interrupting it with an inter-processor
/// interrupt (`COOP_TASKRUN`). Measured side by side on loopback: about 20%
/// less CPU per proxied request and per WebSocket message. `WSLB_URING=plain`
/// turns this off for comparison.
fn tuned_uring() -> io_uring::Builder {
    let mut b = io_uring::IoUring::builder();
    b.setup_coop_taskrun().setup_single_issuer();
    b
}

async fn worker_main(
    index: usize,
    shared: Arc<Shared>,
    listeners: Vec<(ListenerKind, std::net::TcpListener)>,
) {
    let tls = LocalCopy::new(shared.live_tls.clone());
    let mut env = Env::new(
        index,
        Common {
            cfg: shared.live.clone(),
            pool: shared.pool.clone(),
            registry: shared.registry.clone(),
            control_hub: shared.control_hub.clone(),
            hooks: shared.hooks.clone(),
            router: shared.router.clone(),
            events: shared.events.clone(),
            telemetry: shared.telemetry.clone(),
        },
    );
    env.backend_tls = shared.backend_tls.clone().map(crate::tls::connector);
    let env = Rc::new(env);
    let ctx = Rc::new(WorkerCtx {
        index,
        env,
        tls,
        refusals: super::refuse::Refusals::new(),
        tasks: super::tasks::TaskCount::default(),
        shared,
    });
    for (kind, std_listener) in listeners {
        match TcpListener::from_std(std_listener) {
            Ok(l) => {
                let live = ctx.tasks.enter();
                monoio::spawn(accept_loop(ctx.clone(), l, kind, live));
            }
            Err(e) => tracing::error!(worker = index, error = %e, "cannot adopt listener"),
        }
    }
    if ctx.shared.cfg.ws_mode == crate::config::WsMode::Tunnel {
        monoio::spawn(sweep_tunnels(ctx.clone()));
    }
    monoio::spawn(sweep_idle_backends(ctx.clone()));
    monoio::spawn(flush_access_log(ctx.env.clone()));
    monoio::spawn(crate::proxy::hub_worker::run(ctx.env.clone()));
    ctx.shared.lifecycle.wait_for(index, Phase::Draining).await;
    ctx.env.draining.fire();
    let open = ctx.env.conns.len();
    tracing::info!(worker = index, open, "draining");
    ctx.env.conns.broadcast(ConnCommand::Drain, |_| true);
    let drain = ctx.env.cfg().drain_timeout;
    // Every connection this worker accepted ends before its runtime does.
    let all_done = || async {
        ctx.env.conns.wait_empty().await;
        ctx.tasks.wait_zero().await;
    };
    if monoio::time::timeout(drain, all_done()).await.is_err() {
        tracing::info!(
            worker = index,
            left = ctx.env.conns.len(),
            tasks = ctx.tasks.count(),
            "drain timeout: closing the rest"
        );
        ctx.env.conns.broadcast(ConnCommand::Close(1001), |h| {
            matches!(h.kind(), ConnKind::WebSocket | ConnKind::Http)
        });
        let _ = monoio::time::timeout(Duration::from_secs(2), all_done()).await;
    }
    ctx.env.log.flush();
    tracing::info!(worker = index, "worker stopped");
}

/// Hands the worker's access log lines to the writer a few times a second
/// (a full buffer goes at once), and takes the wall clock again now and
/// then for their time stamps; until the worker's runtime ends (the lines
/// of a drain are wanted too).
async fn flush_access_log(env: Rc<Env>) {
    if !env.log.is_on() {
        return;
    }
    let mut ticks = 0u32;
    loop {
        monoio::time::sleep(Duration::from_millis(100)).await;
        env.log.flush();
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(600) {
            env.log.resync_clock();
        }
    }
}

/// Closes tunnel sessions with no bytes either way for `idle` (when set),
/// and those whose write toward the client has been pending for `stalled`
/// (a client that stopped reading, however busy the other way is),
/// checking a few times per timeout: one task per worker instead of a
/// timer per session, which an idle session would otherwise carry.
async fn sweep_tunnels(ctx: Rc<WorkerCtx>) {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    while !ctx.env.draining.is_fired() {
        // Read each round: a reload may change the timeouts.
        let cfg = ctx.env.cfg();
        let idle_ms = cfg.ws_tunnel_idle_timeout.map(ms);
        let stalled_ms = ms(cfg.idle_timeout);
        let shortest = idle_ms.map_or(stalled_ms, |i| i.min(stalled_ms));
        let tick = Duration::from_millis((shortest / 4).clamp(50, 30_000));
        monoio::time::sleep(tick).await;
        let now = crate::pool::clock::now_ms();
        ctx.env.conns.broadcast(ConnCommand::Close(1001), |h| {
            let idle = idle_ms.is_some_and(|i| now.saturating_sub(h.last_active_ms()) >= i);
            let stalled = h
                .client_write_since_ms()
                .is_some_and(|t| now.saturating_sub(t) >= stalled_ms);
            h.kind() == ConnKind::WebSocket && (idle || stalled)
        });
    }
}

/// Closes pooled backend connections idle for `--backend-idle-timeout`
/// (a few checks per timeout, at least one a second), and those to backends
/// that left the pool (when the snapshot generation moves): one task per
/// worker, no timer per connection.
async fn sweep_idle_backends(ctx: Rc<WorkerCtx>) {
    let mut generation = ctx.env.pool.borrow_mut().current().generation;
    while !ctx.env.draining.is_fired() {
        let timeout_ms =
            u64::try_from(ctx.env.cfg().backend_idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let tick = Duration::from_millis((timeout_ms / 4).clamp(50, 1_000));
        monoio::time::sleep(tick).await;
        let snap = ctx.env.pool.borrow_mut().current().clone();
        if snap.generation != generation {
            generation = snap.generation;
            ctx.env.metrics.retain(&snap.backends);
            let gone = ctx
                .env
                .idle
                .retain_backends(|addr| snap.backends.iter().any(|b| b.addr == *addr));
            if gone > 0 {
                tracing::debug!(
                    worker = ctx.index,
                    gone,
                    "closed pooled connections to departed backends"
                );
            }
        }
        ctx.env.idle.sweep(crate::pool::clock::now_ms());
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

async fn accept_loop(
    ctx: Rc<WorkerCtx>,
    listener: TcpListener,
    kind: ListenerKind,
    _live: super::tasks::TaskGuard,
) {
    let mut backoff = Duration::from_millis(5);
    let mut acceptor = super::accept::Acceptor::new(listener);
    loop {
        // Take a connection permit before accepting: at the cap, wait.
        if ctx.shared.open_connections.load(Ordering::Relaxed) >= ctx.env.cfg().max_connections {
            ctx.env.metrics.shared.max_connections_waits.add(1);
        }
        // (The cap is read each time: a reload may change it.)
        while ctx.shared.open_connections.load(Ordering::Relaxed) >= ctx.env.cfg().max_connections {
            if ctx.env.draining.is_fired() {
                return;
            }
            monoio::time::sleep(Duration::from_millis(10)).await;
        }
        let Some(accepted) = acceptor.accept_unless(ctx.env.draining.wait()).await else {
            return;
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                ctx.shared.open_connections.fetch_add(1, Ordering::Relaxed);
                let live = ctx.tasks.enter();
                monoio::spawn(serve_accepted(ctx.clone(), stream, peer, kind, live));
                if ctx.env.draining.is_fired() {
                    // The last one, accepted as the drain began.
                    return;
                }
            }
            Err(e) => {
                // An accept error never ends the loop; back off on
                // exhaustion instead of spinning.
                if is_resource_exhaustion(&e) {
                    if let Some(held) = ctx.env.exhaustion_log.allow() {
                        tracing::warn!(error = %e, held, "accept: out of resources, backing off");
                    }
                    monoio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                } else {
                    tracing::debug!(error = %e, "accept error");
                }
            }
        }
    }
}

/// Gives back the connection permit, and the per-IP count when one was
/// taken, on every ending.
struct OpenConnPermit {
    shared: Arc<Shared>,
    per_ip: Option<IpAddr>,
}

impl Drop for OpenConnPermit {
    fn drop(&mut self) {
        if let Some(ip) = self.per_ip {
            self.shared.per_ip.release(ip);
        }
        self.shared.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve_accepted(
    ctx: Rc<WorkerCtx>,
    stream: TcpStream,
    peer: SocketAddr,
    kind: ListenerKind,
    _live: super::tasks::TaskGuard,
) {
    let mut permit = OpenConnPermit {
        shared: ctx.shared.clone(),
        per_ip: None,
    };
    // The control listener is exempt from the per-IP limit: its callers are
    // backend agents presenting a token, and many may share one address
    // (containers on one host, NAT). It stays under --max-connections.
    // Peers in --trusted-proxies are exempt too: every client behind such a
    // proxy arrives from its address.
    let cfg = ctx.env.cfg();
    let exempt = kind == ListenerKind::Control
        || crate::config::cidr_list_contains(&cfg.trusted_proxies, peer.ip());
    if let (Some(limit), false) = (cfg.max_connections_per_ip, exempt) {
        let ip = peer.ip().to_canonical();
        if !ctx.shared.per_ip.try_acquire(ip, limit) {
            // A refused connection does not hold a --max-connections slot
            // while it is answered: otherwise one address opening refused
            // connections fast would keep everyone else out.
            drop(permit);
            // Boxed: the refusal's timers are large and cache-aligned, and
            // would otherwise sit in every connection's task.
            let answered = Box::pin(super::refuse::refuse_over_ip_limit(
                &ctx.refusals,
                &ctx.shared.per_ip_refused,
                ctx.index,
                stream,
                ip,
                limit,
                kind,
            ))
            .await;
            let status = if answered { 429 } else { 0 };
            crate::proxy::access::refused_at_accept(&ctx.env, peer, status);
            return;
        }
        permit.per_ip = Some(ip);
    }
    let _ = stream.set_nodelay(true);
    match kind {
        ListenerKind::Plain | ListenerKind::Control => {
            crate::proxy::serve_client(ctx.env.clone(), stream, peer, kind).await
        }
        // Boxed: TLS state is large; keeping it out of the task keeps every
        // plain connection's task small.
        ListenerKind::Tls => Box::pin(serve_tls(ctx, stream, peer)).await,
    }
}

/// The TLS handshake (with the client header timeout), then the client.
async fn serve_tls(ctx: Rc<WorkerCtx>, stream: TcpStream, peer: SocketAddr) {
    // The certificates of the latest reload: handshakes under way keep
    // theirs.
    let Some(config) = Option::clone(&ctx.tls.get()) else {
        return;
    };
    let timeout = ctx.env.cfg().client_header_timeout;
    // Boxed: the handshake's state is freed once it is done.
    let accepted = Box::pin(monoio::time::timeout(
        timeout,
        crate::tls::accept(config, stream),
    ))
    .await;
    match accepted {
        Ok(Ok(tls)) => {
            ctx.env.metrics.shared.tls_handshakes.add(1);
            Box::pin(crate::proxy::serve_client(
                ctx.env.clone(),
                tls,
                peer,
                ListenerKind::Tls,
            ))
            .await
        }
        Ok(Err(e)) => {
            ctx.env.metrics.shared.tls_failures[0].add(1);
            tracing::debug!(%peer, error = %e, "TLS handshake failed")
        }
        Err(_) => {
            ctx.env.metrics.shared.tls_failures[1].add(1);
            tracing::debug!(%peer, "TLS handshake timed out")
        }
    }
}

#[cfg(test)]
#[path = "worker_sizes_tests.rs"]
mod sizes_tests;
