//! The HTTP side's hook calls: the hooks' view of a request head (built
//! only when hooks are set), the handshake decision, and the header edits
//! of `on_http_request` and `on_http_response` applied to the forwarded
//! heads. Nothing here runs for a balancer without hooks.

use std::net::SocketAddr;

use crate::hooks::{Decision, HeaderEdits, Hooks, Request};
use crate::proto::http::{edit, reply, MAX_HEADERS_CAP};

/// Longest refusal reason sent back (longer ones are cut).
const MAX_REASON: usize = 256;

/// Builds the hooks' view of the request head at the front of `raw` and
/// runs `f` on it. `None` when the head does not parse (it did once, to get
/// here, so this does not happen).
pub(super) fn with_request<R>(
    raw: &[u8],
    peer: SocketAddr,
    tls: bool,
    f: impl FnOnce(&Request<'_>) -> R,
) -> Option<R> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS_CAP];
    let mut req = httparse::Request::new(&mut storage);
    match req.parse(raw) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    let headers: Vec<(&str, &[u8])> = req.headers.iter().map(|h| (h.name, h.value)).collect();
    let view = Request {
        peer,
        tls,
        method: req.method?,
        target: req.path?,
        headers: &headers,
    };
    Some(f(&view))
}

/// What the handshake hook decided, as the flow acts on it.
pub(super) enum Handshake {
    /// Go on (to the pinned backend, when one is named).
    Go { pin: Option<String> },
    /// Answer this whole response and close.
    Refuse {
        /// The whole response.
        answer: Vec<u8>,
        /// Its status.
        status: u16,
        /// The hook's reason (for the `handshake_refused` event).
        reason: String,
    },
}

/// Calls the hook for a request about to be forwarded: `on_handshake` for
/// a WebSocket upgrade, `on_http_request` for anything else.
pub(super) fn before_forward(
    hooks: &dyn Hooks,
    raw: &[u8],
    peer: SocketAddr,
    tls: bool,
    upgrade: bool,
    forwarded: &mut Vec<u8>,
) -> Handshake {
    if upgrade {
        return handshake(hooks, raw, peer, tls, forwarded);
    }
    http_request(hooks, raw, peer, tls, forwarded);
    Handshake::Go { pin: None }
}

/// Asks `on_handshake` about the upgrade whose raw head is at the front of
/// `raw`; the headers it adds go into `forwarded` (the head sent to the
/// backend), those that may not be written are dropped.
pub(super) fn handshake(
    hooks: &dyn Hooks,
    raw: &[u8],
    peer: SocketAddr,
    tls: bool,
    forwarded: &mut Vec<u8>,
) -> Handshake {
    let Some(decision) = with_request(raw, peer, tls, |r| hooks.on_handshake(r)) else {
        return Handshake::Go { pin: None };
    };
    decide(&decision, forwarded)
}

fn decide(decision: &Decision, forwarded: &mut Vec<u8>) -> Handshake {
    if let Some((status, reason)) = decision.refusal() {
        return Handshake::Refuse {
            answer: refusal(status, reason),
            status,
            reason: reason.to_string(),
        };
    }
    let added = decision.added_headers();
    if !added.is_empty() {
        let fields = added.iter().map(|(n, v)| (n.as_str(), v.as_str()));
        let dropped = edit::append_fields(forwarded, fields);
        if dropped > 0 {
            tracing::debug!(
                dropped,
                "on_handshake: headers that may not be forwarded dropped"
            );
        }
    }
    Handshake::Go {
        pin: decision.pinned().map(str::to_owned),
    }
}

/// The refusal response: `status`, the reason (visible ASCII and spaces
/// only, at most [`MAX_REASON`] bytes; the status's own phrase when nothing
/// is left) as a text/plain body, and `Connection: close`.
pub(super) fn refusal(status: u16, reason: &str) -> Vec<u8> {
    let mut body: Vec<u8> = reason
        .bytes()
        .filter(|b| (0x20..=0x7e).contains(b))
        .take(MAX_REASON)
        .collect();
    if body.iter().all(|&b| b == b' ') {
        body = reply::reason(status).as_bytes().to_vec();
    }
    body.push(b'\n');
    let mut out = Vec::with_capacity(body.len() + 128);
    reply::write_response(&mut out, status, "text/plain", &[], &body, false);
    out
}

/// Asks `on_http_request` for header edits to the plain request whose raw
/// head is at the front of `raw`, and applies them to `forwarded`.
pub(super) fn http_request(
    hooks: &dyn Hooks,
    raw: &[u8],
    peer: SocketAddr,
    tls: bool,
    forwarded: &mut Vec<u8>,
) {
    let mut edits = HeaderEdits::default();
    if with_request(raw, peer, tls, |r| hooks.on_http_request(r, &mut edits)).is_some() {
        apply(forwarded, &edits, "on_http_request");
    }
}

/// What `on_http_response` is called with: the hooks, and the request as it
/// was forwarded to the backend (the client's head is no longer at hand
/// while the response comes back: the request side reads its body).
#[derive(Clone, Copy)]
pub(crate) struct ResponseHook<'a> {
    pub hooks: &'a dyn Hooks,
    pub peer: SocketAddr,
    pub tls: bool,
    /// The head sent to the backend.
    pub forwarded: &'a [u8],
}

impl ResponseHook<'_> {
    /// Asks `on_http_response` for edits to the final response head
    /// `resp_head` (as it will be written to the client) and applies them.
    pub(crate) fn edit(&self, status: u16, resp_head: &mut Vec<u8>) {
        let mut edits = HeaderEdits::default();
        let called = with_request(self.forwarded, self.peer, self.tls, |r| {
            self.hooks.on_http_response(r, status, &mut edits)
        });
        if called.is_some() {
            apply(resp_head, &edits, "on_http_response");
        }
    }
}

/// Removes, then adds, the fields `edits` asks for (those that may be).
fn apply(head: &mut Vec<u8>, edits: &HeaderEdits, hook: &'static str) {
    if edits.is_empty() {
        return;
    }
    edit::remove_fields(head, &edits.remove);
    let fields = edits.add.iter().map(|(n, v)| (n.as_str(), v.as_str()));
    let dropped = edit::append_fields(head, fields);
    if dropped > 0 {
        tracing::debug!(hook, dropped, "headers that may not be written dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &[u8] =
        b"GET /chat?token=t HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer t\r\n\r\nbody";

    fn peer() -> SocketAddr {
        "127.0.0.1:5000".parse().expect("addr")
    }

    #[test]
    fn the_view_holds_the_parsed_head() {
        let seen = with_request(RAW, peer(), true, |r| {
            (
                r.method.to_string(),
                r.path().to_string(),
                r.query().map(str::to_string),
                r.header("authorization").map(<[u8]>::to_vec),
                r.headers.len(),
                r.tls,
            )
        });
        let want = (
            "GET".to_string(),
            "/chat".to_string(),
            Some("token=t".to_string()),
            Some(b"Bearer t".to_vec()),
            2,
            true,
        );
        assert_eq!(seen, Some(want));
        assert!(with_request(b"GET / HTTP/1.1\r\n", peer(), false, |_| ()).is_none());
    }

    #[test]
    fn a_refusal_is_a_short_clean_text_answer_that_closes() {
        let out = String::from_utf8(refusal(401, "bad\r\ntoken\0 é")).expect("ascii");
        assert!(out.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{out}");
        assert!(out.contains("Connection: close\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\nbadtoken \n"), "{out}");
        let long = refusal(403, &"x".repeat(5000));
        assert!(long.len() < MAX_REASON + 200);
        let empty = String::from_utf8(refusal(429, "\r\n")).expect("ascii");
        assert!(empty.ends_with("Too Many Requests\n"), "{empty}");
    }

    #[test]
    fn a_decision_adds_only_the_fields_that_may_be_forwarded() {
        let mut fwd = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n".to_vec();
        let d = Decision::accept()
            .pin("b")
            .header("X-User", "alice")
            .header("Upgrade", "h2c")
            .header("X-Evil", "a\r\nInjected: 1");
        match decide(&d, &mut fwd) {
            Handshake::Go { pin } => assert_eq!(pin.as_deref(), Some("b")),
            Handshake::Refuse { .. } => panic!("refused"),
        }
        assert_eq!(fwd, b"GET / HTTP/1.1\r\nHost: h\r\nX-User: alice\r\n\r\n");
        let refused = decide(&Decision::refuse(401, "no"), &mut fwd);
        assert!(matches!(refused, Handshake::Refuse { .. }));
    }
}
