//! Backend pool and pick algorithms: the immutable pool snapshot every worker
//! caches, the shared per-backend atomic counters, the pick algorithms, sticky
//! sessions and passive health. No I/O and no runtime in here.

pub mod algorithm;
pub mod cidr;
pub mod clock;
pub mod health;
pub mod snapshot;
pub mod stats;
pub mod sticky;

pub use algorithm::{Algorithm, AlgorithmParseError, Picker};
pub use clock::{now_ms, unix_ms};
pub use health::{record_failure, record_success, HealthPolicy};
pub use snapshot::{Backend, LocalPool, PoolSnapshot, SharedPool, Source};
pub use stats::{ActiveGuard, BackendStats};
pub use sticky::{pick_sticky, sticky_hash, StickyMode, StickyParseError};
pub mod registry;
