//! The upgrade steps of a balancer's start, in order: [`Upgrade::begin`]
//! (take the old process's sockets, or claim the upgrade socket path),
//! [`Upgrade::take_admin`] and [`Upgrade::inherited`] while listeners are
//! set up, then [`Upgrade::finish`] once serving ("ready" to the old
//! process, and the upgrade socket for the next successor).

use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

use super::successor::{self, Successor};
use super::{predecessor, Description, Handover, Inherited, Role, UpgradeError, UpgradeListener};
use crate::config::ServeConfig;
use crate::server::Shared;

/// A start's upgrade state (empty without `upgrade_socket`).
#[derive(Default)]
pub(crate) struct Upgrade {
    path: Option<PathBuf>,
    successor: Option<Successor>,
    inherited: Inherited,
    listener: Option<UpgradeListener>,
    admin: Option<(Description, OwnedFd)>,
}

impl Upgrade {
    /// With `upgrade`: takes the sockets of the balancer on the upgrade
    /// socket. Without: claims the upgrade socket's path (refused when a
    /// balancer already serves there), before anything listens.
    pub(crate) fn begin(cfg: &ServeConfig) -> Result<Upgrade, UpgradeError> {
        let Some(path) = cfg.upgrade_socket.clone() else {
            return Ok(Upgrade::default());
        };
        let mut up = Upgrade::default();
        if cfg.upgrade {
            let (successor, inherited) = successor::receive(&path)?;
            up.successor = Some(successor);
            up.inherited = inherited;
        } else {
            up.listener = Some(UpgradeListener::bind(&path, false)?);
        }
        up.path = Some(path);
        Ok(up)
    }

    /// The handed-over admin listener for `addr`, if there is one (a copy
    /// is kept for the next successor either way: see [`Upgrade::keep_admin`]).
    pub(crate) fn take_admin(&mut self, addr: SocketAddr) -> Option<TcpListener> {
        let mut taken = self.inherited.take(addr, Role::Admin).into_iter();
        let first = taken.next();
        if taken.next().is_some() {
            tracing::warn!(%addr, "upgrade: more than one admin socket handed over; extra ones closed");
        }
        first
    }

    /// Keeps a duplicate of the admin listener for the next successor.
    pub(crate) fn keep_admin(&mut self, l: &TcpListener, addr: SocketAddr) {
        if self.path.is_none() {
            return;
        }
        let mut kept = Handover::default();
        kept.keep(Role::Admin, 0, addr, l);
        self.admin = kept.sockets.pop();
    }

    /// The sockets handed over and not yet taken.
    pub(crate) fn inherited(&mut self) -> &mut Inherited {
        &mut self.inherited
    }

    /// Once this process serves: closes the handed-over sockets nothing
    /// took, tells the old process to drain, and listens on the upgrade
    /// socket for the next successor with `handover` (and the admin one).
    pub(crate) fn finish(
        mut self,
        shared: &Arc<Shared>,
        mut handover: Handover,
    ) -> Result<(), UpgradeError> {
        self.inherited.close_unused();
        let Some(path) = self.path.take() else {
            return Ok(());
        };
        handover.sockets.extend(self.admin.take());
        if let Some(successor) = self.successor.take() {
            match successor.ready() {
                Ok(()) => tracing::info!("upgrade: the old process stopped accepting"),
                Err(e) => {
                    tracing::warn!(error = %e, "upgrade: the old process did not confirm its drain")
                }
            }
        }
        let listener = match self.listener.take() {
            Some(l) => l,
            None => match UpgradeListener::bind(&path, true) {
                Ok(l) => l,
                Err(e) => {
                    // Serving already: only a later upgrade is lost.
                    tracing::error!(error = %e, "upgrade: cannot take over the upgrade socket");
                    return Ok(());
                }
            },
        };
        predecessor::spawn(shared.clone(), listener, handover)
            .map_err(|e| UpgradeError::io("thread", e))
    }
}
