//! Listening sockets: one SO_REUSEPORT socket per worker per address, created
//! up front on the main thread so that a port-0 address resolves to one port
//! shared by every worker.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

use crate::proxy::ListenerKind;

/// One address's sockets, one per worker, all bound to the same port.
pub struct ListenerSet {
    pub kind: ListenerKind,
    pub addr: SocketAddr,
    pub per_worker: Vec<TcpListener>,
}

fn bind_one(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
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

/// Binds `workers` sockets on `addr`; a port of 0 is resolved by the first.
pub fn bind_set(addr: SocketAddr, kind: ListenerKind, workers: usize) -> io::Result<ListenerSet> {
    let first = bind_one(addr, 4096)?;
    let resolved = first.local_addr()?;
    let mut per_worker = vec![first];
    for _ in 1..workers {
        per_worker.push(bind_one(resolved, 4096)?);
    }
    Ok(ListenerSet {
        kind,
        addr: resolved,
        per_worker,
    })
}

/// A plain listener (admin, control) for a single worker.
pub fn bind_single(addr: SocketAddr) -> io::Result<TcpListener> {
    bind_one(addr, 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_resolves_once_for_every_worker() {
        let set = bind_set("127.0.0.1:0".parse().unwrap(), ListenerKind::Plain, 3).unwrap();
        assert_ne!(set.addr.port(), 0);
        for l in &set.per_worker {
            assert_eq!(l.local_addr().unwrap(), set.addr);
        }
    }
}
