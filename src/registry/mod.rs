//! Backend registry: the control-channel protocol (`protocol`) and the table
//! of members that publishes pool snapshots (`table`). No I/O in here.

pub mod protocol;
pub mod table;

pub use protocol::{
    parse_client_message, parse_server_message, resolve_binding, ClientMessage, ProtocolError,
    ServerMessage, PROTOCOL_VERSION,
};
pub use table::{BackendInfo, BackendState, RegisterOutcome, Registry};
