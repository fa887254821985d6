//! The WebSocket fallback over Server-Sent Events (`--fallback sse`): a
//! client that cannot open a WebSocket asks for an event stream instead
//! (`GET` with `Accept: text/event-stream`, no `Upgrade`), and the
//! balancer opens the WebSocket session to the backend on its behalf.
//!
//! The session is an ordinary one: the usual relay runs it, with one end
//! of an in-memory pipe standing in for the client, so picks, limits, pings,
//! the message hub and the hooks all apply. On the pipe's other end an
//! adapter (adapter.rs) turns the backend's messages into events and the
//! client's posts into frames. The client's event stream (stream.rs) and
//! its posts (post.rs) may reach any worker; they meet the session through
//! its shared state (`hub::sse`).
//!
//! The wire format is in docs/FALLBACK.md; the client library the balancer
//! serves at `/_lb/client.js` is client.js.

mod adapter;
mod open;
mod post;
mod stream;

pub(crate) use open::{begin, Opening};
pub(crate) use post::serve as serve_endpoint;
pub(crate) use stream::{find, resume, Resume};

use crate::hub::sse::SseToken;
use crate::proto::http::headers::{header_values, trim_ows};
use crate::proto::http::{BodyKind, Method, ParsedRequest};
use crate::proto::sse::parse_last_event_id;

/// The client library (`GET /_lb/client.js`).
pub(crate) const CLIENT_JS: &str = include_str!("client.js");

/// What a request asks of the fallback.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ask {
    /// Nothing: an ordinary request.
    No,
    /// A new session.
    Open,
    /// A session's stream coming back after event `.1`.
    Resume(SseToken, u64),
}

/// Whether a request (not an upgrade, not under `/_lb/`) asks for an event
/// stream: a `GET` without a body that accepts `text/event-stream`. A
/// `Last-Event-ID` naming one of our sessions resumes it; any other opens a
/// new one.
pub(crate) fn classify(data: &[u8], req: &ParsedRequest) -> Ask {
    if req.method != Method::Get || req.body != BodyKind::Empty {
        return Ask::No;
    }
    let head = &data[..req.head_len];
    let wants = header_values(head, b"accept").any(|v| {
        v.split(|&b| b == b',').any(|item| {
            let media = item.split(|&b| b == b';').next().unwrap_or_default();
            trim_ows(media).eq_ignore_ascii_case(b"text/event-stream")
        })
    });
    if !wants {
        return Ask::No;
    }
    let resumed = header_values(head, b"last-event-id")
        .next()
        .and_then(parse_last_event_id)
        .and_then(|(token, n)| Some((SseToken::parse(token)?, n)));
    match resumed {
        Some((token, n)) => Ask::Resume(token, n),
        None => Ask::Open,
    }
}

/// What the fallback makes of a request.
pub(crate) enum Prepared {
    /// Not an event stream request: an ordinary one.
    No,
    /// A new session, to be opened by the upgrade.
    Open(Box<Opening>),
    /// A stream coming back to its session.
    Resume(Resume),
}

/// Classifies a request for the fallback and finds or starts what it asks
/// for; `Err` is the status to answer (404: no such session; 503: the
/// balancer holds as many fallback sessions as it may).
pub(crate) fn prepare(
    env: &crate::proxy::env::Env,
    data: &[u8],
    req: &ParsedRequest,
) -> Result<Prepared, u16> {
    match classify(data, req) {
        Ask::No => Ok(Prepared::No),
        Ask::Resume(token, last) => find(env, &token, last).map(Prepared::Resume),
        Ask::Open => Opening::new(env)
            .map(|o| Prepared::Open(Box::new(o)))
            .ok_or(503),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::http::{parse_request, ForwardInfo, Limits};

    fn ask(head: &str) -> Ask {
        let fwd = ForwardInfo {
            client_ip: "127.0.0.1".parse().unwrap(),
            tls: false,
            trusted: false,
        };
        let limits = Limits {
            max_header_bytes: 8192,
            max_headers: 100,
        };
        let req = parse_request(head.as_bytes(), &limits, &fwd, &mut Vec::new())
            .unwrap()
            .unwrap();
        classify(head.as_bytes(), &req)
    }

    #[test]
    fn an_event_stream_get_opens_or_resumes_a_session() {
        let t = "0123456789abcdef0123456789abcdef";
        let token = SseToken::parse(t).unwrap();
        assert_eq!(
            ask("GET /ws HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n"),
            Ask::Open
        );
        assert_eq!(
            ask(
                "GET /ws HTTP/1.1\r\nHost: a\r\nAccept: text/html, Text/Event-Stream;q=0.9\r\n\r\n"
            ),
            Ask::Open
        );
        let resume = format!(
            "GET /ws HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\nLast-Event-ID: {t}.7\r\n\r\n"
        );
        assert_eq!(ask(&resume), Ask::Resume(token, 7));
        // Someone else's id: a new session.
        assert_eq!(
            ask("GET /ws HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\nLast-Event-ID: 42\r\n\r\n"),
            Ask::Open
        );
        for no in [
            "GET /ws HTTP/1.1\r\nHost: a\r\nAccept: text/html\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: a\r\n\r\n",
            "POST /ws HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\nContent-Length: 1\r\n\r\nx",
            "GET /ws HTTP/1.1\r\nHost: a\r\nAccept: text/event-streams\r\n\r\n",
        ] {
            assert_eq!(ask(no), Ask::No, "{no:?}");
        }
    }
}
