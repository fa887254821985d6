//! `wslb floor`: the measurement floor of perf/run.sh, not a proxy.
//!
//! One thread, one monoio runtime (io_uring with the same ring settings as
//! wslb's workers; the legacy driver when io_uring is unavailable). Each
//! client connection is paired with a backend connection, taken from a small
//! pool of idle ones or freshly opened, and bytes are copied both ways with
//! no parsing at all: 16 KiB owned buffers, `read` then `write_all`. It is
//! what moving the bytes through the kernel costs, the figure wslb and the
//! peers are compared to.
//!
//! A backend connection goes back to the pool when its client closes first,
//! no request is waiting for its answer (the backend spoke after the client
//! last did), and its first answer was not a `101` (after an upgrade the
//! connection is a WebSocket, not reusable). When it is taken from the pool,
//! a non-blocking peek drops it if the backend closed it or left bytes on it
//! meanwhile. No limits, no timeouts: when either side ends, the other is
//! shut.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt, Splitable};
use monoio::net::{ListenerOpts, TcpListener, TcpStream};

/// Copy buffer size, each direction.
const BUF: usize = 16 * 1024;
/// Most idle backend connections kept.
const POOL_MAX: usize = 1024;

/// Idle backend connections, shared by the connections of the one thread.
type Pool = Rc<RefCell<Vec<TcpStream>>>;

/// Runs the floor forwarder until the process is killed.
pub fn run(listen: SocketAddr, backend: SocketAddr) -> Result<(), String> {
    let force_legacy = std::env::var("WSLB_DRIVER").is_ok_and(|v| v == "legacy");
    if !force_legacy {
        for tuned in [true, false] {
            let mut builder = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new();
            if tuned {
                let mut b = io_uring::IoUring::builder();
                b.setup_coop_taskrun().setup_single_issuer();
                builder = builder.uring_builder(b);
            }
            match builder.with_entries(4096).enable_timer().build() {
                Ok(mut rt) => return rt.block_on(serve(listen, backend)),
                Err(e) => tracing::warn!(tuned, error = %e, "cannot set up this io_uring ring"),
            }
        }
        tracing::warn!("io_uring unavailable, using the legacy (epoll) driver");
    }
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    rt.block_on(serve(listen, backend))
}

async fn serve(listen: SocketAddr, backend: SocketAddr) -> Result<(), String> {
    let opts = ListenerOpts::new().backlog(4096).reuse_port(false);
    let listener =
        TcpListener::bind_with_config(listen, &opts).map_err(|e| format!("bind {listen}: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("local address: {e}"))?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening http {addr}");
        let _ = writeln!(out, "ready");
        let _ = out.flush();
    }
    tracing::info!(%addr, %backend, "floor forwarder listening");
    let pool: Pool = Rc::new(RefCell::new(Vec::new()));
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                monoio::spawn(forward(client, backend, pool.clone()));
            }
            Err(e) => {
                // Out of descriptors and the like: wait a little, go on.
                tracing::warn!(error = %e, "accept failed");
                monoio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// An idle pooled connection still clean (open, nothing unread), or a new one.
async fn backend_conn(backend: SocketAddr, pool: &Pool) -> std::io::Result<TcpStream> {
    loop {
        let Some(conn) = pool.borrow_mut().pop() else {
            break;
        };
        let mut byte = 0u8;
        // SAFETY: recv(2) into one byte we own, on a descriptor the stream owns.
        let n = unsafe {
            libc::recv(
                conn.as_raw_fd(),
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        let would_block =
            n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN);
        if would_block {
            return Ok(conn);
        }
    }
    let conn = TcpStream::connect_addr(backend).await?;
    let _ = conn.set_nodelay(true);
    Ok(conn)
}

/// How a pair's copying ended.
enum End {
    /// The client closed first: the backend connection may be reusable.
    ClientClosed,
    /// The backend closed, or an error on either side.
    Done,
}

async fn forward(client: TcpStream, backend: SocketAddr, pool: Pool) {
    let _ = client.set_nodelay(true);
    let server = match backend_conn(backend, &pool).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot connect to the backend");
            return;
        }
    };
    // Client bytes sent since the backend last spoke: an answer is owed.
    let owed = Cell::new(false);
    // The backend's first bytes were a 101: the connection is a WebSocket now.
    let upgraded = Cell::new(false);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let mut buf = Vec::with_capacity(BUF);
        loop {
            let (res, b) = cr.read(buf).await;
            buf = b;
            match res {
                Ok(0) => return End::ClientClosed,
                Ok(_) => owed.set(true),
                Err(_) => return End::Done,
            }
            let (res, b) = sw.write_all(buf).await;
            buf = b;
            if res.is_err() {
                return End::Done;
            }
            buf.clear();
        }
    };
    let down = async {
        let mut buf = Vec::with_capacity(BUF);
        let mut first = true;
        loop {
            let (res, b) = sr.read(buf).await;
            buf = b;
            match res {
                Ok(0) | Err(_) => return End::Done,
                Ok(_) => {
                    if first {
                        upgraded.set(buf.starts_with(b"HTTP/1.1 101"));
                        first = false;
                    }
                    owed.set(false);
                }
            }
            let (res, b) = cw.write_all(buf).await;
            buf = b;
            if res.is_err() {
                return End::Done;
            }
            buf.clear();
        }
    };
    let end = monoio::select! {
        e = up => e,
        e = down => e,
    };
    // Dropping the client's halves closes it; the backend's go back to the
    // pool when they are clean, and are closed otherwise.
    drop((cr, cw));
    if matches!(end, End::ClientClosed) && !owed.get() && !upgraded.get() {
        if let Ok(server) = sr.reunite(sw) {
            let mut pool = pool.borrow_mut();
            if pool.len() < POOL_MAX {
                pool.push(server);
            }
        }
    }
}
