//! HTTP pieces of `wslb bench sse`: the requests (the event-stream GET, the
//! POST of one message, the DELETE of a session), reading a response or an
//! event under a deadline, the stream's head check and the `open` event.

use std::time::Instant;

use serde::Deserialize;

use super::conn::Conn;
use super::response::{parse_head, BodySkipper, Framing};
use super::sse_parse::{Event, SseParser};
use super::stats::ErrorKind;
use super::url::Target;

/// Most response headers looked at in the stream's head.
const MAX_HEADERS: usize = 32;

/// The event-stream GET that opens a session.
pub fn stream_request(target: &Target) -> Vec<u8> {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\
         Cache-Control: no-cache\r\nUser-Agent: wslb-bench\r\n\r\n",
        target.path, target.host
    )
    .into_bytes()
}

/// Put a kept-alive POST of `body` (a text message) to `path` into `out`.
pub fn write_post(out: &mut Vec<u8>, host: &str, path: &str, body: &[u8]) {
    use std::io::Write as _;
    out.clear();
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    out.extend_from_slice(body);
}

/// The DELETE that ends a session; `close` asks the server to close after it.
pub fn delete_request(host: &str, path: &str, close: bool) -> Vec<u8> {
    let conn = if close { "Connection: close\r\n" } else { "" };
    format!("DELETE {path} HTTP/1.1\r\nHost: {host}\r\n{conn}Content-Length: 0\r\n\r\n")
        .into_bytes()
}

/// Read more bytes before `deadline`; EOF is `Closed`.
pub async fn fill_by(conn: &mut Conn, deadline: Instant) -> Result<(), ErrorKind> {
    let left = deadline.saturating_duration_since(Instant::now());
    match monoio::time::timeout(left, conn.fill()).await {
        Err(_) => Err(ErrorKind::Timeout),
        Ok(Err(_)) => Err(ErrorKind::Read),
        Ok(Ok(0)) => Err(ErrorKind::Closed),
        Ok(Ok(_)) => Ok(()),
    }
}

/// Write all of `conn.wbuf` before `deadline`.
pub async fn send_by(conn: &mut Conn, deadline: Instant) -> Result<(), ErrorKind> {
    let left = deadline.saturating_duration_since(Instant::now());
    match monoio::time::timeout(left, conn.send()).await {
        Err(_) => Err(ErrorKind::Timeout),
        Ok(Err(_)) => Err(ErrorKind::Write),
        Ok(Ok(())) => Ok(()),
    }
}

/// A response read whole: its status, and whether the server closes after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub close: bool,
}

/// Read one response (its body skipped) before `deadline`.
pub async fn read_reply(conn: &mut Conn, deadline: Instant) -> Result<Reply, ErrorKind> {
    let mut body: Option<(BodySkipper, Reply)> = None;
    loop {
        if body.is_none() {
            if let Some(head) = parse_head(conn.pending()).map_err(|_| ErrorKind::Protocol)? {
                conn.consume(head.len);
                if (100..200).contains(&head.status) {
                    continue; // interim; the final answer follows
                }
                let reply = Reply {
                    status: head.status,
                    close: head.close,
                };
                body = Some((BodySkipper::new(head.framing), reply));
            }
        }
        if let Some((skipper, reply)) = body.as_mut() {
            let n = skipper
                .feed(conn.pending())
                .map_err(|_| ErrorKind::Protocol)?;
            conn.consume(n);
            if skipper.done() {
                return Ok(*reply);
            }
        }
        match fill_by(conn, deadline).await {
            Err(ErrorKind::Closed) => match body {
                Some((skipper, reply)) if skipper.until_close() => return Ok(reply),
                _ => return Err(ErrorKind::Closed),
            },
            r => r?,
        }
    }
}

/// Read the next event from the stream before `deadline`; returns it with
/// the instant it was complete.
pub async fn next_event(
    conn: &mut Conn,
    parser: &mut SseParser,
    deadline: Instant,
) -> Result<(Event, Instant), ErrorKind> {
    loop {
        while !conn.pending().is_empty() {
            let (n, ev) = parser
                .feed(conn.pending())
                .map_err(|_| ErrorKind::Protocol)?;
            conn.consume(n);
            if let Some(ev) = ev {
                return Ok((ev, Instant::now()));
            }
        }
        fill_by(conn, deadline).await?;
    }
}

/// What the stream's head said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamHead {
    /// 200, `text/event-stream`, close-delimited: the events follow.
    Events,
    /// Any other status (the backend refused the session).
    Refused(u16),
    /// A 200 that is not a close-delimited event stream.
    NotAStream,
}

/// Check the head of the answer to the event-stream GET; `Ok(None)` means
/// more bytes are needed, else the head's length and what it said.
pub fn stream_head(buf: &[u8]) -> Result<Option<(usize, StreamHead)>, ErrorKind> {
    let Some(head) = parse_head(buf).map_err(|_| ErrorKind::Protocol)? else {
        return Ok(None);
    };
    if head.status != 200 {
        return Ok(Some((head.len, StreamHead::Refused(head.status))));
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    resp.parse(buf).map_err(|_| ErrorKind::Protocol)?;
    let event_stream = resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("content-type")
            && h.value
                .split(|&b| b == b';')
                .next()
                .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"text/event-stream"))
    });
    let what = if event_stream && head.framing == Framing::UntilClose {
        StreamHead::Events
    } else {
        StreamHead::NotAStream
    };
    Ok(Some((head.len, what)))
}

/// The `open` event's data.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Opened {
    /// The session token.
    pub session: String,
    /// Where to POST messages and send the DELETE.
    pub url: String,
    /// The connection id the balancer lists the session under.
    #[serde(default)]
    pub id: String,
}

/// Check the first event is a well-formed `open` (id `<T>.0`, a token of 32
/// lowercase hex digits, a path under `/_lb/sse/`).
pub fn parse_open(ev: &Event) -> Option<Opened> {
    if ev.kind != b"open" {
        return None;
    }
    let o: Opened = serde_json::from_slice(&ev.data).ok()?;
    let token_ok = o.session.len() == 32
        && o.session
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let id_ok = ev.id.as_deref() == Some(format!("{}.0", o.session).as_bytes());
    (token_ok && id_ok && o.url.starts_with("/_lb/sse/")).then_some(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_head_must_be_a_close_delimited_event_stream() {
        let ok =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\nretry";
        assert_eq!(
            stream_head(ok),
            Ok(Some((ok.len() - 5, StreamHead::Events)))
        );
        assert_eq!(stream_head(&ok[..20]), Ok(None));
        let chunked =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            stream_head(chunked).map(|h| h.map(|h| h.1)),
            Ok(Some(StreamHead::NotAStream))
        );
        let html = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n";
        assert_eq!(
            stream_head(html).map(|h| h.map(|h| h.1)),
            Ok(Some(StreamHead::NotAStream))
        );
        let refused = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            stream_head(refused).map(|h| h.map(|h| h.1)),
            Ok(Some(StreamHead::Refused(403)))
        );
    }

    #[test]
    fn the_open_event_is_checked() {
        let t = "0123456789abcdef0123456789abcdef";
        let ev = |kind: &str, id: String, data: String| Event {
            kind: kind.into(),
            id: Some(id.into_bytes()),
            data: data.into_bytes(),
        };
        let data = format!(r#"{{"session":"{t}","url":"/_lb/sse/{t}","id":"7"}}"#);
        let o = parse_open(&ev("open", format!("{t}.0"), data.clone())).expect("open");
        assert_eq!(o.session, t);
        assert_eq!(o.url, format!("/_lb/sse/{t}"));
        assert!(parse_open(&ev("message", format!("{t}.0"), data.clone())).is_none());
        assert!(parse_open(&ev("open", format!("{t}.1"), data)).is_none());
        let upper = t.to_uppercase();
        let data = format!(r#"{{"session":"{upper}","url":"/_lb/sse/{upper}"}}"#);
        assert!(parse_open(&ev("open", format!("{upper}.0"), data)).is_none());
    }

    #[test]
    fn requests_are_well_formed() {
        let mut out = Vec::new();
        write_post(&mut out, "h:1", "/_lb/sse/t", b"abc");
        assert_eq!(
            out,
            b"POST /_lb/sse/t HTTP/1.1\r\nHost: h:1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\r\nabc"
        );
        let d = delete_request("h", "/_lb/sse/t", true);
        assert!(d.starts_with(b"DELETE /_lb/sse/t HTTP/1.1\r\n"));
        assert!(d.ends_with(b"Connection: close\r\nContent-Length: 0\r\n\r\n"));
    }
}
