//! One snapshot's fewest-connections index: built once, by the first pick
//! that wants it (no other algorithm pays for it), linked into each member's
//! counters so their updates keep it current, unlinked when the snapshot is
//! dropped. Counters stay with the backends, so a rebuild loses no count.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use super::load_tree::LoadTree;
use super::stats::BackendStats;

/// The index slot of a snapshot.
#[derive(Debug, Default)]
pub(crate) struct LazyIndex {
    /// `Some(None)`: this pool cannot be indexed (too large, weights too
    /// large); picks scan.
    tree: OnceLock<Option<Arc<LoadTree>>>,
    /// A worker is building it; the others scan meanwhile, never wait.
    building: AtomicBool,
}

impl LazyIndex {
    /// The tree, built now (by `build`) if nobody has; `None` while another
    /// worker builds it or when the pool cannot be indexed.
    pub(crate) fn get_or_build(
        &self,
        build: impl FnOnce() -> Option<Arc<LoadTree>>,
    ) -> Option<&LoadTree> {
        if let Some(tree) = self.tree.get() {
            return tree.as_deref();
        }
        if self.building.swap(true, Ordering::AcqRel) {
            return None;
        }
        let _ = self.tree.set(build());
        self.tree.get().and_then(|t| t.as_deref())
    }

    /// The tree if it was built.
    pub(crate) fn built(&self) -> Option<&LoadTree> {
        self.tree.get().and_then(|t| t.as_deref())
    }

    /// The snapshot is going: its members stop feeding the tree.
    pub(crate) fn unlink<'a>(&self, members: impl Iterator<Item = &'a BackendStats>) {
        if let Some(tree) = self.built() {
            for stats in members {
                stats.unlink_from(tree);
            }
        }
    }
}
