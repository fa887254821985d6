//! `GET /api/events`: the live events as a Server-Sent Events stream. Each
//! event is `event: TYPE`, `id: N` (its place in this stream, from 1) and
//! `data: JSON`; events this reader lost (its queue was full) are announced
//! by `event: lost` with their count before the next one; a `: keep-alive`
//! comment goes out after 15 s of silence. `?messages=1` adds message
//! metadata, `?backend=ID` keeps only one backend's events.
//!
//! The stream runs on the admin thread: workers only ever push into the
//! reader's bounded queue, so a slow reader loses events, never slows
//! traffic. No per-request deadline cuts it; it ends when the client goes,
//! when a write makes no progress for `--admin-request-timeout`, or when the
//! balancer stops.

use std::io::Write as _;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use monoio::buf::IoBuf;
use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;

use super::slots::SlotGuard;
use crate::hub::events::{Interest, Subscription};
use crate::hub::Event;
use crate::proto::http::Method;
use crate::server::Shared;

/// The stream's path.
pub(super) const PATH: &str = "/api/events";

/// Silence after which a keep-alive comment is sent.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The socket send buffer of a stream (the kernel doubles it): what a
/// stuck reader can hold in the kernel, on top of its event queue.
const SEND_BUFFER: usize = 128 * 1024;

/// Bytes of events gathered into one write, at most (about).
const BATCH_BYTES: usize = 32 * 1024;

const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\n\
Content-Type: text/event-stream\r\n\
Cache-Control: no-cache\r\n\
X-Accel-Buffering: no\r\n\
Connection: close\r\n\r\n";

const KEEP_ALIVE_COMMENT: &[u8] = b": keep-alive\n\n";

/// An answer sent instead of a stream: status, content type, body.
pub(super) type Answer = (u16, &'static str, String);

fn refuse(status: u16, error: &str) -> Answer {
    let body = serde_json::json!({ "error": error }).to_string();
    (status, "application/json", body)
}

/// `None` when `target` is not the event stream; else what the stream
/// wants, or the answer to send instead (bad query, wrong method, every
/// slot streams may hold already held). Claims the connection's slot as a
/// stream.
pub(super) fn request(
    method: Method,
    target: &str,
    slot: &SlotGuard,
) -> Option<Result<Interest, Answer>> {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    if path != PATH {
        return None;
    }
    if method != Method::Get {
        return Some(Err(refuse(405, "the event stream is read with GET")));
    }
    let interest = match parse_query(query) {
        Ok(i) => i,
        Err(e) => return Some(Err(refuse(400, &e))),
    };
    if !slot.stream() {
        return Some(Err(refuse(503, "too many event streams open")));
    }
    Some(Ok(interest))
}

/// What a query asks for: `messages=1` (or `true`, or no value) adds
/// message metadata, `backend=ID` (percent-encoded) keeps one backend's
/// events; other parameters are ignored.
pub(super) fn parse_query(query: Option<&str>) -> Result<Interest, String> {
    let mut interest = Interest::default();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "messages" => {
                interest.messages = match value {
                    "" | "1" | "true" => true,
                    "0" | "false" => false,
                    _ => return Err(format!("messages={value}: expected 1 or 0")),
                }
            }
            "backend" => match super::percent_decode(value) {
                Some(id) if !id.is_empty() => interest.backend = Some(id),
                _ => return Err("backend: expected a percent-encoded backend id".into()),
            },
            _ => {}
        }
    }
    Ok(interest)
}

/// Streams events to `stream` until the client goes, a write makes no
/// progress for the admin request timeout, the slot is evicted or the
/// bus is shut (the balancer stopped).
pub(super) async fn stream(
    shared: &Shared,
    stream: TcpStream,
    interest: Interest,
    slot: &SlotGuard,
) {
    // SAFETY: the descriptor is `stream`'s open socket; `stream` outlives
    // this borrow, which ends with the setsockopt call below.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    let _ = socket2::SockRef::from(&fd).set_send_buffer_size(SEND_BUFFER);
    // Subscribed before the head goes out: the client misses nothing after it.
    let sub = shared.events.subscribe(interest);
    let (mut r, mut w) = stream.into_split();
    let evicted = slot.evicted();
    let stall = shared.cfg.admin_request_timeout;
    monoio::select! {
        _ = evicted.wait() => {}
        _ = client_gone(&mut r) => {}
        _ = pump(&sub, &mut w, stall) => {}
    }
}

/// Resolves when the client closes its side (or its connection fails);
/// whatever it sends meanwhile is read and ignored.
async fn client_gone(r: &mut OwnedReadHalf<TcpStream>) {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let (res, b) = r.read(buf).await;
        buf = b;
        if !matches!(res, Ok(n) if n > 0) {
            return;
        }
    }
}

/// Writes the head, then events as they come (several at once when they
/// queued up), keep-alives in silences; returns when the bus is shut or a
/// write fails.
async fn pump(sub: &Subscription, w: &mut OwnedWriteHalf<TcpStream>, stall: Duration) {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(HEAD);
    let mut seq = 0u64;
    loop {
        out = match send(w, out, stall).await {
            Some(buf) => buf,
            None => return,
        };
        let next = monoio::select! {
            e = sub.next() => Some(e),
            _ = monoio::time::sleep(KEEP_ALIVE) => None,
        };
        match next {
            None => out.extend_from_slice(KEEP_ALIVE_COMMENT),
            Some(None) => return,
            Some(Some(mut event)) => loop {
                seq += 1;
                write_event(&mut out, sub.take_lost(), seq, &event);
                if out.len() >= BATCH_BYTES {
                    break;
                }
                match sub.try_next() {
                    Some(e) => event = e,
                    None => break,
                }
            },
        }
    }
}

/// Writes `out` whole and gives it back emptied; `None` when the client is
/// gone or one write made no progress for `stall`.
async fn send(
    w: &mut OwnedWriteHalf<TcpStream>,
    mut out: Vec<u8>,
    stall: Duration,
) -> Option<Vec<u8>> {
    let mut start = 0;
    while start < out.len() {
        let end = out.len();
        let (res, slice) = monoio::time::timeout(stall, w.write(out.slice(start..end)))
            .await
            .ok()?;
        out = slice.into_inner();
        match res {
            Ok(n) if n > 0 => start += n,
            _ => return None,
        }
    }
    out.clear();
    Some(out)
}

/// Appends one event in SSE form, preceded by the `lost` notice when
/// `lost` events went missing before it.
fn write_event(out: &mut Vec<u8>, lost: u64, seq: u64, event: &Event) {
    if lost > 0 {
        let _ = write!(out, "event: lost\ndata: {{\"lost\":{lost}}}\n\n");
    }
    let mark = out.len();
    let _ = write!(out, "event: {}\nid: {seq}\ndata: ", event.kind.name());
    if serde_json::to_writer(&mut *out, event).is_err() {
        // Not for these types; never half an event on the wire.
        out.truncate(mark);
        return;
    }
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::EventKind;

    #[test]
    fn queries_say_what_the_stream_carries() {
        assert_eq!(parse_query(None), Ok(Interest::default()));
        assert_eq!(parse_query(Some("")), Ok(Interest::default()));
        let all = parse_query(Some("messages=1&backend=http%3A%2F%2Fb%3A1&_=9")).unwrap();
        assert!(all.messages);
        assert_eq!(all.backend.as_deref(), Some("http://b:1"));
        assert!(parse_query(Some("messages")).unwrap().messages);
        assert!(!parse_query(Some("messages=0")).unwrap().messages);
        assert!(parse_query(Some("messages=maybe")).is_err());
        assert!(parse_query(Some("backend=")).is_err());
        assert!(parse_query(Some("backend=%zz")).is_err());
    }

    #[test]
    fn events_are_written_as_sse_with_the_lost_notice_first() {
        let event = Event {
            ts_ms: 7,
            kind: EventKind::BackendDrained {
                id: "b".into(),
                url: "http://b".into(),
            },
        };
        let mut out = Vec::new();
        write_event(&mut out, 0, 1, &event);
        write_event(&mut out, 3, 2, &event);
        let text = String::from_utf8(out).unwrap();
        let data = r#"{"ts_ms":7,"type":"backend_drained","id":"b","url":"http://b"}"#;
        assert_eq!(
            text,
            format!(
                "event: backend_drained\nid: 1\ndata: {data}\n\n\
                 event: lost\ndata: {{\"lost\":3}}\n\n\
                 event: backend_drained\nid: 2\ndata: {data}\n\n"
            )
        );
    }

    #[test]
    fn the_head_has_no_length() {
        let head = String::from_utf8_lossy(HEAD).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200 ok\r\n"));
        assert!(head.contains("content-type: text/event-stream\r\n"));
        assert!(head.contains("cache-control: no-cache\r\n"));
        assert!(!head.contains("content-length") && !head.contains("transfer-encoding"));
        assert!(head.ends_with("\r\n\r\n"));
    }
}
