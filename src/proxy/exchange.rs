//! One HTTP request/response exchange with a backend: the request head and
//! body go up while the response comes down, both streamed at once (so a
//! backend that answers while it reads, like an echo, never deadlocks), and
//! the outcome says whether each side's connection can be kept.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;

use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::time::Instant;

use super::client_write::ClientWriter;
pub(crate) use super::outcome::{ExchangeEnd, ExchangeError, ExchangeOpts};
use super::request_body::{pump_request, BodyPump, RequestState, RequestStop};
use super::response_relay::{pump_response, Progress};
use crate::proto::http::headers::header_values;
use crate::proto::http::{BodyKind, BodyTracker, Method, ParsedRequest};
use crate::proto::ws::handshake::accept_key;
use crate::rt::io::{write_vec, ReadBuf};

/// The request side: where it comes from and how much is already buffered.
pub(crate) struct RequestSide<'a, R> {
    pub r: &'a mut R,
    pub buf: &'a mut ReadBuf,
    pub req: &'a ParsedRequest,
    /// Rewritten head to send.
    pub head: &'a [u8],
    /// Body bytes already in `buf` after the head.
    pub buffered_body: usize,
    /// The whole body is already buffered: the caller consumes it on success
    /// and may replay the request on another connection.
    pub replayable: bool,
}

/// Sends the request and relays the response. On success the caller still
/// owns the consumption of a replayable request's bytes.
///
/// A backend that stops taking the request body (it answered early, e.g. a
/// 413, and closed) does not end the exchange: its response is still
/// relayed whole, and then both connections close; its head says
/// `Connection: close` when that is known as it goes out (see
/// `pump_response`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn exchange<CR, CW, BR, BW>(
    side: RequestSide<'_, CR>,
    client_w: &mut ClientWriter<'_, CW>,
    backend_r: &mut BR,
    backend_w: &mut BW,
    backend_buf: &mut ReadBuf,
    scratch: &mut Vec<u8>,
    resp_out: &mut Vec<u8>,
    opts: ExchangeOpts<'_>,
) -> Result<ExchangeEnd, ExchangeError>
where
    CR: AsyncReadRent,
    CW: AsyncWriteRent,
    BR: AsyncReadRent,
    BW: AsyncWriteRent,
{
    let RequestSide {
        r: client_r,
        buf: client_buf,
        req,
        head,
        buffered_body,
        replayable,
    } = side;
    // The accept key a 101 must carry (computed only for upgrades).
    let expected_accept = if opts.fallback {
        header_values(head, b"sec-websocket-key")
            .next()
            .map(accept_key)
    } else if req.upgrade_websocket {
        req.ws_key
            .clone()
            .and_then(|r| client_buf.data().get(r))
            .map(accept_key)
    } else {
        None
    };
    // Head and the buffered part of the body in one write.
    let mut send = std::mem::take(scratch);
    send.clear();
    send.extend_from_slice(head);
    let start = req.head_len;
    send.extend_from_slice(&client_buf.data()[start..start + buffered_body]);

    // Since when the backend owes progress (taking the request or
    // answering): the response side's reads wait at most the backend
    // timeout past it; `None` while the backend waits on the client's body
    // (whose own deadline bounds that wait). One timer serves both sides.
    let backend_due = Cell::new(Some(Instant::now()));
    let head_sent = Cell::new(false);
    let started = Cell::new(false);
    let request_state = Cell::new(RequestState::Sending);
    let mut request_tracker = BodyTracker::new(req.body);
    let request = async {
        let (res, send) = write_vec(backend_w, send).await;
        *scratch = send;
        // A failed write is a closed connection, or a backend that answered
        // before reading: its response (if any) still decides.
        if res.is_err() {
            return Err(RequestStop::BackendStopped);
        }
        head_sent.set(true);
        if replayable {
            return Ok(());
        }
        // Re-scan what was sent so the tracker knows where the body stands.
        let sent = request_tracker
            .scan(&client_buf.data()[start..start + buffered_body])
            .map_err(|_| RequestStop::ClientGone)?;
        client_buf.consume(start + sent.consumed);
        let body = BodyPump {
            tracker: &mut request_tracker,
            received: sent.consumed as u64,
            deadline: opts.body_deadline,
            idle: opts.client_timeout,
            backend_due: &backend_due,
            expect_continue: req.expect_continue,
            continued: &started,
            rate: opts.rate.map(|r| &r.up),
        };
        pump_request(client_r, client_buf, backend_w, body).await
    };
    let response = pump_response(
        client_w,
        backend_r,
        backend_buf,
        req,
        resp_out,
        opts,
        Progress {
            started: &started,
            backend_due: &backend_due,
            request: &request_state,
            timer: opts.backend_timer,
        },
        expected_accept.as_deref(),
    );

    let mut request = pin!(request);
    let mut response = pin!(response);
    let mut request_pending = true;
    let request_whole = || request_state.get() == RequestState::Whole;
    let outcome = poll_fn(|cx| {
        if request_pending {
            if let Poll::Ready(r) = request.as_mut().poll(cx) {
                request_pending = false;
                // Before the response is polled: a head it writes from
                // here on knows where the request stands.
                request_state.set(if r.is_ok() {
                    RequestState::Whole
                } else {
                    RequestState::Stopped
                });
                // Nothing more to send: the backend owes the answer from
                // now on (the response is polled right below, and arms its
                // timer on this). A request sent in one write keeps the
                // due time of its start: no timer moves on the hot path.
                if !(replayable && r.is_ok()) {
                    backend_due.set(Some(Instant::now()));
                }
                match r {
                    Ok(()) | Err(RequestStop::BackendStopped) => {}
                    Err(RequestStop::ClientGone) => {
                        return Poll::Ready(Err(ExchangeError::ClientGone))
                    }
                    Err(RequestStop::ClientTimeout) => {
                        return Poll::Ready(Err(ExchangeError::ClientTimeout {
                            response_started: started.get(),
                        }))
                    }
                }
            }
        }
        response.as_mut().poll(cx)
    })
    .await;
    match outcome {
        Ok(ExchangeEnd::Done {
            backend_reusable,
            client_keep_alive,
        }) => {
            // A response that ended before its request body was sent whole
            // leaves both connections in an unknown state: close them (the
            // head said so when that was known as it went out, see
            // `pump_response`). A body on a method that gives it no meaning
            // may have been ignored by the backend and left unread on the
            // connection (the next request would be answered with its bytes).
            let body_may_be_unread = req.body != BodyKind::Empty
                && matches!(
                    req.method,
                    Method::Get
                        | Method::Head
                        | Method::Delete
                        | Method::Options
                        | Method::Trace
                        | Method::Connect
                );
            Ok(ExchangeEnd::Done {
                backend_reusable: backend_reusable && request_whole() && !body_may_be_unread,
                client_keep_alive: client_keep_alive && request_whole(),
            })
        }
        // Closed while the client's body was still coming: many backends
        // do that at their own body timeout, so a slow client must not get
        // the backend blamed (nor the request replayed).
        Err(ExchangeError::ClosedEarly) if !replayable && head_sent.get() && !request_whole() => {
            Err(ExchangeError::ClosedDuringBody)
        }
        other => other,
    }
}

/// Flushes and closes the write side of a connection, ignoring errors.
pub(crate) async fn shutdown_quietly<W: AsyncWriteRent>(w: &mut W) {
    let _ = w.shutdown().await;
}
