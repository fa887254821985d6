//! The running process's side of an upgrade: a thread that waits on the
//! upgrade socket for a successor, hands it every listening socket, and on
//! its "ready" starts this process's drain. A successor that fails or hangs
//! up before "ready" changes nothing: this process keeps serving and
//! waits for the next one.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::wire::{self, Description};
use super::{check_peer, set_timeouts, Handover, UpgradeError, UpgradeListener};
use crate::rt::notify::Phase;
use crate::server::Shared;

/// How long a successor may take to ask for the sockets.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a successor may take to start serving on them.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the thread checks whether the process is draining anyway.
const POLL_MS: libc::c_int = 200;

/// Serves successors on `listener` in a thread of its own until this
/// process drains (by an upgrade or otherwise).
pub(crate) fn spawn(
    shared: Arc<Shared>,
    listener: UpgradeListener,
    handover: Handover,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("wslb-upgrade".into())
        .spawn(move || {
            tracing::info!(path = %listener.path.display(), "upgrade socket ready");
            if !serve(&shared, &listener, &handover.sockets) {
                // Shut down without a successor: the path goes too. (After
                // a hand-over it is the successor's to replace.)
                listener.remove_if_ours();
            }
        })
        .map(|_| ())
}

/// Waits for successors until one takes over (true) or this process
/// drains on its own (false).
fn serve(shared: &Shared, listener: &UpgradeListener, sockets: &[(Description, OwnedFd)]) -> bool {
    while shared.lifecycle.phase() == Phase::Running {
        let Some(conn) = accept(&listener.sock) else {
            continue;
        };
        match hand_over(shared, &conn, sockets) {
            Ok(()) => {
                tracing::info!("upgrade: the successor is ready; draining");
                return true;
            }
            Err(e) => {
                tracing::warn!(error = %e, "upgrade: successor failed, this process keeps serving")
            }
        }
    }
    false
}

/// Waits a moment for a connection on the (non-blocking) listener.
fn accept(listener: &OwnedFd) -> Option<OwnedFd> {
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: pfd is one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, POLL_MS) };
    if n <= 0 {
        return None;
    }
    // SAFETY: accept4 on our listening socket with no address wanted; a
    // non-negative result is a new descriptor that we own from here on.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "upgrade socket: accept");
        return None;
    }
    // SAFETY: fd was just returned by accept4 and is owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One successor: check it, send the sockets, wait for "ready", drain.
fn hand_over(
    shared: &Shared,
    conn: &OwnedFd,
    sockets: &[(Description, OwnedFd)],
) -> Result<(), UpgradeError> {
    check_peer(conn)?;
    set_timeouts(conn, HELLO_TIMEOUT).map_err(|e| UpgradeError::io("timeouts", e))?;
    wire::expect(conn, wire::HELLO)?;
    tracing::info!(
        sockets = sockets.len(),
        "upgrade: a successor asks for the listening sockets"
    );
    wire::send_sockets(conn, sockets)?;
    set_timeouts(conn, READY_TIMEOUT).map_err(|e| UpgradeError::io("timeouts", e))?;
    wire::expect(conn, wire::READY)?;
    // The successor accepts on every socket: stop accepting here. The
    // admin listener follows the workers out (see `handed_over`).
    shared.handed_over.store(true, Ordering::Release);
    shared.lifecycle.advance(Phase::Draining);
    if let Err(e) = wire::send(conn, wire::DRAINING, None) {
        tracing::debug!(error = %e, "upgrade: the successor left before our answer");
    }
    Ok(())
}
