//! Listening sockets: one SO_REUSEPORT socket per worker per address, created
//! up front on the main thread so that a port-0 address resolves to one port
//! shared by every worker. During an upgrade, the sockets handed over by the
//! old process are taken instead, spread over the workers.

use std::io;
use std::net::{SocketAddr, TcpListener};

use super::upgrade::{Inherited, Role};
use crate::proxy::ListenerKind;
use crate::rt::listen::{bind_one, bind_reuseport, BACKLOG};

/// One address's sockets, each with the worker that accepts on it, all
/// bound to the same port.
pub(crate) struct ListenerSet {
    pub(crate) kind: ListenerKind,
    pub(crate) addr: SocketAddr,
    pub(crate) per_worker: Vec<(usize, TcpListener)>,
}

/// Binds `workers` sockets on `addr`; a port of 0 is resolved by the first.
pub(crate) fn bind_set(
    addr: SocketAddr,
    kind: ListenerKind,
    workers: usize,
) -> io::Result<ListenerSet> {
    let per_worker: Vec<(usize, TcpListener)> = bind_reuseport(addr, workers)?
        .into_iter()
        .enumerate()
        .collect();
    let addr = per_worker[0].1.local_addr()?;
    Ok(ListenerSet {
        kind,
        addr,
        per_worker,
    })
}

/// The sockets for `addr`: those the old process handed over when there
/// are any (every one accepted on: a worker may get several), plus new
/// ones in the same SO_REUSEPORT group for workers left without; otherwise
/// a fresh [`bind_set`].
pub(crate) fn take_or_bind(
    inherited: &mut Inherited,
    addr: SocketAddr,
    kind: ListenerKind,
    workers: usize,
) -> io::Result<ListenerSet> {
    let handed = inherited.take(addr, role_of(kind));
    if handed.is_empty() {
        return bind_set(addr, kind, workers);
    }
    let workers = workers.max(1);
    let count = handed.len();
    let mut per_worker: Vec<(usize, TcpListener)> = handed
        .into_iter()
        .enumerate()
        .map(|(i, l)| (i % workers, l))
        .collect();
    for worker in count..workers {
        per_worker.push((worker, bind_one(addr, BACKLOG)?));
    }
    tracing::info!(%addr, handed = count, workers, "listening on handed-over sockets");
    Ok(ListenerSet {
        kind,
        addr,
        per_worker,
    })
}

/// The hand-over role of a listener kind.
pub(crate) fn role_of(kind: ListenerKind) -> Role {
    match kind {
        ListenerKind::Plain => Role::Plain,
        ListenerKind::Tls => Role::Tls,
        ListenerKind::Control => Role::Control,
    }
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
        for (_, l) in &set.per_worker {
            assert_eq!(l.local_addr().unwrap(), set.addr);
        }
    }

    #[test]
    fn handed_sockets_are_all_used_and_missing_workers_get_new_ones() {
        let old = bind_set("127.0.0.1:0".parse().unwrap(), ListenerKind::Plain, 3).unwrap();
        let addr = old.addr;
        let handed = |n: usize| {
            let mut inh = Inherited::default();
            for (w, l) in old.per_worker.iter().take(n) {
                inh.push_for_test(Role::Plain, *w, addr, l.try_clone().unwrap());
            }
            inh
        };
        // Three sockets, two workers: every socket is accepted on.
        let set = take_or_bind(&mut handed(3), addr, ListenerKind::Plain, 2).unwrap();
        let workers: Vec<usize> = set.per_worker.iter().map(|(w, _)| *w).collect();
        assert_eq!(workers, [0, 1, 0]);
        // Two sockets, four workers: two more join the group.
        let set = take_or_bind(&mut handed(2), addr, ListenerKind::Plain, 4).unwrap();
        let workers: Vec<usize> = set.per_worker.iter().map(|(w, _)| *w).collect();
        assert_eq!(workers, [0, 1, 2, 3]);
        for (_, l) in &set.per_worker {
            assert_eq!(l.local_addr().unwrap(), addr);
        }
    }
}
