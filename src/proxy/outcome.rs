//! What one HTTP exchange takes (`ExchangeOpts`) and how it ends
//! (`ExchangeEnd`, `ExchangeError`): shared by the exchange and its request
//! and response halves.

use std::time::Duration;

use super::hook_calls::ResponseHook;
use super::request_body::BodyDeadline;
use crate::proto::http::Limits;
use crate::rt::notify::LocalEvent;
use crate::rt::rate::ConnRates;

/// How an exchange ended well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExchangeEnd {
    /// A final response was relayed whole.
    Done {
        backend_reusable: bool,
        client_keep_alive: bool,
    },
    /// The backend answered 101: the caller relays WebSocket now.
    Upgraded(Box<Switched>),
}

/// What a backend's 101 said that the session needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Switched {
    /// It negotiated an extension (RSV bits may be used).
    pub extensions: bool,
    /// The subprotocol it chose.
    pub subprotocol: Option<Box<str>>,
    /// The channels it put the session in (`X-Wslb-Channels`, removed
    /// from what the client sees), as sent.
    pub channels: Option<String>,
}

/// How an exchange failed, and what may still be done about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExchangeError {
    /// The backend closed or reset before sending a byte back (nothing was
    /// sent to the client).
    ClosedEarly,
    /// The backend closed or reset before answering while the request body
    /// was still streaming from the client (nothing was sent to the
    /// client): 502 and close, no retry, and the backend is not blamed (it
    /// may have given up on a slow client).
    ClosedDuringBody,
    /// No answer in time, or the backend took none of the request body for
    /// the backend timeout.
    Timeout { response_started: bool },
    /// The backend broke off or sent something that is not HTTP.
    Failed {
        response_started: bool,
        detail: &'static str,
    },
    /// The client did not send its request body in time: 408 when no
    /// response byte went out yet, else just close. Not the backend's fault.
    ClientTimeout { response_started: bool },
    /// The client went away, broke its own request, or stopped reading (a
    /// write toward it got nowhere for the idle timeout); nothing to answer.
    ClientGone,
}

/// Timeouts and limits of one exchange.
#[derive(Clone, Copy)]
pub(crate) struct ExchangeOpts<'a> {
    pub limits: Limits,
    /// Longest wait for the response head once the request went whole (or
    /// for each body write the backend does not take, while it streams).
    pub head_timeout: Duration,
    /// Longest wait for each read once the response started.
    pub read_timeout: Duration,
    /// Longest wait for one read of the request body (the writes toward
    /// the client are bounded by their `ClientWriter`).
    pub client_timeout: Duration,
    /// When the request body must be complete.
    pub body_deadline: BodyDeadline,
    pub client_keep_alive: bool,
    /// The worker's drain event: a response head written after it fired
    /// says `Connection: close`, since the connection closes after it.
    pub draining: &'a LocalEvent,
    /// `on_http_response`, for a plain request when hooks are set.
    pub response_hook: Option<&'a ResponseHook<'a>>,
    /// The client connection's bandwidth limit (`None`: none).
    pub rate: Option<&'a ConnRates>,
    /// What the response side notes for the access log and metrics.
    pub facts: &'a ExchangeFacts,
    /// The timer that backend reads are bounded by (kept per client
    /// connection and moved, not re-created per read).
    pub backend_timer: &'a crate::rt::deadline::Deadline,
    /// A fallback session's upgrade (the balancer's own, for a client that
    /// asked for an event stream; the key is the one in the head sent): its
    /// 101 is kept from the client; any other answer is relayed.
    pub fallback: bool,
}

/// What an exchange notes about the backend's final response head: its
/// status and when it was read.
#[derive(Debug, Default)]
pub(crate) struct ExchangeFacts {
    pub status: std::cell::Cell<u16>,
    /// When the final head was read (`rt::clock::now_ns`; 0: not yet).
    pub head_at: std::cell::Cell<u64>,
}
