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
use monoio::time::{Instant, Sleep};

use super::client_write::ClientWriter;
use super::outcome::{ExchangeEnd, ExchangeError, ExchangeOpts};
use crate::proto::http::headers::has_header;
use crate::proto::http::{parse_response, BodyKind, BodyTracker, ParsedRequest, ParsedResponse};
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
    progress: Progress<'_>,
) -> Result<usize, ExchangeError> {
    let read_start = Instant::now();
    let mut read = pin!(buf.read_from(backend_r, CHUNK));
    let mut sleep = pin!(None::<Sleep>);
    let res = poll_fn(|cx| {
        if let Poll::Ready(r) = read.as_mut().poll(cx) {
            return Poll::Ready(Some(r));
        }
        // Waiting on the client's body: its deadline bounds this wait.
        let Some(due) = progress.backend_due.get() else {
            return Poll::Pending;
        };
        let at = deadline_after(due.max(read_start), timeout);
        match sleep.as_mut().as_pin_mut() {
            Some(s) if s.deadline() != at => s.reset(at),
            Some(_) => {}
            None => sleep.set(Some(monoio::time::sleep_until(at))),
        }
        match sleep.as_mut().as_pin_mut().map(|s| s.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(None),
            _ => Poll::Pending,
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
            let n = read_backend(backend_r, buf, timeout, progress).await;
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
        if resp.upgrade {
            started.set(true);
            send_client(client_w, resp_out).await?;
            return Ok(ExchangeEnd::Upgraded { extensions });
        }
        if let Some(hook) = opts.response_hook {
            hook.edit(resp.status, resp_out);
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
            let n = read_backend(backend_r, buf, opts.read_timeout, progress).await?;
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

    /// A reader whose one read completes with `b"x"` at `ready`; counts the
    /// reads issued (a re-issued read would lose bytes with io_uring).
    struct Slow {
        ready: Instant,
        reads: usize,
    }

    impl monoio::io::AsyncReadRent for Slow {
        async fn read<T: monoio::buf::IoBufMut>(
            &mut self,
            mut buf: T,
        ) -> monoio::BufResult<usize, T> {
            self.reads += 1;
            monoio::time::sleep_until(self.ready).await;
            // SAFETY: IoBufMut guarantees `write_ptr` is valid for
            // `bytes_total` (at least 1 here) bytes; one is written and
            // marked initialised.
            unsafe {
                *buf.write_ptr() = b'x';
                buf.set_init(1);
            }
            (Ok(1), buf)
        }

        async fn readv<T: monoio::buf::IoVecBufMut>(
            &mut self,
            buf: T,
        ) -> monoio::BufResult<usize, T> {
            (Ok(0), buf)
        }
    }

    /// Runs one `read_backend` with `timeout` while `steps` (after each
    /// delay) set the backend's due time: `Some(true)` to now, `Some(false)`
    /// to none. Returns the result, the reads issued and the time taken.
    fn read_with(
        data_after: Duration,
        timeout: Duration,
        initial: bool,
        steps: &[(Duration, bool)],
    ) -> (Result<usize, ExchangeError>, usize, Duration) {
        super::super::test_io::run(async {
            let t0 = Instant::now();
            let mut r = Slow {
                ready: t0 + data_after,
                reads: 0,
            };
            let mut buf = ReadBuf::with_capacity(64);
            let started = Cell::new(false);
            let due = Cell::new(initial.then_some(t0));
            let progress = Progress {
                started: &started,
                backend_due: &due,
            };
            let steps = async {
                for &(after, set) in steps {
                    monoio::time::sleep_until(t0 + after).await;
                    due.set(set.then(Instant::now));
                }
                std::future::pending::<()>().await
            };
            // As in `exchange`: the request side first, then the response.
            let res = {
                let mut steps = pin!(steps);
                let mut read = pin!(read_backend(&mut r, &mut buf, timeout, progress));
                poll_fn(|cx| {
                    let _ = steps.as_mut().poll(cx);
                    read.as_mut().poll(cx)
                })
                .await
            };
            (res, r.reads, t0.elapsed())
        })
    }

    #[test]
    fn the_backend_timeout_waits_for_the_request_side() {
        let ms = Duration::from_millis;
        // Due from the start: a plain timeout.
        let (res, reads, took) = read_with(ms(400), ms(100), true, &[]);
        assert!(matches!(res, Err(ExchangeError::Timeout { .. })), "{res:?}");
        assert_eq!(reads, 1);
        assert!(took < ms(300), "{took:?}");
        // The body streams (no due time) well past the timeout, then is
        // sent whole: the timeout runs from there.
        let (res, reads, took) = read_with(ms(2000), ms(100), false, &[(ms(300), true)]);
        assert!(matches!(res, Err(ExchangeError::Timeout { .. })), "{res:?}");
        assert_eq!(reads, 1);
        assert!(took >= ms(400) && took < ms(1500), "{took:?}");
        // Each body write re-arms it; the one read sees the answer.
        let steps = [(ms(80), true), (ms(160), true), (ms(240), true)];
        let (res, reads, _) = read_with(ms(300), ms(100), true, &steps);
        assert_eq!(res, Ok(1));
        assert_eq!(reads, 1, "the read was re-issued");
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
