//! `wslb echo`: the demo and test backend. HTTP: `GET /` answers its name,
//! POST/PUT echo the body (streamed, same framing), `GET /bytes/N` sends N
//! bytes, `GET /delay/MS` answers after a pause, `GET /status/N` answers
//! status N, `GET /headers` returns the request head it received. Any
//! WebSocket upgrade gets an echo session (see `ws`); one on `/headers`
//! starts with a message naming the backend and the head it received; one
//! with `?subscribe=a,b` or `X-Wslb-Subscribe: a, b` is answered with
//! `X-Wslb-Channels: a, b` (the message hub's channel header).

mod http;
mod subscribe;
mod ws;

use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use wslb::rt::listen::bind_reuseport;

/// How to run the echo backend.
#[derive(Clone, Debug)]
pub struct EchoConfig {
    pub listen: SocketAddr,
    pub name: String,
    pub workers: usize,
    /// Register with balancers (bindings empty: the listen port is advertised).
    pub agent: Option<wslb::agent::AgentConfig>,
}

/// Runs the echo backend forever (until the process is killed).
pub fn run_echo(cfg: EchoConfig) -> std::io::Result<()> {
    let listeners = bind_reuseport(cfg.listen, cfg.workers.max(1))?;
    let addr = listeners[0].local_addr()?;
    // Live connection count, reported as load by the agent.
    let load = Arc::new(AtomicU32::new(0));
    let _agent = match cfg.agent {
        Some(mut a) => {
            if a.bindings.is_empty() {
                a.bindings = vec![wslb::agent::port_binding(addr.port())];
            }
            Some(wslb::agent::spawn(a, load.clone()).map_err(std::io::Error::other)?)
        }
        None => None,
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening http {addr}");
        let _ = writeln!(out, "ready");
        let _ = out.flush();
    }
    tracing::info!(addr = %addr, name = %cfg.name, "echo backend listening");
    let mut threads = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let name_owned = cfg.name.clone();
        let load = load.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("echo-{i}"))
                .spawn(move || run_thread(listener, name_owned, load))?,
        );
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn run_thread(listener: std::net::TcpListener, name: String, load: Arc<AtomicU32>) {
    let rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build();
    let mut rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "echo: cannot start runtime");
            return;
        }
    };
    rt.block_on(async move {
        let listener = match monoio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "echo: cannot adopt listener");
                return;
            }
        };
        let name: Rc<str> = Rc::from(name.as_str());
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    monoio::spawn(http::serve(stream, peer, name.clone(), load.clone()));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "echo: accept error");
                    monoio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        }
    });
}
