//! The new process's side of an upgrade: connect to the running balancer,
//! take its listening sockets (each checked: a listening TCP socket bound
//! where its description says), and, once serving on them, say "ready".

use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use super::wire::{self, Description};
use super::{check_peer, set_timeouts, Inherited, UpgradeError};

/// How long the old process may take to answer each step.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// An upgrade under way: the sockets taken, and the connection on which
/// [`Successor::ready`] tells the old process to drain. Dropped without
/// `ready`, the old process keeps serving.
pub(crate) struct Successor {
    conn: OwnedFd,
}

/// Takes the listening sockets of the balancer listening on `path`.
pub(crate) fn receive(path: &Path) -> Result<(Successor, Inherited), UpgradeError> {
    let conn = super::connect(path)?;
    check_peer(&conn)?;
    set_timeouts(&conn, STEP_TIMEOUT).map_err(|e| UpgradeError::io("timeouts", e))?;
    wire::send(&conn, wire::HELLO, None).map_err(|e| UpgradeError::io("send", e))?;
    let mut sockets = Vec::new();
    for (desc, fd) in wire::recv_sockets(&conn)? {
        sockets.push((desc, checked_listener(&desc, fd)?));
    }
    tracing::info!(
        sockets = sockets.len(),
        path = %path.display(),
        "upgrade: took the running balancer's listening sockets"
    );
    Ok((Successor { conn }, Inherited { sockets }))
}

impl Successor {
    /// Tells the old process that this one accepts on every socket; returns
    /// once it answers that it stopped accepting.
    pub(crate) fn ready(self) -> Result<(), UpgradeError> {
        wire::send(&self.conn, wire::READY, None).map_err(|e| UpgradeError::io("send", e))?;
        wire::expect(&self.conn, wire::DRAINING)
    }
}

/// A descriptor from the old process, accepted only if it is a listening
/// TCP socket bound to the address its description gives.
fn checked_listener(desc: &Description, fd: OwnedFd) -> Result<TcpListener, UpgradeError> {
    let bad =
        |what: &str| UpgradeError::Protocol(format!("socket described as {}: {what}", desc.addr));
    let sock = socket2::SockRef::from(&fd);
    let stream = sock
        .r#type()
        .map_err(|e| UpgradeError::io("socket type", e))?;
    if stream != socket2::Type::STREAM {
        return Err(bad("not a stream socket"));
    }
    let mut listening: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: listening and len are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut listening as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 || listening != 1 {
        return Err(bad("not listening"));
    }
    let local = sock
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .ok_or_else(|| bad("not a TCP socket"))?;
    if local != desc.addr {
        return Err(bad(&format!("bound to {local}")));
    }
    sock.set_nonblocking(true)
        .map_err(|e| UpgradeError::io("non-blocking", e))?;
    Ok(TcpListener::from(fd))
}
