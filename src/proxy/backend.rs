//! Backend side of a proxied request: picking a backend (algorithm or sticky
//! key), connecting (plain or TLS) with a timeout, and the worker's pool of
//! idle keep-alive backend connections.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use monoio::io::{OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use monoio_rustls::TlsConnector;

pub(crate) use super::backend_stream::ConnectError;
use super::backend_stream::{connect_tls, BackendStream};

use crate::pool::clock::now_ms;
use crate::pool::Picker;
use crate::pool::{sticky, Backend, PoolSnapshot, StickyMode};
use crate::rt::io::ReadBuf;

/// Idle connections kept per backend address, per worker.
const MAX_IDLE_PER_BACKEND: usize = 128;
/// A parked connection idle this long is peeked before reuse even for a
/// replayable request.
const PEEK_AFTER_IDLE_MS: u64 = 1_000;

/// An open connection to a backend, split so both directions can run at once.
pub(crate) struct BackendConn {
    pub r: OwnedReadHalf<BackendStream>,
    pub w: OwnedWriteHalf<BackendStream>,
    pub buf: ReadBuf,
    pub addr: SocketAddr,
    /// Over TLS (pooled apart from plain connections to the same address).
    pub tls: bool,
    /// Taken from the idle pool (the backend may have closed it meanwhile).
    pub reused: bool,
    idle_since_ms: u64,
    /// The socket, for the liveness peek of a parked connection; owned by
    /// `r`/`w`, so valid as long as this value lives.
    fd: RawFd,
}

impl BackendConn {
    /// A fresh plain connection over `stream` (the flow tests' sizes).
    #[cfg(test)]
    pub(crate) fn plain_for_test(stream: TcpStream, addr: SocketAddr) -> Self {
        let fd = stream.as_raw_fd();
        let (r, w) = BackendStream::Plain(stream).into_split();
        BackendConn {
            r,
            w,
            buf: ReadBuf::with_capacity(512),
            addr,
            tls: false,
            reused: false,
            idle_since_ms: 0,
            fd,
        }
    }

    /// False when the backend closed or reset this idle connection, or sent
    /// bytes nobody asked for: reusing it would fail a request that cannot
    /// always be replayed (a streamed body). Over TLS the same holds: a
    /// backend closing cleanly first sends a close_notify alert, which is
    /// such a byte; any other late record (a key update, a session ticket
    /// sent late) also makes the connection look closed, which costs only a
    /// fresh connection and handshake, never a failed request.
    fn still_open(&self) -> bool {
        let mut byte = 0u8;
        // SAFETY: `fd` is the open socket owned by this connection's halves
        // (alive while `self` is); recv writes at most 1 byte into `byte`.
        let n = unsafe {
            libc::recv(
                self.fd,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            return err.kind() == io::ErrorKind::WouldBlock;
        }
        false
    }
}

/// Connects to `backend` within `timeout` (TCP connect and, for a TLS
/// backend, the verified handshake, together). A TLS backend needs `tls`,
/// the worker's client configuration for backends (`None`: none could be
/// loaded, and the connect fails with the reason).
pub(crate) async fn connect(
    backend: &Backend,
    tls: Option<&TlsConnector>,
    timeout: Duration,
) -> Result<BackendConn, ConnectError> {
    let addr = backend.addr;
    let Some(host) = backend.tls_name.as_deref() else {
        return match monoio::time::timeout(timeout, TcpStream::connect_addr(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                let fd = stream.as_raw_fd();
                Ok(conn_over(BackendStream::Plain(stream), fd, addr))
            }
            Ok(Err(e)) => Err(ConnectError::from_io(e)),
            Err(_) => Err(ConnectError::Timeout),
        };
    };
    // Boxed: only TLS backends pay for the handshake's state.
    let (stream, fd) = Box::pin(connect_tls(addr, host, tls, timeout)).await?;
    Ok(conn_over(stream, fd, addr))
}

/// A fresh connection over `stream`, whose socket is `fd`.
fn conn_over(stream: BackendStream, fd: RawFd, addr: SocketAddr) -> BackendConn {
    let tls = stream.is_tls();
    let (r, w) = stream.into_split();
    BackendConn {
        r,
        w,
        buf: ReadBuf::with_capacity(4 * 1024),
        addr,
        tls,
        reused: false,
        idle_since_ms: 0,
        fd,
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Idle connections by backend address. The keys are backends' own
/// addresses (configured or registered, never a client's choice), so a
/// multiply-and-rotate hash does: SipHash's guard against chosen keys cost
/// two hashes of ~200 instructions on every request.
type IdleByAddr = HashMap<SocketAddr, Vec<BackendConn>, BuildHasherDefault<AddrHasher>>;

/// The idle pool's hash of an address (FxHash's step per word written).
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// A worker's idle keep-alive connections, by backend address. A
/// connection idle for `max_idle` is neither reused nor kept: the worker
/// sweeps the pool on a timer ([`IdlePool::sweep`]), so a backend that went
/// away does not leave sockets in CLOSE_WAIT.
pub(crate) struct IdlePool {
    /// By address: plain connections in `[0]`, TLS ones in `[1]` (two
    /// maps rather than a wider key, so a plain lookup hashes no more).
    idle: [RefCell<IdleByAddr>; 2],
    max_idle_ms: std::cell::Cell<u64>,
}

impl IdlePool {
    pub(crate) fn new(max_idle: Duration) -> Self {
        IdlePool {
            idle: Default::default(),
            max_idle_ms: std::cell::Cell::new(duration_ms(max_idle)),
        }
    }

    /// Keeps connections for `max_idle` from now on (a reload changed it).
    pub(crate) fn set_max_idle(&self, max_idle: Duration) {
        self.max_idle_ms.set(duration_ms(max_idle));
    }

    /// Closes the connections idle for `max_idle` or longer at `now` (ms,
    /// `clock::now_ms`); returns how many were closed.
    pub(crate) fn sweep(&self, now: u64) -> usize {
        let max = self.max_idle_ms.get();
        let mut closed = 0;
        for idle in &self.idle {
            idle.borrow_mut().retain(|_, list| {
                let before = list.len();
                list.retain(|c| now.saturating_sub(c.idle_since_ms) < max);
                closed += before - list.len();
                !list.is_empty()
            });
        }
        closed
    }

    /// Closes the connections to every address `keep` says no to (backends
    /// that left the pool); returns how many were closed.
    pub(crate) fn retain_backends(&self, keep: impl Fn(&SocketAddr) -> bool) -> usize {
        let mut closed = 0;
        for idle in &self.idle {
            idle.borrow_mut().retain(|addr, list| {
                let kept = keep(addr);
                if !kept {
                    closed += list.len();
                }
                kept
            });
        }
        closed
    }

    /// The most recently parked connection to `backend` (its address, plain
    /// or TLS as it asks) that is young enough and that the backend has not
    /// closed meanwhile. The liveness peek (a
    /// syscall) is skipped for a request that is safe to send twice (buffered
    /// whole and idempotent: it is replayed on a fresh connection anyway),
    /// unless the connection sat idle a while. `now` is `clock::now_ms`
    /// (the pick's, read once for both).
    pub(crate) fn take(
        &self,
        backend: &Backend,
        replay_safe: bool,
        now: u64,
    ) -> Option<BackendConn> {
        let mut idle = self.idle[usize::from(backend.tls_name.is_some())].borrow_mut();
        let list = idle.get_mut(&backend.addr)?;
        while let Some(mut conn) = list.pop() {
            let idle_ms = now.saturating_sub(conn.idle_since_ms);
            let check = !replay_safe || idle_ms >= PEEK_AFTER_IDLE_MS;
            if idle_ms < self.max_idle_ms.get() && (!check || conn.still_open()) {
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// Parks a connection whose last response ended cleanly.
    pub(crate) fn put(&self, mut conn: BackendConn) {
        if !conn.buf.is_empty() {
            return; // unexpected bytes after a response: not reusable
        }
        conn.idle_since_ms = now_ms();
        let mut idle = self.idle[usize::from(conn.tls)].borrow_mut();
        let list = idle.entry(conn.addr).or_default();
        if list.len() >= MAX_IDLE_PER_BACKEND {
            list.remove(0);
        }
        list.push(conn);
    }

    /// Pooled connections, over all backends.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        let count =
            |idle: &RefCell<IdleByAddr>| idle.borrow().values().map(Vec::len).sum::<usize>();
        self.idle.iter().map(count).sum()
    }
}

/// Backend indexes already tried for one request: the first few inline
/// (no allocation for the usual request), any number after that.
#[derive(Default)]
pub(crate) struct Tried {
    inline: [usize; 8],
    len: usize,
    /// Every index once there are more than fit inline.
    spilled: Vec<usize>,
}

impl Tried {
    pub(crate) fn push(&mut self, idx: usize) {
        if self.spilled.is_empty() && self.len < self.inline.len() {
            self.inline[self.len] = idx;
            self.len += 1;
            return;
        }
        if self.spilled.is_empty() {
            self.spilled.extend_from_slice(&self.inline[..self.len]);
        }
        self.spilled.push(idx);
    }

    pub(crate) fn as_slice(&self) -> &[usize] {
        if self.spilled.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spilled
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.as_slice().len()
    }

    /// The list without one `idx`, so a stale pooled connection does not
    /// count against its backend.
    pub(crate) fn without(self, idx: usize) -> Tried {
        let mut next = Tried::default();
        let mut skipped = false;
        for &i in self.as_slice() {
            if i == idx && !skipped {
                skipped = true;
                continue;
            }
            next.push(i);
        }
        next
    }
}

/// The sticky key of a request, if the mode has one and the request carries it.
pub(crate) fn sticky_key(mode: &StickyMode, head: &[u8], peer: SocketAddr) -> Option<u64> {
    match mode {
        StickyMode::None => None,
        StickyMode::ClientIp => Some(match peer.ip() {
            std::net::IpAddr::V4(ip) => sticky::sticky_hash(&ip.octets()),
            std::net::IpAddr::V6(ip) => sticky::sticky_hash(&ip.octets()),
        }),
        StickyMode::Cookie(name) => {
            let cookie = find_header(head, "cookie")?;
            cookie_value(cookie, name.as_bytes()).map(sticky::sticky_hash)
        }
        StickyMode::Header(name) => find_header(head, name).map(sticky::sticky_hash),
    }
}

/// Value of the first header `name` in a raw request head.
fn find_header<'a>(head: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(head).ok()?;
    req.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// Value of cookie `name` in a Cookie header (`a=1; b=2`).
fn cookie_value<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (pair[..eq].trim_ascii() == name).then(|| pair[eq + 1..].trim_ascii())
    })
}

/// Picks a backend for a request at `now` (`clock::now_ms`): by sticky key
/// when there is one, else by the worker's algorithm; `None` when no
/// backend is available.
pub(crate) fn pick(
    picker: &Picker,
    snap: &PoolSnapshot,
    key: Option<u64>,
    tried: &Tried,
    now: u64,
) -> Option<(usize, Arc<Backend>)> {
    let idx = match key {
        Some(k) => sticky::pick_sticky(snap, now, k, tried.as_slice()),
        None => picker.pick(snap, now, tried.as_slice()),
    }?;
    snap.backends.get(idx).map(|b| (idx, b.clone()))
}

/// The backend `id` (a hook pinned the request to it) when it is in the
/// snapshot, available at `now` (`clock::now_ms`) and not tried yet; never
/// another one.
pub(crate) fn pick_pinned(
    snap: &PoolSnapshot,
    id: &str,
    tried: &Tried,
    now: u64,
) -> Option<(usize, Arc<Backend>)> {
    let idx = snap.position(id)?;
    let backend = snap.backends.get(idx)?;
    let fresh = !tried.as_slice().contains(&idx);
    (fresh && backend.is_available(now)).then(|| (idx, backend.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_values() {
        assert_eq!(
            cookie_value(b"a=1; sid=xyz; b=2", b"sid"),
            Some(&b"xyz"[..])
        );
        assert_eq!(cookie_value(b"sid=", b"sid"), Some(&b""[..]));
        assert_eq!(cookie_value(b"a=1", b"sid"), None);
        assert_eq!(cookie_value(b"garbage", b"sid"), None);
    }

    #[test]
    fn headers_in_raw_head() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-User: 42\r\n\r\n";
        assert_eq!(find_header(head, "x-user"), Some(&b"42"[..]));
        assert_eq!(find_header(head, "cookie"), None);
    }

    #[test]
    fn local_exhaustion_is_not_the_backends_fault() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::EADDRNOTAVAIL] {
            let e = ConnectError::from_io(io::Error::from_raw_os_error(errno));
            assert!(matches!(e, ConnectError::Local(_)), "{errno}");
        }
        let e = ConnectError::from_io(io::Error::from_raw_os_error(libc::ECONNREFUSED));
        assert!(matches!(e, ConnectError::Refused(_)));
    }

    #[test]
    fn the_idle_pool_hash_tells_addresses_apart() {
        use std::hash::BuildHasher;
        let addrs = [
            "127.0.0.1:80",
            "127.0.0.1:81",
            "127.0.0.2:80",
            "[::1]:80",
            "[::2]:80",
        ];
        let hashes: std::collections::HashSet<u64> = addrs
            .iter()
            .map(|a| {
                let addr: SocketAddr = a.parse().expect("addr");
                BuildHasherDefault::<AddrHasher>::default().hash_one(addr)
            })
            .collect();
        assert_eq!(hashes.len(), addrs.len());
    }

    #[test]
    fn tried_holds_any_count() {
        let mut t = Tried::default();
        for i in 0..20 {
            t.push(i);
            assert_eq!(t.count(), i + 1);
        }
        assert_eq!(t.as_slice(), (0..20).collect::<Vec<_>>().as_slice());
    }
}
