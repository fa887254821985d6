//! Per-connection flow: read a request, classify it (plain HTTP, WebSocket
//! upgrade, the balancer's own `/_lb/` endpoints, the WebSocket fallback
//! over Server-Sent Events), pick a backend, relay.

pub(crate) mod access;
pub(crate) mod backend;
pub(crate) mod backend_stream;
pub(crate) mod channels;
pub(crate) mod client_write;
pub(crate) mod conns;
pub(crate) mod control;
pub(crate) mod endpoints;
pub(crate) mod env;
pub(crate) mod exchange;
#[cfg(test)]
mod flow_tests;
pub(crate) mod handoff;
mod hook_calls;
pub(crate) mod http_flow;
pub(crate) mod hub_worker;
pub(crate) mod metrics;
mod outbound;
pub(crate) mod outcome;
pub(crate) mod pool_events;
mod refusal;
pub(crate) mod request_body;
mod request_head;
mod response_relay;
pub(crate) mod session;
pub(crate) mod sse;
#[cfg(test)]
mod test_io;
mod track;
pub(crate) mod tunnel;
pub(crate) mod ws_hooks;
mod ws_messages;
mod ws_notes;
mod ws_pinger;
pub(crate) mod ws_relay;

use std::net::SocketAddr;
use std::rc::Rc;

use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf, Split, Splitable};

use crate::config::WsMode;
use crate::proxy::conns::ConnHandle;
use crate::rt::io::{self, ReadBuf};

use crate::proxy::env::Env;

/// Whether a listener terminates TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListenerKind {
    Plain,
    Tls,
    /// The backend control channel's own listener.
    Control,
}

impl ListenerKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Plain => "http",
            ListenerKind::Tls => "https",
            ListenerKind::Control => "control",
        }
    }
}

/// The client side of a proxied connection, split for concurrent relay.
pub(crate) struct ClientConn<S: AsyncWriteRent> {
    pub r: OwnedReadHalf<S>,
    pub w: OwnedWriteHalf<S>,
    pub buf: ReadBuf,
    pub peer: SocketAddr,
    pub tls: bool,
    /// Accepted on the control listener: only `/_lb/register` is served.
    pub control: bool,
    pub handle: Rc<ConnHandle>,
    /// The last request's body may not have been read whole: on close,
    /// read and drop what the client still sends for a moment, so that
    /// closing with unread bytes (a reset) does not destroy the answer.
    pub linger: bool,
    /// A write toward the client was cut short (it got nowhere for the idle
    /// timeout, failed, or was abandoned part way): the writer must never be
    /// used again, not even to shut it (a TLS one panics); the socket is
    /// just dropped.
    pub writer_cut: bool,
    /// `--throttle-bps`: the connection's two token buckets (`None`: no limit).
    pub rate: Option<Box<crate::rt::rate::ConnRates>>,
    /// Bytes written toward the client on the HTTP path (the access log's
    /// `bytes_out`).
    pub sent: std::cell::Cell<u64>,
    /// The status of the last answer the balancer gave itself (0: none
    /// since the request began).
    pub answered: std::cell::Cell<u16>,
    /// The client side's one timer: head reads and writes toward the
    /// client move it rather than each setting up a timeout of its own.
    pub timer: crate::rt::deadline::Deadline,
    /// The same for reads from this client's backends.
    pub backend_timer: crate::rt::deadline::Deadline,
}

impl<S: AsyncWriteRent + Split> ClientConn<S> {
    /// A client connection as it starts: split, with an empty read buffer
    /// of `first_read` bytes, no timer yet, nothing sent.
    pub(crate) fn new(
        stream: S,
        peer: SocketAddr,
        kind: ListenerKind,
        handle: Rc<ConnHandle>,
        first_read: usize,
        rate: Option<Box<crate::rt::rate::ConnRates>>,
    ) -> Self
    where
        S: AsyncReadRent,
    {
        let (r, w) = stream.into_split();
        ClientConn {
            r,
            w,
            buf: ReadBuf::with_capacity(first_read),
            peer,
            tls: kind == ListenerKind::Tls,
            control: kind == ListenerKind::Control,
            handle,
            linger: false,
            writer_cut: false,
            rate,
            sent: std::cell::Cell::new(0),
            answered: std::cell::Cell::new(0),
            timer: crate::rt::deadline::Deadline::new(),
            backend_timer: crate::rt::deadline::Deadline::new(),
        }
    }
}

/// After an answer sent before the request body ended: how long, and how
/// many bytes, the rest of the body is read and dropped before closing.
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);
const LINGER_BYTES: usize = 4 << 20;

/// Serves one accepted client connection (plain or TLS) until it ends.
pub(crate) async fn serve_client<S>(env: Rc<Env>, stream: S, peer: SocketAddr, kind: ListenerKind)
where
    S: AsyncReadRent + AsyncWriteRent + Split + 'static,
    OwnedReadHalf<S>: crate::rt::ready::ReadReady,
{
    let entry = env.conns.insert();
    let rate = crate::rt::rate::ConnRates::new(env.cfg().throttle_bps);
    let handle = entry.handle.clone();
    let mut client = ClientConn::new(stream, peer, kind, handle, 2 * 1024, rate);
    // The request machinery is boxed so that it is freed before a
    // WebSocket session starts: a long idle session then costs only the
    // relay's own state and two small read buffers.
    let next = Box::pin(http_flow::run(&env, &mut client)).await;
    // False when a write toward the client was cut short (on the HTTP path,
    // or abandoned part way by a relay: a client that stopped reading): such
    // a writer must not be used again (a TLS one panics), and the socket is
    // just closed.
    let mut writer_intact = !client.writer_cut;
    match next {
        None => {}
        Some(http_flow::Handoff::Session(upgrade)) => {
            let (open, conn) = open_session(&env, &mut client, upgrade);
            writer_intact = relay(&env, &mut client, conn, &open).await;
            end_session(&env, &client, open);
        }
        // The event stream keeps both timers: one bounds its writes, the
        // other paces its keep-alives.
        Some(http_flow::Handoff::Fallback(upgrade, opening)) => {
            writer_intact = Box::pin(sse::begin(&env, &mut client, upgrade, *opening)).await;
        }
        Some(http_flow::Handoff::Resume(resume)) => {
            writer_intact = Box::pin(sse::resume(&env, &mut client, resume)).await;
        }
    }
    if writer_intact {
        // Boxed: its timers are large and cache-aligned, and would
        // otherwise sit in every connection's task for its whole life.
        Box::pin(shut_client(&env, &mut client)).await;
    }
    drop(entry);
}

/// A WebSocket session set up for its relay (see [`open_session`]).
pub(crate) struct OpenSession {
    session: Rc<session::WsSession>,
    live: Option<Box<ws_hooks::Live>>,
    guard: crate::pool::stats::ActiveGuard,
    extensions: bool,
}

/// Sets up an upgraded WebSocket session (the hub and the hooks hear of
/// it); returns it and the backend connection for [`relay`]. The client is
/// a real one, or a fallback session's pipe.
pub(crate) fn open_session<S: AsyncWriteRent>(
    env: &Env,
    client: &mut ClientConn<S>,
    upgrade: handoff::Upgrade,
) -> (OpenSession, backend::BackendConn) {
    let handoff::Upgrade {
        conn,
        switched,
        guard,
        path,
        backend,
    } = upgrade;
    // The HTTP path's timers are done with: an idle session keeps none.
    client.timer.release();
    client.backend_timer.release();
    let tunnel = env.cfg().ws_mode == WsMode::Tunnel;
    // Taken apart (and its box freed): a session keeps none of the 101.
    let outcome::Switched {
        extensions,
        subprotocol,
        channels,
    } = *switched;
    let session = Rc::new(session::WsSession::new(
        client.handle.id,
        client.peer,
        backend,
        path,
        subprotocol,
        tunnel,
    ));
    client.handle.set_session(Some(session.clone()));
    hub_worker::opened(env, &session, channels.as_deref());
    drop(channels);
    // The hooks hear of the session once the 101 is out (nothing is
    // called, or allocated, without hooks).
    let live = ws_hooks::Live::begin(env, &session);
    let open = OpenSession {
        session,
        live,
        guard,
        extensions,
    };
    (open, conn)
}

/// The relay of an open session, boxed (the caller awaits it: its output is
/// whether the client's writer is still intact). The box holds the relay
/// alone, sized for its mode; the session's own state stays with the
/// caller, so an idle session costs its relay and a few words more.
pub(crate) fn relay<'a, S>(
    env: &'a Env,
    client: &'a mut ClientConn<S>,
    conn: backend::BackendConn,
    open: &'a OpenSession,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + 'a>>
where
    S: AsyncReadRent + AsyncWriteRent,
    OwnedReadHalf<S>: crate::rt::ready::ReadReady,
{
    let session = &*open.session;
    if session.tunnel {
        Box::pin(tunnel::relay(env, client, conn, session))
    } else {
        let hooks = open.live.as_deref();
        Box::pin(ws_relay::relay(
            env,
            client,
            conn,
            open.extensions,
            session,
            hooks,
        ))
    }
}

/// A session's relay has ended: the backend's count drops, the hub and
/// the hooks hear of it.
pub(crate) fn end_session<S: AsyncWriteRent>(env: &Env, client: &ClientConn<S>, open: OpenSession) {
    let OpenSession {
        session,
        live,
        guard,
        ..
    } = open;
    drop(guard);
    session.close_outbox();
    client.handle.set_session(None);
    hub_worker::closed(env, &session);
    if let Some(live) = live {
        live.end(&session.track);
    }
}

/// Shuts the client's writer (a TLS one writes close_notify: bounded like
/// any other write), then lingers when the request's body was not all read.
pub(crate) async fn shut_client<S>(env: &Env, client: &mut ClientConn<S>)
where
    S: AsyncReadRent + AsyncWriteRent,
{
    let idle = env.cfg().idle_timeout;
    let shut = monoio::time::timeout(idle, exchange::shutdown_quietly(&mut client.w)).await;
    if shut.is_ok() && client.linger {
        io::drain_briefly(&mut client.r, &mut client.buf, LINGER_BYTES, LINGER_TIME).await;
    }
}
