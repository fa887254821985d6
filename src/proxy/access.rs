//! What the proxy reports when a request or a WebSocket session ends: its
//! access log line (when the log is on) and its metrics. A request's facts
//! are gathered as it goes into a [`RequestRecord`] (plain fields, no
//! allocation); one clock read at its start and one at its end.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::rt::clock::{micros_between, now_ns};
use crate::rt::log_line::{key, write_addr};

use monoio::io::AsyncWriteRent;

use super::env::Env;
use super::metrics::{class_slot, close_slot};
use super::session::WsSession;
use super::ClientConn;
use crate::hub::events::ClosedBy;
use crate::pool::Backend;

/// The status logged for a request whose client went away (or stopped
/// reading) before an answer went out, as nginx does.
pub(crate) const CLIENT_GONE: u16 = 499;

/// The request line's method and target, copied for the log (the client's
/// buffer moves on before the request ends); reused per connection.
#[derive(Default)]
pub(crate) struct RequestLine {
    bytes: Vec<u8>,
    method_len: usize,
    /// The connection's client address, written once.
    peer: Vec<u8>,
}

impl RequestLine {
    /// Writes the connection's client address once, for all its lines.
    pub(crate) fn set_peer(&mut self, peer: SocketAddr) {
        self.peer.clear();
        write_addr(&mut self.peer, peer);
    }

    /// Copies the method (the head's first word) and `target` from `head`.
    pub(crate) fn copy(&mut self, head: &[u8], target: std::ops::Range<usize>) {
        self.bytes.clear();
        let method_len = head.iter().take(32).position(|&b| b == b' ').unwrap_or(0);
        self.bytes.extend_from_slice(&head[..method_len]);
        self.method_len = method_len;
        if let Some(t) = head.get(target) {
            // A fallback session's token lets its holder post into the
            // session: the log keeps only its start.
            const SSE: &[u8] = b"/_lb/sse/";
            if t.starts_with(SSE) && t.len() > SSE.len() + 8 {
                self.bytes.extend_from_slice(&t[..SSE.len() + 8]);
                self.bytes.extend_from_slice(b"...");
            } else {
                self.bytes.extend_from_slice(t);
            }
        }
    }

    /// Forgets the last request (a head that did not parse has none).
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.method_len = 0;
    }

    fn method(&self) -> &[u8] {
        &self.bytes[..self.method_len]
    }

    fn target(&self) -> &[u8] {
        &self.bytes[self.method_len..]
    }
}

/// What is known about one request as it goes.
pub(crate) struct RequestRecord {
    /// `rt::clock::now_ns` when the head was read.
    start: u64,
    /// The status answered (0 until one is known).
    pub status: u16,
    /// The backend that answered, or the last one tried.
    pub backend: Option<Arc<Backend>>,
    /// Microseconds from the start to the backend's response head.
    pub backend_us: Option<u64>,
    /// Backend attempts (connections tried or requests sent).
    pub attempts: u32,
    consumed_before: u64,
    sent_before: u64,
}

impl RequestRecord {
    /// A request starting now on `client` (its head just read).
    pub(crate) fn begin<S: AsyncWriteRent>(client: &ClientConn<S>) -> Self {
        client.answered.set(0);
        RequestRecord {
            start: now_ns(),
            status: 0,
            backend: None,
            backend_us: None,
            attempts: 0,
            consumed_before: client.buf.consumed_total(),
            sent_before: client.sent.get(),
        }
    }

    /// When the request started (for the backend time).
    pub(crate) fn start(&self) -> u64 {
        self.start
    }
}

/// Reports a request that ended on `client`: `line` is its request line
/// (empty when the head did not parse), `head_len` its head's size.
pub(crate) fn request_done<S: AsyncWriteRent>(
    env: &Env,
    client: &ClientConn<S>,
    rec: RequestRecord,
    line: &RequestLine,
    head_len: usize,
) {
    let end = now_ns();
    let total_us = micros_between(rec.start, end);
    let status = if rec.status == 0 {
        CLIENT_GONE
    } else {
        rec.status
    };
    let m = &env.metrics;
    m.shared.request_duration.record(total_us);
    let retries = rec.attempts.saturating_sub(1);
    if retries > 0 {
        m.shared.retries.add(u64::from(retries));
    }
    m.with_series(rec.backend.as_deref(), |s| {
        s.requests[class_slot(status)].add(1);
        if let Some(us) = rec.backend_us {
            s.record_latency(us);
        }
        if !env.log.is_on() {
            return;
        }
        let bytes_in = (client.buf.consumed_total() - rec.consumed_before).max(head_len as u64);
        let bytes_out = client.sent.get() - rec.sent_before;
        env.log.line(end, "http", |l| {
            if line.peer.is_empty() {
                l.addr(key!("client"), client.peer);
            } else {
                l.written_addr(key!("client"), &line.peer);
            }
            if line.method().is_empty() {
                l.text(key!("method"), b"-");
                l.text(key!("path"), b"-");
            } else {
                l.text(key!("method"), line.method());
                l.text(key!("path"), line.target());
            }
            l.num(key!("status"), u64::from(status));
            l.num(key!("bytes_in"), bytes_in);
            l.num(key!("bytes_out"), bytes_out);
            l.escaped(key!("backend"), &s.id_text, &s.id_json);
            l.ms(key!("backend_ms"), rec.backend_us);
            l.ms(key!("total_ms"), Some(total_us));
            l.num(key!("retries"), u64::from(retries));
        });
    });
}

/// Reports a connection refused at accept (over the per-IP limit) with
/// `status` (0: closed without an answer).
pub(crate) fn refused_at_accept(env: &Env, peer: SocketAddr, status: u16) {
    env.metrics.with_series(None, |s| {
        if status != 0 {
            s.requests[class_slot(status)].add(1);
        }
    });
    env.log.line(now_ns(), "http", |l| {
        l.addr(key!("client"), peer);
        l.text(key!("method"), b"-");
        l.text(key!("path"), b"-");
        l.num(key!("status"), u64::from(status));
        l.num(key!("bytes_in"), 0);
        l.num(key!("bytes_out"), 0);
        l.text(key!("backend"), b"-");
        l.ms(key!("backend_ms"), None);
        l.ms(key!("total_ms"), Some(0));
        l.num(key!("retries"), 0);
    });
}

/// Counts a session that just opened.
pub(crate) fn session_opened(env: &Env) {
    env.metrics.shared.ws_opened.add(1);
}

/// Reports a session that ended: its counts, and its line.
pub(crate) fn session_done(env: &Env, session: &WsSession) {
    let m = &env.metrics.shared;
    let code = session.track.code();
    let (bytes_in, bytes_out) = session.track.bytes();
    let (messages_in, messages_out) = session.track.messages();
    m.ws_closed[close_slot(code)].add(1);
    m.ws_messages[0].add(messages_in);
    m.ws_messages[1].add(messages_out);
    m.ws_bytes[0].add(bytes_in);
    m.ws_bytes[1].add(bytes_out);
    if !env.log.is_on() {
        return;
    }
    let duration = micros(session.started.elapsed());
    let end = now_ns();
    let id = env.router.ids.format(session.local);
    env.log.line(end, "ws", |l| {
        l.raw(key!("id"), &id);
        l.addr(key!("client"), session.peer);
        l.text(key!("path"), session.path.as_bytes());
        l.text(key!("backend"), session.backend.as_bytes());
        l.ms(key!("duration_ms"), Some(duration));
        l.num(key!("messages_in"), messages_in);
        l.num(key!("messages_out"), messages_out);
        l.num(key!("bytes_in"), bytes_in);
        l.num(key!("bytes_out"), bytes_out);
        l.num(key!("close_code"), u64::from(code));
        l.raw(
            key!("closed_by"),
            match session.track.closed_by() {
                ClosedBy::Client => "client",
                ClosedBy::Backend => "backend",
                ClosedBy::Balancer => "balancer",
            },
        );
    });
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
