//! HTTP/1.1 codec: request/response head parsing and rewriting (httparse),
//! body framing and a streaming chunked validator. No I/O lives here: every
//! function works over byte buffers so it can be unit-tested, fuzzed and
//! benchmarked on its own.

pub(crate) mod auth;
pub(crate) mod body;
pub(crate) mod chunked;
pub(crate) mod edit;
pub(crate) mod headers;
pub(crate) mod reply;
pub(crate) mod request;
pub(crate) mod response;

pub use body::BodyTracker;
pub use chunked::{ChunkedScanner, Progress};
pub use reply::{error_response, write_response, CONTINUE_100};
pub use request::{
    parse_request, parse_request_prepared, ForwardInfo, ParsedRequest, PreparedForward,
};
pub use response::{parse_response, ParsedResponse};

/// Why a head or body was refused. Every variant maps to one HTTP status via
/// [`HttpError::status`]; on the backend side the proxy answers 502 instead.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The bytes are not HTTP/1.x (bad request line, header syntax, ...).
    #[error("malformed HTTP message: {0}")]
    Malformed(&'static str),
    /// The head is larger than `Limits::max_header_bytes` or has more than
    /// `Limits::max_headers` fields.
    #[error("request head too large")]
    HeadersTooLarge,
    /// Ambiguous framing that two parsers could read differently.
    #[error("ambiguous message framing (request smuggling): {0}")]
    Smuggling(&'static str),
    /// A chunked body that does not follow RFC 9112 section 7.1.
    #[error("bad chunked encoding: {0}")]
    BadChunk(&'static str),
    /// Transfer codings other than a final `chunked` (e.g. `gzip, chunked`).
    #[error("unsupported transfer encoding")]
    UnsupportedTransferEncoding,
}

impl HttpError {
    /// The status the proxy answers to a client that sent this.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadersTooLarge => 431,
            HttpError::UnsupportedTransferEncoding => 501,
            _ => 400,
        }
    }
}

/// How the body of a message is delimited (RFC 9112 section 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// No body at all (also used for `Content-Length: 0`).
    Empty,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// A chunked body; validate it with [`ChunkedScanner`].
    Chunked,
    /// The body runs until the sender closes (responses only).
    UntilClose,
}

/// The request method; anything not listed is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `OPTIONS`
    Options,
    /// `TRACE`
    Trace,
    /// `PATCH`
    Patch,
    /// `CONNECT`
    Connect,
    /// Any other method token.
    Other,
}

impl Method {
    /// Parse a method token (case-sensitive, as RFC 9110 says).
    pub fn from_bytes(m: &[u8]) -> Method {
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"TRACE" => Method::Trace,
            b"PATCH" => Method::Patch,
            b"CONNECT" => Method::Connect,
            _ => Method::Other,
        }
    }

    /// Idempotent methods (RFC 9110 section 9.2.2): safe to retry on another
    /// backend when the first one failed before answering.
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Put
                | Method::Delete
                | Method::Options
                | Method::Trace
        )
    }
}

/// Bounds on a message head.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest head (request/status line + fields + final CRLF) accepted.
    pub max_header_bytes: usize,
    /// Most header fields accepted (capped at [`MAX_HEADERS_CAP`]).
    pub max_headers: usize,
}

/// Hard cap on the number of header fields, whatever `Limits` says: the
/// parser keeps the field table on the stack.
pub const MAX_HEADERS_CAP: usize = 256;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping() {
        assert_eq!(HttpError::HeadersTooLarge.status(), 431);
        assert_eq!(HttpError::UnsupportedTransferEncoding.status(), 501);
        assert_eq!(HttpError::Smuggling("x").status(), 400);
        assert_eq!(HttpError::Malformed("x").status(), 400);
        assert_eq!(HttpError::BadChunk("x").status(), 400);
    }

    #[test]
    fn idempotent_methods() {
        for m in [
            Method::Get,
            Method::Head,
            Method::Put,
            Method::Delete,
            Method::Options,
            Method::Trace,
        ] {
            assert!(m.is_idempotent(), "{m:?}");
        }
        for m in [Method::Post, Method::Patch, Method::Connect, Method::Other] {
            assert!(!m.is_idempotent(), "{m:?}");
        }
        assert_eq!(Method::from_bytes(b"get"), Method::Other);
        assert_eq!(Method::from_bytes(b"PATCH"), Method::Patch);
    }
}
