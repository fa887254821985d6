//! Binary upgrade without downtime. A balancer started with
//! `--upgrade-socket PATH` listens there (a unix socket, mode 0600, peers of
//! our own uid only) for a successor; `wslb serve --upgrade` connects, takes
//! every listening socket (descriptors passed with `SCM_RIGHTS`, see
//! [`wire`]), starts its workers on them, and says "ready"; the old process
//! then stops accepting and drains. The sockets themselves never close, so
//! the kernel's accept queues carry every connection attempt across.
//!
//! [`successor`] is the new process's side, [`predecessor`] the old one's.

pub(crate) mod predecessor;
mod start;
pub(crate) mod successor;
pub(crate) mod wire;

pub(crate) use start::Upgrade;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

pub(crate) use wire::{Description, Role};

/// Why an upgrade hand-over failed.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// A system call on the upgrade socket failed.
    #[error("upgrade socket: {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        source: io::Error,
    },
    /// The peer broke the hand-over protocol.
    #[error("upgrade socket: {0}")]
    Protocol(String),
    /// The peer runs as another user.
    #[error("upgrade socket: peer runs as uid {peer}, not {ours}")]
    Uid {
        /// The peer's uid.
        peer: u32,
        /// Ours.
        ours: u32,
    },
    /// Another balancer already listens on the upgrade socket.
    #[error("upgrade socket {0}: a balancer is running there (start this one with --upgrade)")]
    InUse(PathBuf),
    /// The path exists and is not a socket.
    #[error("upgrade socket {0}: exists and is not a socket")]
    NotASocket(PathBuf),
}

impl UpgradeError {
    pub(crate) fn io(what: &'static str, source: io::Error) -> Self {
        UpgradeError::Io { what, source }
    }
}

/// Listening sockets received from the old process, waiting to be taken by
/// the addresses this process's configuration lists.
#[derive(Default)]
pub(crate) struct Inherited {
    sockets: Vec<(Description, TcpListener)>,
}

impl Inherited {
    /// Takes every inherited socket bound to `addr`, in the old process's
    /// worker order (empty when none was handed over).
    pub(crate) fn take(&mut self, addr: SocketAddr, role: Role) -> Vec<TcpListener> {
        let (mut mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.sockets)
            .into_iter()
            .partition(|(d, _)| d.addr == addr);
        self.sockets = rest;
        mine.sort_by_key(|(d, _)| d.worker);
        if let Some((d, _)) = mine.iter().find(|(d, _)| d.role != role) {
            tracing::warn!(%addr, was = ?d.role, now = ?role, "upgrade: a handed-over socket changes its kind");
        }
        mine.into_iter().map(|(_, l)| l).collect()
    }

    /// Closes the sockets no address took, with a warning for each.
    pub(crate) fn close_unused(&mut self) {
        for (d, _) in self.sockets.drain(..) {
            tracing::warn!(addr = %d.addr, kind = ?d.role, "upgrade: handed-over socket not in this configuration: closed");
        }
    }
}

/// The listening sockets this process hands to its own successor
/// (duplicates of the descriptors its workers accept on).
#[derive(Default)]
pub(crate) struct Handover {
    pub(crate) sockets: Vec<(Description, OwnedFd)>,
}

impl Handover {
    /// Keeps a duplicate of `listener` to hand over later.
    pub(crate) fn keep(&mut self, role: Role, worker: usize, addr: SocketAddr, l: &TcpListener) {
        match l.try_clone() {
            Ok(dup) => self.sockets.push((
                Description {
                    role,
                    worker: u32::try_from(worker).unwrap_or(u32::MAX),
                    addr,
                },
                OwnedFd::from(dup),
            )),
            Err(e) => {
                tracing::warn!(%addr, error = %e, "upgrade: cannot keep a listening socket for a successor")
            }
        }
    }
}

/// Our effective uid.
fn our_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Refuses a peer that does not run as our uid (`SO_PEERCRED`).
pub(crate) fn check_peer(sock: &OwnedFd) -> Result<(), UpgradeError> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(UpgradeError::io(
            "peer credentials",
            io::Error::last_os_error(),
        ));
    }
    let ours = our_uid();
    if cred.uid != ours {
        return Err(UpgradeError::Uid {
            peer: cred.uid,
            ours,
        });
    }
    Ok(())
}

/// Bounds every blocking read and write on `sock`.
pub(crate) fn set_timeouts(sock: &OwnedFd, timeout: std::time::Duration) -> io::Result<()> {
    let s = socket2::SockRef::from(sock);
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))
}

/// A unix packet socket.
fn packet_socket() -> io::Result<socket2::Socket> {
    socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None)
}

/// The upgrade socket this process listens on, and the identity of the file
/// it bound (so that it removes the path at exit only if it is still its own).
pub(crate) struct UpgradeListener {
    pub(crate) sock: OwnedFd,
    pub(crate) path: PathBuf,
    identity: (u64, u64),
}

impl UpgradeListener {
    /// Listens on `path`: binds a temporary name beside it, restricts it to
    /// our user (0600), then renames it over `path` in one step, so the path
    /// never names a socket others could use, nor no socket at all.
    /// With `replace` false a live socket already at `path` is an error.
    pub(crate) fn bind(path: &Path, replace: bool) -> Result<UpgradeListener, UpgradeError> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(UpgradeError::NotASocket(path.to_path_buf()));
            }
            if !replace && connect(path).is_ok() {
                return Err(UpgradeError::InUse(path.to_path_buf()));
            }
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let sock = packet_socket().map_err(|e| UpgradeError::io("socket", e))?;
        let addr = socket2::SockAddr::unix(&tmp).map_err(|e| UpgradeError::io("path", e))?;
        sock.bind(&addr).map_err(|e| UpgradeError::io("bind", e))?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| sock.listen(4))
            .and_then(|()| sock.set_nonblocking(true))
            .and_then(|()| std::fs::rename(&tmp, path))
            .and_then(|()| std::fs::symlink_metadata(path));
        match placed {
            Ok(meta) => Ok(UpgradeListener {
                sock: sock.into(),
                path: path.to_path_buf(),
                identity: (meta.dev(), meta.ino()),
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(UpgradeError::io("listen", e))
            }
        }
    }

    /// Removes the path if it still names the socket this process bound (a
    /// successor that took it over has put its own there).
    pub(crate) fn remove_if_ours(&self) {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.identity {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Connects to the upgrade socket at `path`.
pub(crate) fn connect(path: &Path) -> Result<OwnedFd, UpgradeError> {
    let sock = packet_socket().map_err(|e| UpgradeError::io("socket", e))?;
    let addr = socket2::SockAddr::unix(path).map_err(|e| UpgradeError::io("path", e))?;
    sock.connect(&addr)
        .map_err(|e| UpgradeError::io("connect", e))?;
    Ok(sock.into())
}

#[cfg(test)]
impl Inherited {
    /// Adds a socket as if the old process had handed it over.
    pub(crate) fn push_for_test(
        &mut self,
        role: Role,
        worker: usize,
        addr: SocketAddr,
        l: TcpListener,
    ) {
        let worker = u32::try_from(worker).unwrap_or(u32::MAX);
        self.sockets.push((Description { role, worker, addr }, l));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("wslb-unit-{}-{name}.sock", std::process::id()))
    }

    #[test]
    fn the_socket_path_is_ours_alone_and_never_taken_from_a_live_balancer() {
        let path = temp_path("claim");
        let _ = std::fs::remove_file(&path);
        let first = UpgradeListener::bind(&path, false).expect("bind");
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A live listener there: refused without `replace`.
        assert!(matches!(
            UpgradeListener::bind(&path, false),
            Err(UpgradeError::InUse(_))
        ));
        // A successor replaces it; the first then leaves the path alone.
        let second = UpgradeListener::bind(&path, true).expect("replace");
        first.remove_if_ours();
        assert!(path.exists());
        // A stale socket (its listener gone) is replaced without `replace`.
        drop(second);
        let third = UpgradeListener::bind(&path, false).expect("stale socket replaced");
        third.remove_if_ours();
        assert!(!path.exists());
        // A file that is not a socket is never replaced.
        std::fs::write(&path, b"not a socket").expect("write");
        assert!(matches!(
            UpgradeListener::bind(&path, true),
            Err(UpgradeError::NotASocket(_))
        ));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_peer_of_our_own_uid_passes() {
        let (a, _b) = socket2::Socket::pair(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None)
            .expect("socketpair");
        check_peer(&OwnedFd::from(a)).expect("same uid");
    }
}
