//! `wslb serve`: starts a balancer from the validated flags, prints the
//! machine-readable `listening KIND ADDR` lines and `ready`, and turns the
//! first SIGTERM/SIGINT into a graceful drain (a second one exits at once);
//! SIGHUP reloads the configuration (read again through `source`);
//! SIGUSR1 reopens the access log file.

use std::io::Write;

use wslb::{Balancer, ServeConfig};

/// Runs the balancer until a signal and the drain that follows; `source`
/// reads the configuration again for a reload (SIGHUP, `POST /api/reload`).
pub fn run(
    cfg: ServeConfig,
    source: impl Fn() -> Result<ServeConfig, String> + Send + Sync + 'static,
) -> Result<(), String> {
    // Signal handlers first: they need descriptors of their own, which a
    // flood of connections could otherwise take once workers accept.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGUSR1,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let lb = Balancer::start(cfg, None).map_err(|e| match e {
        wslb::Error::Admin(e) => format!("admin API: cannot start: {e}"),
        e => e.to_string(),
    })?;
    // Machine-readable lines for scripts and tests, then "ready".
    {
        let mut out = std::io::stdout().lock();
        for (kind, addr) in lb.local_addrs() {
            let _ = writeln!(out, "listening {kind} {addr}");
            tracing::info!(kind, %addr, "listening");
        }
        if let Some(addr) = lb.admin_addr() {
            let _ = writeln!(out, "listening admin {addr}");
            tracing::info!(api = %wslb::admin_api_url(addr), "admin API");
        }
        let _ = writeln!(out, "ready");
        let _ = out.flush();
    }
    let handle = lb.handle();
    handle.set_reload_source(source);
    std::thread::Builder::new()
        .name("wslb-signals".into())
        .spawn(move || {
            let mut count = 0;
            for sig in signals.forever() {
                if sig == signal_hook::consts::SIGHUP {
                    // The reload logs its summary or why it was refused.
                    tracing::info!("SIGHUP: reloading the configuration");
                    let _ = handle.reload_from_source();
                    continue;
                } else if sig == signal_hook::consts::SIGUSR1 {
                    handle.reopen_access_log();
                    continue;
                }
                count += 1;
                if count == 1 {
                    tracing::info!(signal = sig, "shutting down: draining");
                    handle.drain();
                } else {
                    tracing::warn!("second signal: exiting now");
                    std::process::exit(1);
                }
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    lb.wait();
    Ok(())
}
