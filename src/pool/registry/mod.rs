//! Backend registry: the control-channel protocol (`protocol`), the binding
//! grammar and address policy (`binding`), the table of
//! members that publishes pool snapshots (`table`), the hub that reaches a
//! backend's channel from any thread (`hub`), and the channel itself
//! (`control`, the only part with I/O).

pub mod binding;
mod error;
mod info;
pub mod protocol;
pub mod table;

pub use protocol::{
    parse_client_message, parse_server_message, resolve_binding, resolve_binding_in, ClientMessage,
    ProtocolError, ServerMessage, PROTOCOL_VERSION,
};
pub use table::{BackendInfo, BackendState, RegisterOutcome, Registry};

pub mod hub;
