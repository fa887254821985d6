//! One registered control session: heartbeats every interval with the
//! current load, pings when the balancer has been silent, answers to pings,
//! drain/resume notices, the application's drain/resume/deregister/stop
//! wishes, and a clean `deregister` + close on the way out. With a v2
//! balancer also: the application's operations out (each with a `ref`),
//! their `result` / `op_error` back, and events to the `on_event` callback
//! (asked for right after each registration, so reconnects keep them).

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, Split, Splitable};
use monoio::time::Instant;

use serde_json::Value;

use super::answers::OpFailure;
use super::calls::Inflight;
use super::conn::{
    close_frame, closed, message_frame, ping_frame, pong_frame, text_frame, Registered,
    MAX_SERVER_MESSAGE,
};
use super::ctx::Ctx;
use super::error::SessionError;
use crate::hub::Outcome;
use crate::pool::registry::protocol::{parse_server_message, ClientMessage, ServerMessage};
use crate::proto::ws::frame::OpCode;
use crate::proto::ws::message::MessageReader;
use crate::rt::io::{write_vec, ReadBuf};

const READ_CHUNK: usize = 4096;
/// How long a departing agent waits for the balancer's close.
const LEAVE_GRACE: Duration = Duration::from_secs(2);

/// How a session ended on the application's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exit {
    /// `stop()`: deregistered, closed; the watchdog ends.
    Stopped,
    /// `deregister()`: deregistered, closed; the watchdog idles.
    Offline,
}

type ReadFut<R> = Pin<Box<dyn Future<Output = (R, ReadBuf, io::Result<usize>)>>>;

/// One read that owns its half and buffer, so it can stay in flight across
/// heartbeats and wishes without being cancelled (no bytes lost).
fn start_read<R: AsyncReadRent + 'static>(mut r: R, mut buf: ReadBuf) -> ReadFut<R> {
    Box::pin(async move {
        let res = buf.read_from(&mut r, READ_CHUNK).await;
        (r, buf, res)
    })
}

enum Event<R> {
    Read(R, ReadBuf, io::Result<usize>),
    Tick,
    Wish,
}

/// When to ping a silent balancer and when to give up on it.
fn silence_limits(interval: Duration) -> (Duration, Duration) {
    (interval * 2, (interval * 4).max(Duration::from_secs(10)))
}

async fn send<W: AsyncWriteRent>(
    w: &mut W,
    out: &mut Vec<u8>,
    limit: Duration,
) -> Result<(), SessionError> {
    if out.is_empty() {
        return Ok(());
    }
    let sent = monoio::time::timeout(limit, write_vec(w, std::mem::take(out))).await;
    match sent {
        Ok((res, mut buf)) => {
            buf.clear();
            *out = buf;
            res.map_err(SessionError::Io)
        }
        Err(_) => Err(SessionError::Timeout("writing to the balancer")),
    }
}

/// Handles every whole message in `buf`, appending replies to `out`.
/// Returns the error to end with when the balancer closed or broke protocol.
fn handle_buffered(
    ctx: &Ctx,
    buf: &mut ReadBuf,
    reader: &mut MessageReader,
    out: &mut Vec<u8>,
    inflight: &mut Inflight<'_>,
) -> Result<(), SessionError> {
    while !buf.is_empty() {
        let (used, msg) = reader.feed(buf.data())?;
        buf.consume(used);
        let Some(m) = msg else {
            if used == 0 {
                break;
            }
            continue;
        };
        match m.opcode {
            OpCode::Ping => pong_frame(out, &m.payload),
            OpCode::Close => {
                let err = closed(&m.payload);
                let code = match &err {
                    SessionError::Closed { code, .. } if *code != 1005 => *code,
                    _ => 1000,
                };
                close_frame(out, code, "");
                return Err(err);
            }
            OpCode::Text => notice(ctx, std::str::from_utf8(&m.payload).unwrap_or(""), inflight),
            _ => {}
        }
    }
    Ok(())
}

/// Acts on one text message from a registered session.
fn notice(ctx: &Ctx, text: &str, inflight: &mut Inflight<'_>) {
    let url = &ctx.url;
    match parse_server_message(text, MAX_SERVER_MESSAGE) {
        Ok(ServerMessage::Drain) => {
            tracing::info!(balancer = %url, "agent: balancer is draining this backend (no new connections)");
            ctx.shared.update(ctx.index, |s| s.draining = true);
        }
        Ok(ServerMessage::Resume) => {
            tracing::info!(balancer = %url, "agent: balancer resumed sending connections");
            ctx.shared.update(ctx.index, |s| s.draining = false);
        }
        Ok(ServerMessage::Error { message }) => {
            tracing::warn!(balancer = %url, %message, "agent: balancer reported an error");
            ctx.shared.update(ctx.index, |s| {
                s.last_error = Some(format!("balancer error: {message}"))
            });
        }
        Ok(ServerMessage::Registered { balancer_id, .. }) => {
            tracing::debug!(balancer = %url, %balancer_id, "agent: repeated registered, ignored");
        }
        Ok(ServerMessage::Result {
            reference,
            matched,
            delivered,
            skipped,
            dropped,
            pongs,
        }) => {
            let outcome = Outcome {
                matched,
                delivered,
                skipped,
                dropped,
                pongs,
            };
            inflight.answer(reference.as_ref(), Ok(outcome));
        }
        Ok(ServerMessage::OpError {
            reference,
            status,
            message,
        }) => {
            if reference.is_none() {
                tracing::warn!(balancer = %url, status, %message, "agent: an operation was refused");
            }
            inflight.answer(
                reference.as_ref(),
                Err(OpFailure::Refused { status, message }),
            );
        }
        Ok(ServerMessage::Event { fields }) => {
            if let Some(cb) = &ctx.cfg.on_event {
                (cb.0)(&inflight.url, &Value::Object(fields));
            }
        }
        Err(e) => {
            tracing::warn!(balancer = %url, error = %e, "agent: unreadable message from the balancer, ignored");
        }
    }
}

/// Runs a registered session until it fails or the application asks it to
/// leave. `buf` holds bytes already read past the `registered` message.
pub(super) async fn run<S>(
    ctx: &Ctx,
    stream: S,
    buf: ReadBuf,
    mut reader: MessageReader,
    reg: &Registered,
) -> Result<Exit, SessionError>
where
    S: AsyncReadRent + AsyncWriteRent + Split + 'static,
{
    let shared = &ctx.shared;
    let interval = reg.heartbeat_interval;
    let write_limit = interval.max(Duration::from_secs(5));
    let (ping_after, dead_after) = silence_limits(interval);
    let (r, mut w) = stream.into_split();
    let mut out = Vec::with_capacity(256);
    let mut buf = buf;
    let v2 = reg.v >= 2;
    // Answers every operation still in flight (or queued) when it goes.
    let mut inflight = Inflight::new(shared, ctx.index, ctx.url.to_string());
    if v2 && ctx.cfg.on_event.is_some() {
        let messages = ctx.cfg.events_messages;
        let events = ClientMessage::Events {
            messages,
            enabled: true,
        };
        message_frame(&mut out, &events);
    }
    let first = handle_buffered(ctx, &mut buf, &mut reader, &mut out, &mut inflight);
    send(&mut w, &mut out, write_limit).await?;
    first?;
    let mut pending = Some(start_read(r, buf));
    let mut seen = shared.epoch();
    let mut drain_sent = false;
    let mut next_tick = Instant::now();
    let mut last_heard = Instant::now();
    let mut pinged = false;
    loop {
        // Reconcile with the application's wishes.
        seen = seen.max(shared.epoch());
        let wishes = &shared.wishes;
        let leave = if wishes.stop.load(Ordering::Acquire) {
            Some(Exit::Stopped)
        } else if wishes.offline.load(Ordering::Acquire) {
            Some(Exit::Offline)
        } else {
            None
        };
        if let Some(exit) = leave {
            if let Some(p) = pending.take() {
                leave_pool(ctx, &mut w, p, &mut reader, write_limit).await;
            }
            return Ok(exit);
        }
        let want_drain = wishes.drain.load(Ordering::Acquire);
        if want_drain != drain_sent {
            let msg = if want_drain {
                ClientMessage::Drain
            } else {
                ClientMessage::Resume
            };
            tracing::info!(balancer = %ctx.url, ?msg, "agent: asking the balancer");
            message_frame(&mut out, &msg);
            drain_sent = want_drain;
        }
        let now = Instant::now();
        if now >= next_tick {
            let load = shared.load.load(Ordering::Relaxed);
            message_frame(&mut out, &ClientMessage::Heartbeat { load });
            shared.update(ctx.index, |s| s.heartbeats_sent += 1);
            let silent = now.saturating_duration_since(last_heard);
            if silent >= dead_after {
                return Err(SessionError::Silent(silent));
            }
            if silent >= ping_after && !pinged {
                ping_frame(&mut out);
                pinged = true;
            }
            next_tick = now + interval;
        }
        if v2 {
            while let Some(text) = inflight.next_message() {
                text_frame(&mut out, &text);
            }
        }
        send(&mut w, &mut out, write_limit).await?;
        let Some(mut read) = pending.take() else {
            return Err(SessionError::Eof);
        };
        let event = {
            let mut tick = pin!(monoio::time::sleep_until(next_tick));
            poll_fn(|cx| {
                if let Poll::Ready((r, b, res)) = read.as_mut().poll(cx) {
                    return Poll::Ready(Event::Read(r, b, res));
                }
                if shared.poll_changed(ctx.index, seen, cx) || (v2 && shared.has_queued(ctx.index))
                {
                    return Poll::Ready(Event::Wish);
                }
                if tick.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Tick);
                }
                Poll::Pending
            })
            .await
        };
        match event {
            Event::Read(r, mut b, res) => {
                match res {
                    Ok(0) => return Err(SessionError::Eof),
                    Ok(_) => {}
                    Err(e) => return Err(SessionError::Io(e)),
                }
                last_heard = Instant::now();
                pinged = false;
                let handled = handle_buffered(ctx, &mut b, &mut reader, &mut out, &mut inflight);
                send(&mut w, &mut out, write_limit).await?;
                handled?;
                pending = Some(start_read(r, b));
            }
            Event::Tick | Event::Wish => pending = Some(read),
        }
    }
}

/// Sends `deregister` and a close, then waits briefly for the balancer's
/// close (or EOF) so it has processed both before the socket goes.
async fn leave_pool<R, W>(
    ctx: &Ctx,
    w: &mut W,
    mut read: ReadFut<R>,
    reader: &mut MessageReader,
    limit: Duration,
) where
    R: AsyncReadRent + 'static,
    W: AsyncWriteRent,
{
    let mut out = Vec::with_capacity(64);
    message_frame(&mut out, &ClientMessage::Deregister);
    close_frame(&mut out, 1000, "deregister");
    if send(w, &mut out, limit).await.is_err() {
        return;
    }
    tracing::info!(balancer = %ctx.url, "agent: deregistered");
    let _ = monoio::time::timeout(LEAVE_GRACE, async {
        loop {
            let (r, mut b, res) = read.await;
            if !matches!(res, Ok(n) if n > 0) {
                return;
            }
            while let Ok((used, msg)) = reader.feed(b.data()) {
                b.consume(used);
                match msg {
                    Some(m) if m.opcode == OpCode::Close => return,
                    Some(_) => {}
                    None => break,
                }
            }
            read = start_read(r, b);
        }
    })
    .await;
    let _ = w.shutdown().await;
}
