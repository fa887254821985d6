//! HTTP/1.1 response framing for the load generator: the head parsed with
//! httparse, then the body consumed by Content-Length, chunked coding or
//! until close. Bodies are skipped, never stored.

use thiserror::Error;

use wslb::proto::http::{BodyKind, BodyTracker};

/// Most response headers we look at.
const MAX_HEADERS: usize = 64;

/// Response bytes that do not parse.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ResponseError {
    /// httparse rejected the head.
    #[error("malformed response head: {0}")]
    Head(httparse::Error),
    /// Content-Length is not a number, or appears twice with different values.
    #[error("bad Content-Length")]
    ContentLength,
    /// A chunk size line or chunk terminator is malformed.
    #[error("bad chunked encoding")]
    Chunked,
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (1xx, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Transfer-Encoding: chunked.
    Chunked,
    /// Until the server closes.
    UntilClose,
}

/// The parts of a response head the bench needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// Bytes of the head, including the blank line.
    pub len: usize,
    /// Body framing.
    pub framing: Framing,
    /// The server will close after this response.
    pub close: bool,
}

/// Parse a response head from `buf`; `Ok(None)` means more bytes are needed.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, ResponseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf).map_err(ResponseError::Head)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let status = resp.code.unwrap_or(0);
    let mut close = resp.version == Some(0);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or(ResponseError::ContentLength)?;
            if length.is_some_and(|old| old != v) {
                return Err(ResponseError::ContentLength);
            }
            length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h
                .value
                .split(|b| *b == b',')
                .next_back()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && resp.version == Some(0) {
                    close = false;
                }
            }
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        close = true;
        Framing::UntilClose
    };
    Ok(Some(Head {
        status,
        len,
        framing,
        close,
    }))
}

/// Skips a response body without storing it: the crate's own body framing
/// (the chunked validator the proxy uses) over the bench's `Framing`.
#[derive(Debug)]
pub struct BodySkipper {
    framing: Framing,
    tracker: BodyTracker,
}

impl BodySkipper {
    pub fn new(framing: Framing) -> BodySkipper {
        let kind = match framing {
            Framing::Empty => BodyKind::Empty,
            Framing::Length(n) => BodyKind::Length(n),
            Framing::Chunked => BodyKind::Chunked,
            Framing::UntilClose => BodyKind::UntilClose,
        };
        BodySkipper {
            framing,
            tracker: BodyTracker::new(kind),
        }
    }

    pub fn done(&self) -> bool {
        self.tracker.is_done()
    }

    pub fn until_close(&self) -> bool {
        self.framing == Framing::UntilClose
    }

    /// Body bytes at the front of `buf` (never past the body's end).
    pub fn feed(&mut self, buf: &[u8]) -> Result<usize, ResponseError> {
        self.tracker
            .scan(buf)
            .map(|p| p.consumed)
            .map_err(|_| ResponseError::Chunked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_with_length() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let h = parse_head(r).expect("ok").expect("complete");
        assert_eq!(h.status, 200);
        assert_eq!(h.len, r.len() - 5);
        assert_eq!(h.framing, Framing::Length(5));
        assert!(!h.close);
        assert_eq!(parse_head(&r[..10]).expect("ok"), None);
    }

    #[test]
    fn head_close_and_until_close() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            .expect("ok")
            .expect("c");
        assert_eq!(h.framing, Framing::UntilClose);
        assert!(h.close);
        let h = parse_head(b"HTTP/1.0 204 No\r\n\r\n")
            .expect("ok")
            .expect("c");
        assert_eq!(h.framing, Framing::Empty);
        assert!(h.close);
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
                .is_err()
        );
    }

    #[test]
    fn chunked_every_split() {
        let body =
            b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let end = body.len() - 4;
        for split in 0..=body.len() {
            let mut s = BodySkipper::new(Framing::Chunked);
            let a = s.feed(&body[..split]).expect("first half");
            let mut used = a;
            if !s.done() {
                used += s.feed(&body[a..]).expect("second half");
            }
            assert!(s.done(), "split {split}");
            assert_eq!(used, end, "split {split}");
        }
    }

    #[test]
    fn chunked_rejects_garbage() {
        let mut s = BodySkipper::new(Framing::Chunked);
        assert!(s.feed(b"zz\r\n").is_err());
        let mut s = BodySkipper::new(Framing::Chunked);
        assert!(s.feed(b"1\r\nab\r\n").is_err());
    }

    #[test]
    fn length_body() {
        let mut s = BodySkipper::new(Framing::Length(3));
        assert_eq!(s.feed(b"ab").expect("ok"), 2);
        assert!(!s.done());
        assert_eq!(s.feed(b"cdef").expect("ok"), 1);
        assert!(s.done());
    }
}
