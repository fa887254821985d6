//! One HTTP request/response exchange with a backend: the request head and
//! body go up while the response comes down, both streamed at once (so a
//! backend that answers while it reads, like an echo, never deadlocks), and
//! the outcome says whether each side's connection can be kept.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::io::{write_range, write_vec, ReadBuf};
use crate::http::{parse_response, BodyKind, BodyTracker, Limits, ParsedRequest};
use crate::server::notify::LocalEvent;

/// Read size for body streaming.
pub const CHUNK: usize = 32 * 1024;
/// Small bodies ride in the same write as their head.
const COALESCE_LIMIT: usize = 4096;

/// How an exchange ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeEnd {
    /// A final response was relayed whole.
    Done {
        backend_reusable: bool,
        client_keep_alive: bool,
    },
    /// The backend answered 101: the caller relays WebSocket now.
    Upgraded { extensions: bool },
}

/// How an exchange failed, and what may still be done about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeError {
    /// The backend closed or reset before sending a byte back.
    ClosedEarly,
    /// No answer in time.
    Timeout { response_started: bool },
    /// The backend broke off or sent something that is not HTTP.
    Failed {
        response_started: bool,
        detail: &'static str,
    },
    /// The client went away or broke its own request; nothing to answer.
    ClientGone,
}

/// Timeouts and limits of one exchange.
#[derive(Clone, Copy)]
pub struct ExchangeOpts<'a> {
    pub limits: Limits,
    pub head_timeout: Duration,
    pub read_timeout: Duration,
    pub client_timeout: Duration,
    pub client_keep_alive: bool,
    /// The worker's drain event: a response head written after it fired
    /// says `Connection: close`, since the connection closes after it.
    pub draining: &'a LocalEvent,
}

/// The request side: where it comes from and how much is already buffered.
pub struct RequestSide<'a, R> {
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
#[allow(clippy::too_many_arguments)]
pub async fn exchange<CR, CW, BR, BW>(
    side: RequestSide<'_, CR>,
    client_w: &mut CW,
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
    // Head and the buffered part of the body in one write.
    let mut send = std::mem::take(scratch);
    send.clear();
    send.extend_from_slice(head);
    let start = req.head_len;
    send.extend_from_slice(&client_buf.data()[start..start + buffered_body]);
    let (res, send) = write_vec(backend_w, send).await;
    *scratch = send;
    if res.is_err() {
        return Err(ExchangeError::ClosedEarly);
    }

    let mut request_tracker = BodyTracker::new(req.body);
    let request = async {
        if replayable {
            return Ok(());
        }
        // Re-scan what was sent so the tracker knows where the body stands.
        let sent = request_tracker
            .scan(&client_buf.data()[start..start + buffered_body])
            .map_err(|_| ExchangeError::ClientGone)?;
        client_buf.consume(start + sent.consumed);
        pump_request(
            client_r,
            client_buf,
            backend_w,
            &mut request_tracker,
            opts.client_timeout,
        )
        .await
    };
    let response = pump_response(client_w, backend_r, backend_buf, req, resp_out, opts);

    let mut request = pin!(request);
    let mut response = pin!(response);
    let mut request_done = false;
    let mut request_failed: Option<ExchangeError> = None;
    let outcome = poll_fn(|cx| {
        if !request_done {
            if let Poll::Ready(r) = request.as_mut().poll(cx) {
                request_done = true;
                if let Err(e) = r {
                    request_failed = Some(e);
                    return Poll::Ready(None);
                }
            }
        }
        response.as_mut().poll(cx).map(Some)
    })
    .await;
    match (outcome, request_failed) {
        (_, Some(e)) => Err(e),
        (
            Some(Ok(ExchangeEnd::Done {
                backend_reusable,
                client_keep_alive,
            })),
            None,
        ) => {
            // A response that ended before its request body was sent whole
            // leaves both connections in an unknown state: close them.
            let whole = request_done;
            Ok(ExchangeEnd::Done {
                backend_reusable: backend_reusable && whole,
                client_keep_alive: client_keep_alive && whole,
            })
        }
        (Some(other), None) => other,
        (None, None) => Err(ExchangeError::ClientGone),
    }
}

async fn pump_request<CR, BW>(
    client_r: &mut CR,
    client_buf: &mut ReadBuf,
    backend_w: &mut BW,
    tracker: &mut BodyTracker,
    timeout: Duration,
) -> Result<(), ExchangeError>
where
    CR: AsyncReadRent,
    BW: AsyncWriteRent,
{
    while !tracker.is_done() {
        if client_buf.is_empty() {
            match monoio::time::timeout(timeout, client_buf.read_from(client_r, CHUNK)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return Err(ExchangeError::ClientGone),
            }
        }
        let p = tracker
            .scan(client_buf.data())
            .map_err(|_| ExchangeError::ClientGone)?;
        let buf = std::mem::take(&mut client_buf.buf);
        let pos = client_buf.pos;
        let (res, buf) = write_range(backend_w, buf, pos, pos + p.consumed).await;
        client_buf.buf = buf;
        if res.is_err() {
            return Err(ExchangeError::Failed {
                response_started: false,
                detail: "backend stopped reading the request body",
            });
        }
        client_buf.consume(p.consumed);
    }
    Ok(())
}

async fn read_backend<BR: AsyncReadRent>(
    backend_r: &mut BR,
    buf: &mut ReadBuf,
    timeout: Duration,
    started: bool,
) -> Result<usize, ExchangeError> {
    match monoio::time::timeout(timeout, buf.read_from(backend_r, CHUNK)).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(_)) => Err(ExchangeError::Failed {
            response_started: started,
            detail: "backend connection reset",
        }),
        Err(_) => Err(ExchangeError::Timeout {
            response_started: started,
        }),
    }
}

async fn send_client<CW: AsyncWriteRent>(
    w: &mut CW,
    buf: &mut Vec<u8>,
) -> Result<(), ExchangeError> {
    let (res, b) = write_vec(w, std::mem::take(buf)).await;
    *buf = b;
    res.map_err(|_| ExchangeError::ClientGone)
}

async fn send_client_range<CW: AsyncWriteRent>(
    w: &mut CW,
    rb: &mut ReadBuf,
    n: usize,
) -> Result<(), ExchangeError> {
    let buf = std::mem::take(&mut rb.buf);
    let pos = rb.pos;
    let (res, buf) = write_range(w, buf, pos, pos + n).await;
    rb.buf = buf;
    res.map_err(|_| ExchangeError::ClientGone)?;
    rb.consume(n);
    Ok(())
}

async fn pump_response<CW, BR>(
    client_w: &mut CW,
    backend_r: &mut BR,
    buf: &mut ReadBuf,
    req: &ParsedRequest,
    resp_out: &mut Vec<u8>,
    opts: ExchangeOpts<'_>,
) -> Result<ExchangeEnd, ExchangeError>
where
    CW: AsyncWriteRent,
    BR: AsyncReadRent,
{
    let mut started = false;
    let mut received = !buf.is_empty();
    loop {
        resp_out.clear();
        let parsed = parse_response(
            buf.data(),
            &opts.limits,
            req.method,
            req.minor_version,
            opts.client_keep_alive && !opts.draining.is_fired(),
            resp_out,
        )
        .map_err(|_| ExchangeError::Failed {
            response_started: started,
            detail: "backend sent a malformed response head",
        })?;
        let Some(resp) = parsed else {
            let timeout = if started {
                opts.read_timeout
            } else {
                opts.head_timeout
            };
            let n = read_backend(backend_r, buf, timeout, started).await;
            match n {
                Ok(0) | Err(ExchangeError::Failed { .. }) if !received => {
                    return Err(ExchangeError::ClosedEarly)
                }
                Ok(0) => {
                    return Err(ExchangeError::Failed {
                        response_started: started,
                        detail: "backend closed in the middle of a response head",
                    })
                }
                Ok(_) => received = true,
                Err(e) => return Err(e),
            }
            continue;
        };
        let extensions =
            resp.upgrade && has_header(&buf.data()[..resp.head_len], b"sec-websocket-extensions");
        buf.consume(resp.head_len);
        if resp.informational {
            send_client(client_w, resp_out).await?;
            started = true;
            continue;
        }
        if resp.upgrade {
            send_client(client_w, resp_out).await?;
            return Ok(ExchangeEnd::Upgraded { extensions });
        }
        let mut tracker = BodyTracker::new(resp.body);
        let first = tracker
            .scan(buf.data())
            .map_err(|_| ExchangeError::Failed {
                response_started: false,
                detail: "backend sent a malformed body",
            })?;
        if first.consumed <= COALESCE_LIMIT {
            resp_out.extend_from_slice(&buf.data()[..first.consumed]);
            send_client(client_w, resp_out).await?;
            buf.consume(first.consumed);
        } else {
            send_client(client_w, resp_out).await?;
            send_client_range(client_w, buf, first.consumed).await?;
        }
        while !tracker.is_done() {
            let n = read_backend(backend_r, buf, opts.read_timeout, true).await?;
            if n == 0 {
                if resp.body == BodyKind::UntilClose {
                    break;
                }
                return Err(ExchangeError::Failed {
                    response_started: true,
                    detail: "backend closed in the middle of a response body",
                });
            }
            let p = tracker
                .scan(buf.data())
                .map_err(|_| ExchangeError::Failed {
                    response_started: true,
                    detail: "backend sent a malformed body",
                })?;
            send_client_range(client_w, buf, p.consumed).await?;
        }
        let until_close = resp.body == BodyKind::UntilClose;
        return Ok(ExchangeEnd::Done {
            backend_reusable: resp.backend_keep_alive && !until_close && buf.is_empty(),
            client_keep_alive: resp.client_keep_alive && !until_close,
        });
    }
}

/// Whether a raw head has a header `name` (lower-case ASCII).
pub fn has_header(head: &[u8], name: &[u8]) -> bool {
    head.split(|&b| b == b'\n').any(|line| {
        line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name)
            && line[name.len()] == b':'
    })
}

/// Flushes and closes the write side of a connection, ignoring errors.
pub async fn shutdown_quietly<W: AsyncWriteRent>(w: &mut W) {
    let _ = w.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::has_header;

    #[test]
    fn finds_headers_case_insensitively() {
        let head = b"HTTP/1.1 101 OK\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
        assert!(has_header(head, b"sec-websocket-extensions"));
        assert!(!has_header(head, b"sec-websocket-protocol"));
    }
}
