//! The response half of an exchange: reads the backend's response head
//! (interim 1xx heads, a 101 that must answer a real WebSocket upgrade with
//! the right accept key) and relays the body to the client, noting when the
//! first byte went to the client (after that no error answer may be sent).
//! Every write toward the client is bounded (see client_write.rs): a client
//! that stops reading ends the exchange as `ClientGone`.

use std::cell::Cell;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::client_write::ClientWriter;
use super::exchange::{has_header, ExchangeEnd, ExchangeError, ExchangeOpts, CHUNK};
use super::io::ReadBuf;
use crate::http::{parse_response, BodyKind, BodyTracker, ParsedRequest, ParsedResponse};

/// Small bodies ride in the same write as their head.
const COALESCE_LIMIT: usize = 4096;

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

/// Reads the response and relays it to the client. `started` turns true
/// just before the first byte is written to the client. `expected_accept`
/// is the `Sec-WebSocket-Accept` a 101 must carry (None: the request was not
/// an upgrade, and a 101 is a protocol violation).
#[allow(clippy::too_many_arguments)]
pub async fn pump_response<CW, BR>(
    client_w: &mut ClientWriter<'_, CW>,
    backend_r: &mut BR,
    buf: &mut ReadBuf,
    req: &ParsedRequest,
    resp_out: &mut Vec<u8>,
    opts: ExchangeOpts<'_>,
    started: &Cell<bool>,
    expected_accept: Option<&str>,
) -> Result<ExchangeEnd, ExchangeError>
where
    CW: AsyncWriteRent,
    BR: AsyncReadRent,
{
    let failed = |detail| ExchangeError::Failed {
        response_started: started.get(),
        detail,
    };
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
        .map_err(|_| failed("backend sent a malformed response head"))?;
        let Some(resp) = parsed else {
            let timeout = if started.get() {
                opts.read_timeout
            } else {
                opts.head_timeout
            };
            let n = read_backend(backend_r, buf, timeout, started.get()).await;
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
        if resp.status == 101 {
            check_switch(&buf.data()[..resp.head_len], &resp, expected_accept).map_err(failed)?;
        }
        let extensions =
            resp.upgrade && has_header(&buf.data()[..resp.head_len], b"sec-websocket-extensions");
        buf.consume(resp.head_len);
        if resp.informational {
            started.set(true);
            send_client(client_w, resp_out).await?;
            continue;
        }
        if resp.upgrade {
            started.set(true);
            send_client(client_w, resp_out).await?;
            return Ok(ExchangeEnd::Upgraded { extensions });
        }
        let mut tracker = BodyTracker::new(resp.body);
        let first = tracker
            .scan(buf.data())
            .map_err(|_| failed("backend sent a malformed body"))?;
        started.set(true);
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
                return Err(failed("backend closed in the middle of a response body"));
            }
            let p = tracker
                .scan(buf.data())
                .map_err(|_| failed("backend sent a malformed body"))?;
            send_client_range(client_w, buf, p.consumed).await?;
        }
        let until_close = resp.body == BodyKind::UntilClose;
        return Ok(ExchangeEnd::Done {
            backend_reusable: resp.backend_keep_alive && !until_close && buf.is_empty(),
            client_keep_alive: resp.client_keep_alive && !until_close,
        });
    }
}

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

/// Values (trimmed) of every header `name` (lower-case ASCII) in a raw head.
fn header_values<'a>(head: &'a [u8], name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    head.split(|&b| b == b'\n').filter_map(move |line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        (line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name)
            && line[name.len()] == b':')
            .then(|| line[name.len() + 1..].trim_ascii())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn switching(upgrade: bool) -> ParsedResponse {
        ParsedResponse {
            head_len: 0,
            status: 101,
            minor_version: 1,
            body: BodyKind::Empty,
            backend_keep_alive: false,
            client_keep_alive: false,
            informational: false,
            upgrade,
        }
    }

    #[test]
    fn a_switch_must_answer_an_upgrade_with_the_right_key() {
        let good = b"HTTP/1.1 101 S\r\nUpgrade: websocket\r\nSec-WebSocket-Accept:  abc= \r\n\r\n";
        assert_eq!(check_switch(good, &switching(true), Some("abc=")), Ok(()));
        assert!(check_switch(good, &switching(true), Some("xyz=")).is_err());
        assert!(check_switch(good, &switching(true), None).is_err());
        assert!(check_switch(good, &switching(false), Some("abc=")).is_err());
        let twice =
            b"HTTP/1.1 101 S\r\nSec-WebSocket-Accept: abc=\r\nSec-WebSocket-Accept: abc=\r\n\r\n";
        assert!(check_switch(twice, &switching(true), Some("abc=")).is_err());
        let none = b"HTTP/1.1 101 S\r\nUpgrade: websocket\r\n\r\n";
        assert!(check_switch(none, &switching(true), Some("abc=")).is_err());
    }
}
