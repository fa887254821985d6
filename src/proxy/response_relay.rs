//! The response half of an exchange: reads the backend's response head
//! (interim 1xx heads, a 101 that must answer a real WebSocket upgrade with
//! the right accept key) and relays the body to the client, noting when the
//! first byte went to the client (after that no error answer may be sent).
//! Backend reads wait the backend timeout past a due time the request side
//! moves (its body writes, its end), never re-issuing a read to re-arm it.
//! Every write toward the client is bounded (see client_write.rs): a client
//! that stops reading ends the exchange as `ClientGone`.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::time::Instant;

use super::client_write::ClientWriter;
use super::outcome::{ExchangeEnd, ExchangeError, ExchangeOpts, Switched};
use super::request_body::RequestState;
use crate::proto::http::edit::remove_fields;
use crate::proto::http::headers::{has_header, header_values};
use crate::proto::http::{parse_response, BodyKind, BodyTracker, ParsedRequest, ParsedResponse};
use crate::rt::deadline::Deadline;
use crate::rt::io::{ReadBuf, CHUNK};

/// Small bodies ride in the same write as their head.
const COALESCE_LIMIT: usize = 4096;

/// What the response side shares with the request side of its exchange.
#[derive(Clone, Copy)]
pub(super) struct Progress<'a> {
    /// Turns true just before the first byte is written to the client.
    pub started: &'a Cell<bool>,
    /// Since when the backend owes progress (see `exchange`); `None` while
    /// it waits on the client's body.
    pub backend_due: &'a Cell<Option<Instant>>,
    /// Where the request stands: a final head written before it went whole
    /// says `Connection: close` when the rest may not get through (see
    /// [`keep_alive_now`]; RFC 9112 section 9.6).
    pub request: &'a Cell<RequestState>,
    /// The timer the backend's reads are bounded by.
    pub timer: &'a Deadline,
}

/// Whether the client connection may stay open after a final head written
/// now, as known before the backend's own say: the client asked, no drain
/// began, and the request went whole or the rest of its body may still get
/// through, which it will not if the backend stopped taking it, nor if the
/// client may withhold it (no 1xx answered its `Expect: 100-continue`).
fn keep_alive_now(opts: &ExchangeOpts<'_>, progress: Progress<'_>, req: &ParsedRequest) -> bool {
    let request = match progress.request.get() {
        RequestState::Whole => true,
        RequestState::Stopped => false,
        RequestState::Sending => !req.expect_continue || progress.started.get(),
    };
    opts.client_keep_alive && !opts.draining.is_fired() && request
}

/// Parses the backend's response head at the front of `data` (`None`: not
/// whole yet), deciding the client's keep-alive as it goes out: see
/// [`keep_alive_now`], and an early answer from a backend that closes after
/// it, while the body is still being sent, closes the client's connection
/// too (the rest of the body will not get through). Sync, so that the
/// relay's future stays small.
fn parse_head(
    data: &[u8],
    opts: &ExchangeOpts<'_>,
    progress: Progress<'_>,
    req: &ParsedRequest,
    out: &mut Vec<u8>,
) -> Result<Option<ParsedResponse>, ExchangeError> {
    let parse = |keep_alive, out: &mut Vec<u8>| {
        let (method, minor) = (req.method, req.minor_version);
        parse_response(data, &opts.limits, method, minor, keep_alive, out).map_err(|_| {
            ExchangeError::Failed {
                response_started: progress.started.get(),
                detail: "backend sent a malformed response head",
            }
        })
    };
    let Some(resp) = parse(keep_alive_now(opts, progress, req), out)? else {
        return Ok(None);
    };
    let sending = progress.request.get() == RequestState::Sending;
    if sending && resp.client_keep_alive && !resp.backend_keep_alive && !resp.informational {
        out.clear();
        return parse(false, out);
    }
    Ok(Some(resp))
}

/// Reads once from the backend. The wait ends `timeout` after the later of
/// this read's start and the backend's due time, a time the request side
/// may move (or clear) while the read is pending: the read itself is never
/// dropped and re-issued to re-arm the timer (with io_uring, bytes that
/// already arrived would go with it).
async fn read_backend<BR: AsyncReadRent>(
    backend_r: &mut BR,
    buf: &mut ReadBuf,
    timeout: Duration,
    progress: &Progress<'_>,
) -> Result<usize, ExchangeError> {
    let read_start = Instant::now();
    let mut read = pin!(buf.read_from(backend_r, CHUNK));
    let res = poll_fn(|cx| {
        if let Poll::Ready(r) = read.as_mut().poll(cx) {
            return Poll::Ready(Some(r));
        }
        // Waiting on the client's body: its deadline bounds this wait.
        let Some(due) = progress.backend_due.get() else {
            return Poll::Pending;
        };
        let at = deadline_after(due.max(read_start), timeout);
        match progress.timer.poll_until(at, cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    let started = progress.started.get();
    match res {
        Some(Ok(n)) => Ok(n),
        Some(Err(_)) => Err(ExchangeError::Failed {
            response_started: started,
            detail: "backend connection reset",
        }),
        None => Err(ExchangeError::Timeout {
            response_started: started,
        }),
    }
}

/// `from + timeout`, or a year from `from` past what the clock can hold.
fn deadline_after(from: Instant, timeout: Duration) -> Instant {
    from.checked_add(timeout)
        .unwrap_or_else(|| from + Duration::from_secs(365 * 24 * 3600))
}

async fn send_client<CW: AsyncWriteRent>(
    w: &mut ClientWriter<'_, CW>,
    buf: &mut Vec<u8>,
) -> Result<(), ExchangeError> {
    let (res, b) = w.write_vec(std::mem::take(buf)).await;
    *buf = b;
    res.map_err(|_| ExchangeError::ClientGone)
}

async fn send_client_range<CW: AsyncWriteRent>(
    w: &mut ClientWriter<'_, CW>,
    rb: &mut ReadBuf,
    n: usize,
) -> Result<(), ExchangeError> {
    let buf = std::mem::take(&mut rb.buf);
    let pos = rb.pos;
    let (res, buf) = w.write_range(buf, pos, pos + n).await;
    rb.buf = buf;
    if res.is_err() {
        // A timed-out write took the buffer with it: start over empty.
        rb.pos = 0;
        rb.buf.clear();
        return Err(ExchangeError::ClientGone);
    }
    rb.consume(n);
    Ok(())
}

/// Interim (1xx) responses relayed for one request at most.
const MAX_INTERIM_RESPONSES: usize = 8;

/// Reads the response and relays it to the client (see [`Progress`] for
/// what it shares with the request side). `expected_accept`
/// is the `Sec-WebSocket-Accept` a 101 must carry (None: the request was not
/// an upgrade, and a 101 is a protocol violation).
#[allow(clippy::too_many_arguments)]
pub(super) async fn pump_response<CW, BR>(
    client_w: &mut ClientWriter<'_, CW>,
    backend_r: &mut BR,
    buf: &mut ReadBuf,
    req: &ParsedRequest,
    resp_out: &mut Vec<u8>,
    opts: ExchangeOpts<'_>,
    progress: Progress<'_>,
    expected_accept: Option<&str>,
) -> Result<ExchangeEnd, ExchangeError>
where
    CW: AsyncWriteRent,
    BR: AsyncReadRent,
{
    let started = progress.started;
    let failed = |detail| ExchangeError::Failed {
        response_started: started.get(),
        detail,
    };
    let mut received = !buf.is_empty();
    let mut interim = 0;
    loop {
        resp_out.clear();
        let parsed = parse_head(buf.data(), &opts, progress, req, resp_out)?;
        let Some(resp) = parsed else {
            let timeout = if started.get() {
                opts.read_timeout
            } else {
                opts.head_timeout
            };
            let n = read_backend(backend_r, buf, timeout, &progress).await;
            match n {
                Ok(0) | Err(ExchangeError::Failed { .. }) if !received => {
                    return Err(ExchangeError::ClosedEarly)
                }
                Ok(0) => return Err(failed("backend closed in the middle of a response head")),
                Ok(_) => received = true,
                Err(e) => return Err(e),
            }
            continue;
        };
        if !resp.informational {
            opts.facts.status.set(resp.status);
            opts.facts.head_at.set(crate::rt::clock::now_ns());
        }
        if resp.status == 101 {
            check_switch(&buf.data()[..resp.head_len], &resp, expected_accept).map_err(failed)?;
        }
        let extensions =
            resp.upgrade && has_header(&buf.data()[..resp.head_len], b"sec-websocket-extensions");
        let switch = resp
            .upgrade
            .then(|| switched(&buf.data()[..resp.head_len], extensions, resp_out));
        buf.consume(resp.head_len);
        if resp.informational {
            // A backend sending interim responses forever would hold the
            // exchange with no end; a real one sends one or two.
            interim += 1;
            if interim > MAX_INTERIM_RESPONSES {
                return Err(failed("backend sent too many interim (1xx) responses"));
            }
            // RFC 9110 section 15.2: no 1xx to an HTTP/1.0 client.
            if req.minor_version >= 1 {
                started.set(true);
                send_client(client_w, resp_out).await?;
            }
            continue;
        }
        if let Some(switch) = switch {
            // A fallback session's 101 is the balancer's own: the client
            // gets an event stream instead.
            if !opts.fallback {
                started.set(true);
                send_client(client_w, resp_out).await?;
            }
            return Ok(ExchangeEnd::Upgraded(Box::new(switch)));
        }
        if let Some(hook) = opts.response_hook {
            hook.edit(resp.status, resp_out);
        }
        let mut tracker = BodyTracker::new(resp.body);
        let first = tracker
            .scan(buf.data())
            .map_err(|_| failed("backend sent a malformed body"))?;
        started.set(true);
        let rate = opts.rate.map(|r| &r.down);
        if let Some(rate) = rate {
            rate.pace(first.consumed).await;
        }
        if first.consumed <= COALESCE_LIMIT {
            resp_out.extend_from_slice(&buf.data()[..first.consumed]);
            send_client(client_w, resp_out).await?;
            buf.consume(first.consumed);
        } else {
            send_client(client_w, resp_out).await?;
            send_client_range(client_w, buf, first.consumed).await?;
        }
        while !tracker.is_done() {
            let n = read_backend(backend_r, buf, opts.read_timeout, &progress).await?;
            if n == 0 {
                if resp.body == BodyKind::UntilClose {
                    break;
                }
                return Err(failed("backend closed in the middle of a response body"));
            }
            let p = tracker
                .scan(buf.data())
                .map_err(|_| failed("backend sent a malformed body"))?;
            if let Some(rate) = rate {
                rate.pace(n).await;
            }
            send_client_range(client_w, buf, p.consumed).await?;
        }
        let until_close = resp.body == BodyKind::UntilClose;
        return Ok(ExchangeEnd::Done {
            backend_reusable: resp.backend_keep_alive && !until_close && buf.is_empty(),
            client_keep_alive: resp.client_keep_alive && !until_close,
        });
    }
}

/// What a 101's head (`head`, as the backend sent it) says for the
/// session; takes `X-Wslb-Channels` out of `resp_out` (the head the client
/// gets).
fn switched(head: &[u8], extensions: bool, resp_out: &mut Vec<u8>) -> Switched {
    let subprotocol = header_values(head, b"sec-websocket-protocol")
        .next()
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(Box::from);
    let mut channels: Option<String> = None;
    for v in header_values(head, CHANNELS_FIELD) {
        let v = String::from_utf8_lossy(v);
        match &mut channels {
            Some(c) => {
                c.push(',');
                c.push_str(&v);
            }
            None => channels = Some(v.into_owned()),
        }
    }
    if channels.is_some() {
        remove_fields(resp_out, &["X-Wslb-Channels".to_string()]);
    }
    Switched {
        extensions,
        subprotocol,
        channels,
    }
}

/// The field a backend's 101 names a session's channels in.
const CHANNELS_FIELD: &[u8] = b"x-wslb-channels";

/// A 101 is honest only as the answer to a WebSocket upgrade request, with
/// `Upgrade: websocket` and exactly one `Sec-WebSocket-Accept` matching the
/// client's key; anything else is a backend protocol violation (502).
fn check_switch(
    head: &[u8],
    resp: &ParsedResponse,
    expected_accept: Option<&str>,
) -> Result<(), &'static str> {
    let Some(expected) = expected_accept else {
        return Err("backend switched protocols on a request that was not an upgrade");
    };
    if !resp.upgrade {
        return Err("backend switched to a protocol other than websocket");
    }
    let mut accepts = header_values(head, b"sec-websocket-accept");
    match (accepts.next(), accepts.next()) {
        (Some(v), None) if v == expected.as_bytes() => Ok(()),
        _ => Err("backend's Sec-WebSocket-Accept does not match the client's key"),
    }
}

#[cfg(test)]
#[path = "response_relay_tests.rs"]
mod tests;
