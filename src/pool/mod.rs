//! Backend pool and pick algorithms: the immutable pool snapshot every worker
//! caches, the shared per-backend atomic counters, the pick algorithms, sticky
//! sessions and passive health. No I/O and no runtime in here.

pub(crate) mod algorithm;
pub(crate) mod cidr;
pub(crate) mod clock;
mod fewest;
pub(crate) mod health;
mod load_index;
mod load_tree;
pub(crate) mod probe;
pub(crate) mod registry;
pub(crate) mod snapshot;
pub(crate) mod stats;
pub(crate) mod sticky;

pub use algorithm::{Algorithm, AlgorithmParseError, Picker};
pub use probe::{Health, HealthCheck};
pub use snapshot::{Backend, PoolSnapshot, Source};
pub use stats::{ActiveGuard, BackendStats};
pub use sticky::{pick_sticky, sticky_hash, StickyMode, StickyParseError};

pub(crate) use snapshot::{LocalPool, SharedPool};
