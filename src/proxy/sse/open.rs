//! Opening a fallback session: the WebSocket upgrade the balancer asks the
//! backend for on behalf of a client that wants an event stream, and, once
//! the backend said 101, the session's tasks (the relay over an in-memory
//! pipe, the adapter on its other end) and the stream's first event.

use std::rc::Rc;
use std::sync::Arc;

use base64::Engine as _;
use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf};

use super::stream;
use crate::hub::sse::{SseShared, SseToken};
use crate::proto::http::edit::drop_fields;
use crate::proto::http::headers::push_field;
use crate::proto::sse::{write_open, write_retry, STREAM_HEAD};
use crate::proxy::conns::{ConnEntry, ConnKind};
use crate::proxy::env::Env;
use crate::proxy::handoff::Upgrade;
use crate::proxy::{ClientConn, ListenerKind};
use crate::rt::mem_pipe::{mem_pipe, MemPipe};

/// A fallback session on its way: its own connection entry (its id is the
/// one the backend and the message hub know) and the upgrade's key.
pub(crate) struct Opening {
    pub entry: ConnEntry,
    key: String,
}

/// Client fields the upgrade must not carry on: the balancer writes its
/// own handshake, and `Last-Event-ID` is the stream's business.
const REPLACED: [&[u8]; 5] = [
    b"last-event-id",
    b"sec-websocket-key",
    b"sec-websocket-version",
    b"sec-websocket-extensions",
    b"sec-websocket-accept",
];

impl Opening {
    /// A new session's entry, unless the balancer already holds as many
    /// fallback sessions as `--max-connections` (each holds a backend
    /// connection even while its stream is away).
    pub(crate) fn new(env: &Env) -> Option<Opening> {
        if env.router.sse.len() >= env.cfg().max_connections {
            return None;
        }
        let mut raw = [0u8; 16];
        fastrand::fill(&mut raw);
        let key = base64::engine::general_purpose::STANDARD.encode(raw);
        Some(Opening {
            entry: env.conns.insert(),
            key,
        })
    }

    /// Turns the head forwarded for the client's GET into a WebSocket
    /// upgrade (no extension offered: events carry whole messages).
    pub(crate) fn edit_head(&self, head: &mut Vec<u8>) {
        if !head.ends_with(b"\r\n\r\n") {
            return;
        }
        drop_fields(head, |name| {
            REPLACED.iter().any(|r| name.eq_ignore_ascii_case(r))
        });
        // The new fields go before the empty line that ends the head.
        head.truncate(head.len() - 2);
        push_field(head, b"Connection", b"Upgrade");
        push_field(head, b"Upgrade", b"websocket");
        push_field(head, b"Sec-WebSocket-Version", b"13");
        push_field(head, b"Sec-WebSocket-Key", self.key.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
}

/// The backend accepted: starts the session's tasks and turns this
/// connection into its event stream. Returns whether the client's writer
/// is still intact.
pub(crate) async fn begin<S>(
    env: &Rc<Env>,
    client: &mut ClientConn<S>,
    upgrade: Upgrade,
    opening: Opening,
) -> bool
where
    S: AsyncReadRent + AsyncWriteRent + 'static,
    OwnedReadHalf<S>: crate::rt::ready::ReadReady,
{
    let cfg = env.cfg();
    let (near, far) = mem_pipe();
    let token = match SseToken::random() {
        Ok(v) => v,
        Err(e) => {
            if let Some(held) = env.exhaustion_log.allow() {
                tracing::warn!(error = %e, held, "cannot start a fallback session");
            }
            client.answer(503, cfg.idle_timeout).await;
            return !client.writer_cut;
        }
    };
    let conn_id = env.router.ids.format(opening.entry.handle.id);
    let buffer = usize::try_from(cfg.fallback_buffer).unwrap_or(usize::MAX);
    let shared = Arc::new(SseShared::new(token, buffer));
    env.router.sse.insert(shared.clone());
    tracing::debug!(session = %conn_id, token = %token.short(), "fallback session opened");
    opening.entry.handle.set_kind(ConnKind::WebSocket);
    monoio::spawn(run_relay(
        env.clone(),
        near,
        client.peer,
        client.tls,
        upgrade,
        opening.entry,
    ));
    monoio::spawn(super::adapter::run(env.clone(), far, shared.clone()));
    let mut first = Vec::with_capacity(512);
    first.extend_from_slice(STREAM_HEAD);
    write_retry(&mut first, cfg.fallback_retry.as_millis() as u64);
    write_open(&mut first, &token.to_string(), &conn_id);
    client.answered.set(200);
    stream::serve(env, client, shared, 1, 0, first).await
}

/// The session itself: the usual relay, with the pair's near end as its
/// client (the client's address and TLS flag are the stream's).
async fn run_relay(
    env: Rc<Env>,
    near: MemPipe,
    peer: std::net::SocketAddr,
    tls: bool,
    upgrade: Upgrade,
    entry: ConnEntry,
) {
    // The stream's TLS, for what the session reports of its client.
    let kind = if tls {
        ListenerKind::Tls
    } else {
        ListenerKind::Plain
    };
    let handle = entry.handle.clone();
    let mut client = ClientConn::new(near, peer, kind, handle, 2 * 1024, None);
    let (open, conn) = crate::proxy::open_session(&env, &mut client, upgrade);
    let intact = crate::proxy::relay(&env, &mut client, conn, &open).await;
    crate::proxy::end_session(&env, &client, open);
    if intact {
        crate::proxy::shut_client(&env, &mut client).await;
    }
    drop(entry);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forwarded_get_becomes_an_upgrade_with_our_key() {
        let o = Opening {
            entry: Rc::new(crate::proxy::conns::ConnTable::new(0)).insert(),
            key: "a2V5".into(),
        };
        let mut head = b"GET /ws?x=1 HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\nLast-Event-ID: x.1\r\nSec-WebSocket-Key: theirs\r\nCookie: c=1\r\n\r\n".to_vec();
        o.edit_head(&mut head);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "GET /ws?x=1 HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\nCookie: c=1\r\n\
             Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: a2V5\r\n\r\n"
        );
    }
}
