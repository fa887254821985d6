//! A blocking Server-Sent Events test client over std sockets: opens a
//! stream (`Accept: text/event-stream`, an optional `Last-Event-ID`), reads
//! its head, then parses events as they come (name, id, data lines joined
//! with `\n`, `retry:`, comments counted) with timeouts; and the SSE
//! fallback's client-to-backend calls (`POST`/`DELETE /_lb/sse/<token>`).

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::client::{HttpConn, Response};

/// How long [`SseStream::event`] waits for an event.
pub const EVENT_WAIT: Duration = Duration::from_secs(5);

/// One dispatched event, as a browser's `EventSource` would see it, plus
/// what the wire showed of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (None: an unnamed event, a browser's "message").
    pub event: Option<String>,
    /// The `id:` field of this block, if it had one.
    pub id: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// How many `data:` lines the block held.
    pub data_lines: usize,
    /// The `retry:` field of this block, if it had one.
    pub retry: Option<u64>,
}

impl SseEvent {
    /// The `<n>` of an id `<token>.<n>`.
    pub fn seq(&self) -> Option<u64> {
        self.id.as_deref()?.rsplit_once('.')?.1.parse().ok()
    }

    /// The `<token>` of an id `<token>.<n>`.
    pub fn token(&self) -> Option<&str> {
        Some(self.id.as_deref()?.rsplit_once('.')?.0)
    }

    /// The data parsed as JSON (panics if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {self:?}"))
    }
}

/// What one read of the stream produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Event(SseEvent),
    /// The server closed the stream (EOF or reset).
    Eof,
    /// Nothing whole arrived in time.
    Timeout,
}

/// An open event stream.
pub struct SseStream {
    pub stream: TcpStream,
    /// The response head (its body is the stream).
    pub head: Response,
    buf: Vec<u8>,
    /// The fields of the block being read.
    pending: SseEvent,
    /// Comment lines (`: ...`) seen so far.
    pub comments: usize,
    /// The last `retry:` value seen.
    pub retry: Option<u64>,
    /// Lines with a field name SSE does not know.
    pub unknown: Vec<String>,
    eof: bool,
}

/// Opens `GET path` on `addr` as an event stream, with `Last-Event-ID`
/// when given and `extra` headers. `Err` is any other answer (a status
/// other than 200, or a content type other than `text/event-stream`),
/// read whole.
pub fn open(
    addr: SocketAddr,
    path: &str,
    last_event_id: Option<&str>,
    extra: &[(&str, &str)],
) -> Result<SseStream, Response> {
    open_on(
        TcpStream::connect(addr).expect("connect"),
        path,
        last_event_id,
        extra,
    )
}

/// [`open`] over a socket already connected.
pub fn open_on(
    socket: TcpStream,
    path: &str,
    last_event_id: Option<&str>,
    extra: &[(&str, &str)],
) -> Result<SseStream, Response> {
    let mut conn = HttpConn::on(socket);
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n");
    if let Some(id) = last_event_id {
        req.push_str(&format!("Last-Event-ID: {id}\r\n"));
    }
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    conn.send(req.as_bytes());
    let mut head = conn.read_head().expect("a response head");
    let is_stream = head
        .header("content-type")
        .is_some_and(|t| t.trim_start().starts_with("text/event-stream"));
    if head.status != 200 || !is_stream {
        conn.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .ok();
        head.body = conn.read_body(&head, false).unwrap_or_default();
        return Err(head);
    }
    let (stream, buf) = conn.into_parts();
    Ok(SseStream {
        stream,
        head,
        buf,
        pending: SseEvent::default(),
        comments: 0,
        retry: None,
        unknown: Vec::new(),
        eof: false,
    })
}

impl SseStream {
    /// The next event within `within` (blocks without data, like the
    /// `retry:` a resume starts with, are not events: their fields are
    /// kept and the read goes on).
    pub fn next(&mut self, within: Duration) -> Next {
        let deadline = Instant::now() + within;
        loop {
            while let Some(line) = self.take_line() {
                if let Some(ev) = self.on_line(&line) {
                    return Next::Event(ev);
                }
            }
            if self.eof {
                return Next::Eof;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Next::Timeout;
            }
            self.stream.set_read_timeout(Some(left)).ok();
            let mut tmp = [0u8; 65536];
            match self.stream.read(&mut tmp) {
                Ok(0) => self.eof = true,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Next::Timeout
                }
                Err(_) => self.eof = true,
            }
        }
    }

    /// Whether part of an event was read and not yet dispatched.
    pub fn holds_partial(&self) -> bool {
        !self.buf.is_empty() || self.pending != SseEvent::default()
    }

    /// The next event (panics on EOF or after [`EVENT_WAIT`]).
    pub fn event(&mut self) -> SseEvent {
        match self.next(EVENT_WAIT) {
            Next::Event(e) => e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// The next event if one comes within 200 ms (for "nothing more").
    pub fn event_or_none(&mut self) -> Option<SseEvent> {
        match self.next(Duration::from_millis(200)) {
            Next::Event(e) => Some(e),
            Next::Timeout => None,
            Next::Eof => panic!("the stream ended"),
        }
    }

    /// Whether the stream ends (EOF, any events before it dropped) within
    /// `within`; the events dropped are returned for messages.
    pub fn ends_within(&mut self, within: Duration) -> Result<(), Vec<SseEvent>> {
        let deadline = Instant::now() + within;
        let mut extra = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Next::Eof => return if extra.is_empty() { Ok(()) } else { Err(extra) },
                Next::Event(e) => extra.push(e),
                Next::Timeout => {
                    extra.push(SseEvent {
                        event: Some("(no end in time)".into()),
                        ..SseEvent::default()
                    });
                    return Err(extra);
                }
            }
        }
    }

    /// One line off the buffer, its end (`\n`, `\r\n` or `\r`) removed;
    /// None until a whole one is there (a last line without an end is
    /// dropped at EOF, as SSE says).
    fn take_line(&mut self) -> Option<String> {
        let p = self.buf.iter().position(|&b| b == b'\n' || b == b'\r')?;
        let end = if self.buf[p] == b'\r' {
            match self.buf.get(p + 1) {
                Some(b'\n') => p + 2,
                Some(_) => p + 1,
                // A `\r` last: its `\n` may be on its way.
                None if !self.eof => return None,
                None => p + 1,
            }
        } else {
            p + 1
        };
        let line = String::from_utf8_lossy(&self.buf[..p]).into_owned();
        self.buf.drain(..end);
        Some(line)
    }

    /// Takes one line; a blank one ends the block (an event if it had data).
    fn on_line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let block = std::mem::take(&mut self.pending);
            return (block.data_lines > 0).then_some(block);
        }
        if line.starts_with(':') {
            self.comments += 1;
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.pending.event = Some(value.to_string()),
            "id" => self.pending.id = Some(value.to_string()),
            "data" => {
                if self.pending.data_lines > 0 {
                    self.pending.data.push('\n');
                }
                self.pending.data.push_str(value);
                self.pending.data_lines += 1;
            }
            "retry" => match value.parse() {
                Ok(ms) => {
                    self.pending.retry = Some(ms);
                    self.retry = Some(ms);
                }
                Err(_) => self.unknown.push(line.to_string()),
            },
            _ => self.unknown.push(line.to_string()),
        }
        None
    }
}

/// The path of session `token`'s endpoint.
pub fn session_path(token: &str) -> String {
    format!("/_lb/sse/{token}")
}

/// Sends `method path` with `body` (and a `Content-Type` when given) on a
/// fresh connection; the answer, read whole.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Response {
    let mut c = HttpConn::connect(addr);
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(t) = content_type {
        req.push_str(&format!("Content-Type: {t}\r\n"));
    }
    req.push_str("\r\n");
    let mut raw = req.into_bytes();
    raw.extend_from_slice(body);
    c.send(&raw);
    c.read_response(method == "HEAD")
        .unwrap_or_else(|| panic!("no answer to {method} {path}"))
}

/// `POST /_lb/sse/<token>` with a text body (`text/plain; charset=utf-8`).
pub fn post_text(addr: SocketAddr, token: &str, text: &[u8]) -> Response {
    request(
        addr,
        "POST",
        &session_path(token),
        Some("text/plain; charset=utf-8"),
        text,
    )
}

/// `POST /_lb/sse/<token>` with a text body on a kept-alive connection.
pub fn post_text_on(c: &mut HttpConn, token: &str, text: &[u8]) -> Response {
    let head = format!(
        "POST /_lb/sse/{token} HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        text.len()
    );
    let mut raw = head.into_bytes();
    raw.extend_from_slice(text);
    c.send(&raw);
    c.read_response(false)
        .expect("an answer on the kept-alive connection")
}

/// `POST /_lb/sse/<token>` with a binary body (`application/octet-stream`).
pub fn post_binary(addr: SocketAddr, token: &str, bytes: &[u8]) -> Response {
    request(
        addr,
        "POST",
        &session_path(token),
        Some("application/octet-stream"),
        bytes,
    )
}

/// `DELETE /_lb/sse/<token>`.
pub fn delete(addr: SocketAddr, token: &str) -> Response {
    request(addr, "DELETE", &session_path(token), None, b"")
}

/// What an `open` event told: the token, the endpoint and the hub id.
#[derive(Debug, Clone)]
pub struct Opened {
    pub token: String,
    pub url: String,
    pub conn_id: String,
}

/// Whether `s` is a session token: 32 lowercase hex characters.
pub fn is_token(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Reads the first event of a fresh stream, which must be `open` with a
/// well-formed token, its url and a connection id; id `<token>.0`.
pub fn expect_open(s: &mut SseStream) -> Opened {
    let ev = s.event();
    assert_eq!(ev.event.as_deref(), Some("open"), "{ev:?}");
    let v = ev.json();
    let token = v["session"].as_str().unwrap_or_default().to_string();
    assert!(is_token(&token), "not a 32-hex token: {v}");
    assert_eq!(
        ev.id.as_deref(),
        Some(format!("{token}.0").as_str()),
        "{ev:?}"
    );
    let url = v["url"].as_str().unwrap_or_default().to_string();
    assert_eq!(url, session_path(&token), "{v}");
    let conn_id = v["id"].as_str().unwrap_or_default().to_string();
    assert!(!conn_id.is_empty(), "no connection id: {v}");
    Opened {
        token,
        url,
        conn_id,
    }
}
