//! RFC 6455 WebSocket codec: frame headers, masking, UTF-8, close codes,
//! a relay-side frame scanner, an endpoint message reader and the handshake.
//!
//! Everything here is plain functions and state machines over byte buffers;
//! no runtime, no I/O. The proxy and servers drive these with their own buffers.

pub mod close;
pub mod frame;
pub mod handshake;
pub(crate) mod mask;
pub mod message;
pub(crate) mod origin;
#[cfg(test)]
mod proptests;
pub mod scanner;
pub(crate) mod utf8;

pub use close::{is_valid_close_code, parse_close_payload, write_close_frame};
pub use frame::{encode_header, parse_header, write_frame, FrameHeader, FrameLimits, OpCode};
pub use handshake::{
    accept_key, check_client_request, check_server_response, generate_client_key,
    is_upgrade_request, is_valid_client_key, write_client_request, write_server_response,
    ClientHandshake, HandshakeError, OriginPolicy, WS_GUID,
};
pub use mask::apply_mask;
pub use message::{Message, MessageReader};
pub use scanner::{FrameScanner, ScannerConfig, Segment};
pub use utf8::Utf8Validator;

/// A protocol-level failure on a WebSocket stream, mapped to its close code.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum WsError {
    /// The peer broke a framing or protocol rule (close code 1002).
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
    /// A frame or message exceeds the configured limit (close code 1009).
    #[error("websocket frame or message too big")]
    TooBig,
    /// A text message or close reason is not valid UTF-8 (close code 1007).
    #[error("invalid utf-8 in websocket text")]
    InvalidUtf8,
    /// A close frame carried a code that may not appear on the wire (1002).
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
}

impl WsError {
    /// The close code an endpoint should send when failing with this error.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::Protocol(_) | WsError::InvalidCloseCode(_) => 1002,
            WsError::TooBig => 1009,
            WsError::InvalidUtf8 => 1007,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_map() {
        assert_eq!(WsError::Protocol("x").close_code(), 1002);
        assert_eq!(WsError::TooBig.close_code(), 1009);
        assert_eq!(WsError::InvalidUtf8.close_code(), 1007);
        assert_eq!(WsError::InvalidCloseCode(1005).close_code(), 1002);
    }
}
