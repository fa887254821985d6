//! Backend registry: the control-channel protocol (`protocol`), the binding
//! grammar and address policy (`binding`), the table of
//! members that publishes pool snapshots (`table`), the hub that reaches a
//! backend's channel from any thread (`hub`), and the channel itself
//! (`control`, the only part with I/O).

pub(crate) mod binding;
pub(crate) mod error;
mod info;
pub(crate) mod protocol;
pub(crate) mod table;

pub(crate) use table::{BackendInfo, Registry};

pub(crate) mod hub;
