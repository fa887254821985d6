//! In-process tests of the proxy flow: `serve_client` driven over real
//! loopback sockets inside one monoio runtime, against a scripted backend.
//! This file is the harness's frame: an `Env` built from a config tweak, a
//! client connection handed to `serve_client`, a backend listener, every
//! wait bounded so that a hang fails (conn.rs and ws_end.rs: the two ends).

mod conn;
mod http_errors;
mod http_relay;
mod sizes;
mod tunnel_relay;
mod ws_end;
mod ws_endings;
mod ws_inspect;

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::{TcpListener, TcpStream};
use monoio::task::JoinHandle;

pub use conn::{ok_response, Conn};
pub use ws_end::{no_pings, upgrade, WsEnd};

use super::env::Env;
use super::{serve_client, ListenerKind};
use crate::config::ServeConfig;
use crate::pool::registry::Registry;
use crate::pool::{BackendStats, SharedPool};

/// The longest wait for any one step (a read, a write, an accept, the end
/// of the connection task): a flow that hangs fails here.
pub const STEP: Duration = Duration::from_secs(3);
/// The longest a whole test may take.
const WHOLE: Duration = Duration::from_secs(10);

/// Runs a test body on a fresh single-thread runtime with timers (the
/// legacy driver, as the relay's other unit tests), bounded as a whole.
pub fn run<F: Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(async {
            monoio::time::timeout(WHOLE, f)
                .await
                .expect("the test did not finish in time")
        })
}

/// A scripted backend: a loopback listener the test accepts on when the
/// flow is expected to connect.
pub struct Backend {
    listener: TcpListener,
    /// Its URL as a static backend (also its id in the registry).
    pub url: String,
}

impl Backend {
    pub fn bind() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a backend");
        let addr = listener.local_addr().expect("backend address");
        Backend {
            listener,
            url: format!("http://{addr}"),
        }
    }

    /// The next connection the flow opened.
    pub async fn accept(&self) -> Conn {
        match monoio::time::timeout(STEP, self.listener.accept()).await {
            Ok(Ok((s, _))) => Conn::new("backend", s),
            Ok(Err(e)) => panic!("backend accept failed: {e}"),
            Err(_) => panic!("the flow opened no backend connection"),
        }
    }
}

/// The URL of a loopback port nobody listens on (connects are refused).
pub fn dead_backend_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("address");
    drop(l);
    format!("http://{addr}")
}

/// One worker's environment over static backends, plus its registry.
pub struct Lb {
    pub env: Rc<Env>,
    pub registry: Arc<Registry>,
    front: TcpListener,
}

impl Lb {
    /// An environment over `backends` (static URLs, weight 1) with the
    /// defaults of `ServeConfig` changed by `tweak`.
    pub fn new(backends: &[&str], tweak: impl FnOnce(&mut ServeConfig)) -> Lb {
        let mut cfg = ServeConfig {
            workers: 1,
            pin: false,
            ..ServeConfig::default()
        };
        tweak(&mut cfg);
        let pool = Arc::new(SharedPool::new());
        let registry = Arc::new(Registry::new(pool.clone()));
        for url in backends {
            registry.add_static(url, 1).expect("static backend");
        }
        let env = Env::new(
            0,
            crate::proxy::env::Common::for_test(
                Arc::new(crate::rt::live::Published::new(cfg)),
                pool,
                registry.clone(),
            ),
        );
        let front = TcpListener::bind("127.0.0.1:0").expect("bind the front");
        Lb {
            env: Rc::new(env),
            registry,
            front,
        }
    }

    /// A client connected over loopback TCP; its server half is being
    /// served by `serve_client` in the returned task.
    pub async fn connect(&self) -> (Conn, JoinHandle<()>) {
        let addr = self.front.local_addr().expect("front address");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, peer) = self.front.accept().await.expect("accept");
        let task = monoio::spawn(serve_client(
            self.env.clone(),
            server,
            peer,
            ListenerKind::Plain,
        ));
        (Conn::new("client", client), task)
    }

    /// The shared counters of a backend.
    pub fn stats(&self, url: &str) -> Arc<BackendStats> {
        self.registry.stats(url).expect("a known backend")
    }

    /// Backends the pool would pick from now.
    pub fn available(&self) -> usize {
        let snap = self.env.pool.borrow_mut().current().clone();
        snap.available_count(crate::pool::clock::now_ms())
    }
}

/// Waits for a connection task to end.
pub async fn ended(task: JoinHandle<()>) {
    monoio::time::timeout(STEP, task)
        .await
        .expect("the connection task did not end");
}
