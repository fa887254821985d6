//! Hooks: how an embedding program sees and steers what passes through the
//! balancer. Every method has a no-op default; a balancer built without
//! hooks never calls any (the proxy checks one `Option` per event).
//!
//! Hooks about a connection run on the worker thread that owns it, inside
//! its event loop; the pool events run where the change happens (see
//! [`Hooks::on_backend_up`]). Either way they must return quickly and never
//! block (no file or network I/O, no locks held for long). Hand slow work to
//! another thread.
//!
//! Header names and values a hook asks to write are checked first: a name
//! must be a token, a value at most 8 KiB with no control bytes (no CR, LF
//! or NUL; a tab is fine), and the framing, hop-by-hop and handshake fields
//! (`Content-Length`, `Transfer-Encoding`, `Connection`, `Upgrade`, `Host`,
//! `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Sec-WebSocket-*`) may
//! be neither added nor removed. What fails the check is dropped (logged at
//! debug level), never written.

use std::net::SocketAddr;
use std::time::Duration;

/// A client request as the hooks see it: the parsed head, borrowed. Built
/// only when hooks are set, and only for the calls that take it.
pub struct Request<'a> {
    /// The client's address (the TCP peer).
    pub peer: SocketAddr,
    /// Whether the client connected over TLS.
    pub tls: bool,
    /// The method, as sent (`GET`, `POST`, ...).
    pub method: &'a str,
    /// The request target, as sent (path and query).
    pub target: &'a str,
    /// Every header field in order, names as sent.
    pub headers: &'a [(&'a str, &'a [u8])],
}

impl<'a> Request<'a> {
    /// The path part of the target (before any `?`).
    pub fn path(&self) -> &'a str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The query part of the target (after the first `?`), if any.
    pub fn query(&self) -> Option<&'a str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The first header named `name` (compared without case).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// What `on_handshake` decides about a WebSocket upgrade.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    refuse: Option<(u16, String)>,
    pin: Option<String>,
    headers: Vec<(String, String)>,
}

impl Decision {
    /// Let the handshake go on as usual.
    pub fn accept() -> Self {
        Decision::default()
    }

    /// Refuse the handshake with `status` (400 to 599; anything else is
    /// answered 403) and a short plain-text `reason` as the body.
    pub fn refuse(status: u16, reason: impl Into<String>) -> Self {
        let status = if (400..=599).contains(&status) {
            status
        } else {
            403
        };
        Decision {
            refuse: Some((status, reason.into())),
            ..Decision::default()
        }
    }

    /// Send the session to the backend with this id, when it is in the pool
    /// and available; otherwise the handshake is answered 503.
    pub fn pin(mut self, backend_id: impl Into<String>) -> Self {
        self.pin = Some(backend_id.into());
        self
    }

    /// Add a header to the request forwarded to the backend (for instance
    /// the user an authentication hook found). Names and values that are
    /// not valid header text, and the fields no hook may write (see the
    /// module page), are dropped, not forwarded.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The refusal's status and reason, if the handshake is refused.
    pub fn refusal(&self) -> Option<(u16, &str)> {
        self.refuse.as_ref().map(|(s, r)| (*s, r.as_str()))
    }

    /// The backend id the session is pinned to, if any.
    pub fn pinned(&self) -> Option<&str> {
        self.pin.as_deref()
    }

    /// The headers added to the forwarded request.
    pub fn added_headers(&self) -> &[(String, String)] {
        &self.headers
    }
}

/// One proxied WebSocket session, as the hooks see it.
#[derive(Clone, Debug)]
pub struct Session {
    /// The session's id on this balancer (unique among live sessions; the
    /// connection's id, which carries its worker's number in the top 16
    /// bits).
    pub id: u64,
    /// The session's connection id as the admin API, the control channel
    /// and the backend (`X-Wslb-Conn`) know it; unique across workers and
    /// restarts.
    pub conn: String,
    /// The worker that owns it.
    pub worker: usize,
    /// The client's address.
    pub peer: SocketAddr,
    /// The request path of the upgrade (without the query).
    pub path: String,
    /// The backend's id.
    pub backend: String,
}

/// How a session ended, for `on_disconnect`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionEnd {
    /// What ended the session, first come first noted. In inspect mode: the
    /// code of the first close frame received from either side (1005 when
    /// it carried none); the code the balancer closed with for a protocol
    /// error (1002, 1007, 1009), a ping timeout (1001) or a close command
    /// (drain timeout, admin: its code); 1006 when a side's connection was
    /// lost (or a write to it failed) without a close frame. In tunnel mode,
    /// where frames are not parsed: 1005 when both directions ended with an
    /// orderly end of stream, 1006 otherwise.
    pub code: u16,
    /// How long the session lasted.
    pub duration: Duration,
    /// Bytes read from the client after the upgrade: frames as sent,
    /// headers included, including messages a hook dropped or answered.
    pub bytes_in: u64,
    /// Bytes read from the backend after the upgrade.
    pub bytes_out: u64,
}

/// Which way a message travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the client toward the backend.
    ClientToBackend,
    /// From the backend toward the client.
    BackendToClient,
}

/// What `on_message` is given, and when.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MessageMode {
    /// `on_message` is never called (the default; costs nothing).
    #[default]
    Off,
    /// Called once per whole message: fragmented messages are reassembled
    /// first (bounded by `--max-message-size`; a bigger one closes the
    /// session with 1009), so a message is forwarded only after the hook has
    /// seen all of it. A forwarded message goes on as one frame.
    Whole,
    /// Called once per data frame, as soon as that frame is complete
    /// (`Message::fin` says whether it is the last of its message); frames
    /// are forwarded one by one, nothing waits for the rest of the message.
    /// What the hook answers for the first frame of a message applies to
    /// the whole message (the answers for later frames are ignored; a reply
    /// is sent once).
    Fragments,
}

/// A WebSocket data message (or, in [`MessageMode::Fragments`], one frame
/// of it) as `on_message` sees it.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    /// Which way it travels.
    pub direction: Direction,
    /// Text (true) or binary (false).
    pub text: bool,
    /// The payload (unmasked).
    pub payload: &'a [u8],
    /// Whether this is the whole message, or the last frame of it.
    pub fin: bool,
    /// Whether this frame is the first of its message.
    pub first: bool,
}

/// What `on_message` decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Relay the message as it is (in [`MessageMode::Whole`], as one frame).
    Forward,
    /// The hook dealt with it: do not relay it (the seed's `Handled`).
    Handled,
    /// Do not relay it; send this message back to its sender instead.
    Reply(Reply),
}

/// A message sent back by a hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

/// A backend as the pool events report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendEvent {
    /// Its id.
    pub id: String,
    /// Its primary URL.
    pub url: String,
    /// Whether it registered itself (false: a static backend).
    pub registered: bool,
}

/// The binding `/_lb/pick` hands a client instead of proxying it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The chosen backend's id.
    pub id: String,
    /// The URL the client is sent to.
    pub url: String,
}

/// Header changes a hook asks for on a request or a response: the removals
/// are applied first, then the additions (so removing a name and adding it
/// replaces it). The fields no hook may write (see the module page) can be
/// neither added nor removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Fields to add (name, value).
    pub add: Vec<(String, String)>,
    /// Fields to remove, by name (without case); all fields of that name go.
    pub remove: Vec<String>,
}

impl HeaderEdits {
    /// Whether no change was asked for.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// Callbacks an embedding program implements to see and steer traffic.
/// Every method has a no-op default.
pub trait Hooks: Send + Sync + 'static {
    /// A WebSocket upgrade arrived and passed the balancer's own checks
    /// (origin, version, key): accept, refuse, pin it to a backend or add
    /// headers (the seed's OnHandshake). A refusal is answered with its
    /// status, the reason as a text/plain body (visible ASCII only, at most
    /// 256 bytes) and `Connection: close`. A pinned session whose backend
    /// fails to connect is answered 502 (504 on a timeout), never moved to
    /// another backend.
    fn on_handshake(&self, _req: &Request<'_>) -> Decision {
        Decision::accept()
    }

    /// A WebSocket session is established (the backend answered 101).
    fn on_connect(&self, _session: &Session) {}

    /// A WebSocket session ended.
    fn on_disconnect(&self, _session: &Session, _end: &SessionEnd) {}

    /// Which messages `on_message` is given (asked once, at start).
    fn message_mode(&self) -> MessageMode {
        MessageMode::Off
    }

    /// A data message (or frame, see [`MessageMode`]) passes through a
    /// session in inspect mode (OnMessage, OnBinary, OnFragmented), either
    /// way, before it is forwarded. Control frames (ping, pong, close) are
    /// never shown. A reply goes back to the sender (masked toward the
    /// backend), after any fragmented message already going that way. With
    /// a negotiated extension (permessage-deflate) payloads are shown as
    /// sent, compressed. Tunnel mode relays bytes without parsing frames and
    /// never calls this.
    fn on_message(&self, _session: &Session, _msg: &Message<'_>) -> Verdict {
        Verdict::Forward
    }

    /// A backend joined the pool: it registered over the control channel
    /// (called on the worker running that channel, followed at once by
    /// `on_backend_ready`; a backend that expired and heartbeats again joins
    /// anew), or it is a static backend (called once for each on the thread
    /// that starts the balancer, after the workers are up and before they
    /// accept, followed by `on_backend_ready`). A re-registration of a
    /// backend already in the pool is no new join.
    fn on_backend_up(&self, _backend: &BackendEvent) {}

    /// A backend is ready for traffic: right after `on_backend_up`, and when
    /// a drain ends (a `resume` or a re-registration on its control channel,
    /// on that channel's worker; a resume through the admin API, on the
    /// admin API's thread).
    fn on_backend_ready(&self, _backend: &BackendEvent) {}

    /// A backend left the pool or started draining: it deregistered, or its
    /// control channel ended while it was registered (both on the worker
    /// running that channel); it missed its heartbeats (on the registry's
    /// expiry thread, `wslb-registry`); a drain started (on the channel's
    /// worker for a `drain` message, on the admin API's thread for a drain
    /// through the admin API). Said once per change: a second drain of a
    /// draining backend says nothing.
    fn on_backend_down(&self, _backend: &BackendEvent) {}

    /// `/_lb/pick` chose a backend: return the binding to hand out
    /// (OnBeforeSendServerBinding). Only the returned `url` is used (the
    /// JSON `url` and the redirect's `Location`; the JSON `id` stays the
    /// chosen backend's); a URL that is empty, longer than 2048 bytes or not
    /// visible ASCII is answered 500 instead.
    fn on_pick(&self, _req: &Request<'_>, binding: Binding) -> Binding {
        binding
    }

    /// A plain HTTP request (not a WebSocket upgrade, not one of the
    /// balancer's own `/_lb/` endpoints) is about to be forwarded: `edits`
    /// change the head sent to the backend (called once per request, even
    /// when it is retried on another backend).
    fn on_http_request(&self, _req: &Request<'_>, _edits: &mut HeaderEdits) {}

    /// A backend's final response head to a plain HTTP request is about to
    /// be relayed to the client: `edits` change the head the client gets.
    /// Not called for interim (1xx) responses, a WebSocket upgrade's 101, or
    /// the balancer's own answers (502, 503, ...). The client's head is no
    /// longer at hand by then (its body may be streaming), so `req` is the
    /// request as it was forwarded to the backend, parsed again: method and
    /// target as the client sent them, the headers after the balancer's
    /// rewrite (hop-by-hop fields gone, `X-Forwarded-*` added) and
    /// `on_http_request`'s edits.
    fn on_http_response(&self, _req: &Request<'_>, _status: u16, _edits: &mut HeaderEdits) {}

    /// A live event: every event the admin API's `GET /api/events` stream
    /// carries (sessions opened and closed, handshakes refused, backends
    /// registered, ready, drained or left), whether or not anyone reads
    /// that stream. Lifecycle events always; a message's metadata
    /// ([`EventKind::Message`](crate::hub::EventKind::Message)) only when
    /// [`Hooks::message_events`] returns true. Called on the thread where
    /// the event happens (a worker for a session or a refused handshake;
    /// for a backend, where the pool events run, see
    /// [`Hooks::on_backend_up`]), after the matching `on_backend_*` call.
    fn on_event(&self, _event: &crate::hub::Event) {}

    /// Whether [`Hooks::on_event`] is given every data message's metadata
    /// too (id, direction, opcode, length, fragmented). Asked whenever a
    /// message passes: return a constant. Off by default; it costs an
    /// event per message.
    fn message_events(&self) -> bool {
        false
    }
}

/// The hooks that do nothing (what a balancer without hooks behaves as).
pub struct NoHooks;

impl Hooks for NoHooks {}
