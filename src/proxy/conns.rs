//! The worker-local table of live client connections, through which the
//! worker (drain, shutdown) and later cross-worker commands reach a
//! connection without any shared lock.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use super::session::WsSession;

/// What a connection is doing now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnKind {
    Http,
    WebSocket,
}

/// Something the worker asks a connection to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ConnCommand {
    /// Finish the request in flight, then close; idle connections close now.
    Drain,
    /// Close now; WebSocket sessions send this close code first.
    Close(u16),
    /// Close now with this code and reason (an operator's or a backend's
    /// close request, a slow consumer).
    CloseWith(u16, Rc<str>),
    /// Send the client a ping with this payload (an operator's ping).
    Ping([u8; 16]),
}

/// A connection's mailbox, held by the table and by the connection task.
pub(crate) struct ConnHandle {
    pub id: u64,
    kind: Cell<ConnKind>,
    commands: RefCell<VecDeque<ConnCommand>>,
    waker: Cell<Option<Waker>>,
    /// When bytes last went through (tunnel sessions stamp it; the worker's
    /// sweeper closes the ones idle too long).
    last_active_ms: Cell<u64>,
    /// Since when a write toward the client has been under way (0: none;
    /// tunnel sessions stamp it; the worker's sweeper closes the ones
    /// whose client stopped reading).
    client_write_since_ms: Cell<u64>,
    /// The WebSocket session this connection carries, once upgraded.
    session: RefCell<Option<Rc<WsSession>>>,
}

impl ConnHandle {
    /// The WebSocket session this connection carries, if it is one.
    pub(crate) fn session(&self) -> Option<Rc<WsSession>> {
        self.session.borrow().clone()
    }

    /// Marks the connection as carrying `session` (None: no longer).
    pub(crate) fn set_session(&self, session: Option<Rc<WsSession>>) {
        *self.session.borrow_mut() = session;
    }

    /// Records that bytes went through now.
    pub(crate) fn touch(&self) {
        self.last_active_ms.set(crate::pool::clock::now_ms());
    }

    pub(crate) fn last_active_ms(&self) -> u64 {
        self.last_active_ms.get()
    }

    /// Records that a write toward the client starts now.
    pub(crate) fn client_write_started(&self) {
        let now = crate::pool::clock::now_ms();
        self.client_write_since_ms.set(now.max(1));
    }

    /// Records that no write toward the client is under way.
    pub(crate) fn client_write_done(&self) {
        self.client_write_since_ms.set(0);
    }

    /// Since when (ms) the write toward the client under way has been
    /// pending, if one is.
    pub(crate) fn client_write_since_ms(&self) -> Option<u64> {
        Some(self.client_write_since_ms.get()).filter(|&t| t != 0)
    }

    pub(crate) fn kind(&self) -> ConnKind {
        self.kind.get()
    }

    pub(crate) fn set_kind(&self, kind: ConnKind) {
        self.kind.set(kind);
    }

    pub(crate) fn push(&self, cmd: ConnCommand) {
        self.commands.borrow_mut().push_back(cmd);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    pub(crate) fn try_next(&self) -> Option<ConnCommand> {
        self.commands.borrow_mut().pop_front()
    }

    /// Waits for the next command (one waiter: the connection task).
    pub(crate) async fn next(&self) -> ConnCommand {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// The next command, or Pending with the task's waker kept.
    pub(crate) fn poll_next(&self, cx: &mut std::task::Context<'_>) -> Poll<ConnCommand> {
        match self.commands.borrow_mut().pop_front() {
            Some(c) => Poll::Ready(c),
            None => {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        }
    }
}

/// Live connections of one worker; ids carry the worker number in the top
/// 16 bits so a command for one connection can be routed to its worker.
pub(crate) struct ConnTable {
    worker: u64,
    next: Cell<u64>,
    live: RefCell<HashMap<u64, Rc<ConnHandle>>>,
    emptied: RefCell<Vec<Waker>>,
}

impl ConnTable {
    pub(crate) fn new(worker: usize) -> Self {
        Self {
            worker: worker as u64,
            next: Cell::new(1),
            live: RefCell::new(HashMap::new()),
            emptied: RefCell::new(Vec::new()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.live.borrow().len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.live.borrow().is_empty()
    }

    /// Registers a new connection; the guard removes it when dropped.
    pub(crate) fn insert(self: &Rc<Self>) -> ConnEntry {
        let n = self.next.get();
        self.next.set(n + 1);
        let id = (self.worker << 48) | (n & ((1 << 48) - 1));
        let handle = Rc::new(ConnHandle {
            id,
            kind: Cell::new(ConnKind::Http),
            commands: RefCell::new(VecDeque::new()),
            waker: Cell::new(None),
            last_active_ms: Cell::new(crate::pool::clock::now_ms()),
            client_write_since_ms: Cell::new(0),
            session: RefCell::new(None),
        });
        self.live.borrow_mut().insert(id, handle.clone());
        ConnEntry {
            table: self.clone(),
            handle,
        }
    }

    /// Sends `cmd` to every live connection (`filter` picks which).
    pub(crate) fn broadcast(&self, cmd: ConnCommand, filter: impl Fn(&ConnHandle) -> bool) {
        let handles: Vec<Rc<ConnHandle>> = self.live.borrow().values().cloned().collect();
        for h in handles.iter().filter(|h| filter(h)) {
            h.push(cmd.clone());
        }
    }

    /// The live connection `id`, if it is one of this worker's.
    pub(crate) fn get(&self, id: u64) -> Option<Rc<ConnHandle>> {
        self.live.borrow().get(&id).cloned()
    }

    /// Every live WebSocket session of this worker, with its connection.
    pub(crate) fn sessions(&self) -> Vec<(Rc<ConnHandle>, Rc<WsSession>)> {
        self.live
            .borrow()
            .values()
            .filter_map(|h| h.session().map(|s| (h.clone(), s)))
            .collect()
    }

    /// Resolves when no connection is left.
    pub(crate) async fn wait_empty(&self) {
        poll_fn(|cx| {
            if self.is_empty() {
                Poll::Ready(())
            } else {
                self.emptied.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    fn remove(&self, id: u64) {
        let empty = {
            let mut live = self.live.borrow_mut();
            live.remove(&id);
            live.is_empty()
        };
        if empty {
            for w in self.emptied.borrow_mut().drain(..) {
                w.wake();
            }
        }
    }
}

/// Membership of one connection in its worker's table.
pub(crate) struct ConnEntry {
    table: Rc<ConnTable>,
    pub handle: Rc<ConnHandle>,
}

impl Drop for ConnEntry {
    fn drop(&mut self) {
        self.table.remove(self.handle.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_worker_and_removal_on_drop() {
        let table = Rc::new(ConnTable::new(3));
        let a = table.insert();
        let b = table.insert();
        assert_eq!(a.handle.id >> 48, 3);
        assert_ne!(a.handle.id, b.handle.id);
        assert_eq!(table.len(), 2);
        table.broadcast(ConnCommand::Drain, |_| true);
        assert_eq!(a.handle.try_next(), Some(ConnCommand::Drain));
        assert_eq!(a.handle.client_write_since_ms(), None);
        a.handle.client_write_started();
        assert!(a.handle.client_write_since_ms().is_some());
        a.handle.client_write_done();
        assert_eq!(a.handle.client_write_since_ms(), None);
        drop(a);
        drop(b);
        assert!(table.is_empty());
    }
}
