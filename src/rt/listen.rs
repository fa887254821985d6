//! Listening sockets for thread-per-core servers: the same address bound
//! once per thread with SO_REUSEPORT, so the kernel spreads accepts over the
//! threads with no accept thread and no hand-off.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Listen backlog of each socket [`bind_reuseport`] makes.
pub const BACKLOG: i32 = 4096;

/// Binds one non-blocking listening socket on `addr` with SO_REUSEADDR and
/// SO_REUSEPORT set (IPv6 addresses only, no v4-mapped), listening with
/// `backlog` pending connections.
pub fn bind_one(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// Binds `n` (at least one) SO_REUSEPORT sockets on `addr`, one per thread;
/// a port of 0 is resolved by the first and shared by the rest, so every
/// socket reports the same `local_addr()`. Hand each to its thread and
/// adopt it there (e.g. `monoio::net::TcpListener::from_std`).
pub fn bind_reuseport(addr: SocketAddr, n: usize) -> io::Result<Vec<TcpListener>> {
    let first = bind_one(addr, BACKLOG)?;
    let resolved = first.local_addr()?;
    let mut all = Vec::with_capacity(n.max(1));
    all.push(first);
    for _ in 1..n {
        all.push(bind_one(resolved, BACKLOG)?);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_resolves_once_for_every_socket() {
        let all = bind_reuseport("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        assert_eq!(all.len(), 3);
        let addr = all[0].local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        for l in &all {
            assert_eq!(l.local_addr().unwrap(), addr);
        }
    }
}
