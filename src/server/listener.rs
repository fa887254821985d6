//! Listening sockets: one SO_REUSEPORT socket per worker per address, created
//! up front on the main thread so that a port-0 address resolves to one port
//! shared by every worker.

use std::io;
use std::net::{SocketAddr, TcpListener};

use crate::proxy::ListenerKind;
use crate::rt::listen::{bind_one, bind_reuseport};

/// One address's sockets, one per worker, all bound to the same port.
pub(crate) struct ListenerSet {
    pub(crate) kind: ListenerKind,
    pub(crate) addr: SocketAddr,
    pub(crate) per_worker: Vec<TcpListener>,
}

/// Binds `workers` sockets on `addr`; a port of 0 is resolved by the first.
pub(crate) fn bind_set(
    addr: SocketAddr,
    kind: ListenerKind,
    workers: usize,
) -> io::Result<ListenerSet> {
    let per_worker = bind_reuseport(addr, workers)?;
    let addr = per_worker[0].local_addr()?;
    Ok(ListenerSet {
        kind,
        addr,
        per_worker,
    })
}

/// A plain listener (admin, control) for a single worker.
pub(crate) fn bind_single(addr: SocketAddr) -> io::Result<TcpListener> {
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
