//! The message hub's shared vocabulary (no I/O): connection ids that are
//! unique across workers and restarts, the messaging operations and their
//! JSON (publish, send, ping, close, subscribe), the filters that pick
//! sessions, the per-worker inboxes through which any thread reaches the
//! worker that owns a session, and the tallies the workers answer into.
//!
//! Fallback sessions (Server-Sent Events toward the client) are found by
//! token from any worker in `sse`.
//!
//! Delivery itself happens on the owning worker (`proxy::hub_worker`):
//! channel membership and the sessions' send queues live there, so no lock
//! shared across cores sits on the delivery path.

pub mod body;
pub mod events;
pub mod ids;
pub mod ops;
pub mod parse;
pub mod router;
pub(crate) mod sse;

pub use body::{CloseTarget, Request};
pub use events::{Event, EventBus, EventKind};
pub use ids::ConnIds;
pub use ops::{Filter, Op, OpError, OpKind, Outcome, Payload};
pub use router::{Command, Router, SessionView, Tally};
