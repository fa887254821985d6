//! A fallback session's event stream on the client's connection: the
//! events as the session makes them, keep-alive comments when it is quiet,
//! and the hand-back when the connection ends (the session then waits for
//! a resume). A resume (`Last-Event-ID`) attaches a new stream, on whichever
//! worker it lands, from just after the client's last event.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf};
use monoio::time::Instant;

use crate::hub::sse::{AttachError, Outgoing, SseShared, SseToken, StreamStep};
use crate::proto::sse::{write_close, write_retry, KEEP_ALIVE, STREAM_HEAD};
use crate::proxy::client_write::ClientWriter;
use crate::proxy::conns::ConnCommand;
use crate::proxy::env::Env;
use crate::proxy::ClientConn;
use crate::rt::io::ReadBuf;
use crate::rt::ready::ReadReady;

/// Events written to the client in one write, at most (about).
const WRITE_MAX: usize = 64 * 1024;

/// Quiet time after which the stream sends a keep-alive comment.
pub(crate) const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(15);

/// A stream coming back to its session.
pub(crate) struct Resume {
    shared: Arc<SseShared>,
    /// The attached generation, or the gap that makes a resume impossible.
    attached: Result<u64, AttachError>,
    /// The client's last event.
    last: u64,
}

/// The session `token` names, with a new stream attached after event
/// `last`; 404 when the balancer holds no such session.
pub(crate) fn find(env: &Env, token: &SseToken, last: u64) -> Result<Resume, u16> {
    let shared = env.router.sse.get(token).ok_or(404u16)?;
    let attached = shared.attach(last);
    if attached == Err(AttachError::Over) {
        // Everything, the close included, went to the client already.
        return Err(404);
    }
    Ok(Resume {
        shared,
        attached,
        last,
    })
}

/// Serves a resumed stream: a `retry:`, then what the client missed, then
/// the live events. When the missed events are no longer held, the client
/// gets a close (1001) and the session is closed too. Returns whether the
/// client's writer is intact.
pub(crate) async fn resume<S>(env: &Env, client: &mut ClientConn<S>, resume: Resume) -> bool
where
    S: AsyncReadRent + AsyncWriteRent,
    OwnedReadHalf<S>: ReadReady,
{
    let cfg = env.cfg();
    let mut first = Vec::with_capacity(256);
    first.extend_from_slice(STREAM_HEAD);
    write_retry(&mut first, cfg.fallback_retry.as_millis() as u64);
    let Resume {
        shared,
        attached,
        last,
    } = resume;
    match attached {
        Ok(generation) => serve(env, client, shared, generation, last, first).await,
        Err(AttachError::Gap | AttachError::Over) => {
            tracing::debug!(token = %shared.token.short(), last, "fallback resume past the buffer");
            let reason = "missed events are no longer held";
            write_close(&mut first, &shared.token.to_string(), last, 1001, reason);
            let _ = shared.post(Outgoing::Close(1001), usize::MAX);
            let mut w = client.writer(cfg.idle_timeout);
            w.write_vec(first).await.0.is_ok()
        }
    }
}

/// Why the stream's wait ended.
enum Wake {
    Events(u64),
    KeepAlive,
    Finished,
    /// The client closed, a newer stream took over, or the worker asked
    /// the connection to close.
    Over,
}

/// Writes `first` (the response head and opening events), then the events
/// after `cursor` as stream `generation` of the session, until the session
/// ends, the client goes, or a newer stream takes over. Returns whether
/// the client's writer is intact.
pub(crate) async fn serve<S>(
    env: &Env,
    client: &mut ClientConn<S>,
    shared: Arc<SseShared>,
    generation: u64,
    mut cursor: u64,
    first: Vec<u8>,
) -> bool
where
    S: AsyncReadRent + AsyncWriteRent,
    OwnedReadHalf<S>: ReadReady,
{
    let idle = env.cfg().idle_timeout;
    let ClientConn {
        r,
        w,
        buf,
        writer_cut,
        timer,
        backend_timer: quiet_timer,
        sent,
        handle,
        ..
    } = client;
    let mut writer = ClientWriter::new(w, writer_cut, timer, idle).counting(sent);
    let mut gone = pin!(client_gone(r, buf));
    let mut out = first;
    let mut written = cursor;
    let intact = loop {
        if !out.is_empty() {
            let (res, back) = writer.write_vec(out).await;
            out = back;
            out.clear();
            if res.is_err() {
                break false;
            }
            if cursor != written {
                shared.wrote(generation, cursor);
                written = cursor;
            }
        }
        let quiet_until = Instant::now() + KEEP_ALIVE_EVERY;
        let wake = poll_fn(|cx| {
            if gone.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Over);
            }
            match shared.next_events(generation, cursor, &mut out, WRITE_MAX, cx) {
                StreamStep::Events { upto } => return Poll::Ready(Wake::Events(upto)),
                StreamStep::Finished => return Poll::Ready(Wake::Finished),
                StreamStep::Superseded => return Poll::Ready(Wake::Over),
                StreamStep::Pending => {}
            }
            // A drain lets the session close itself (its close event comes
            // down this stream); a close ends the stream now.
            while let Poll::Ready(cmd) = handle.poll_next(cx) {
                if matches!(cmd, ConnCommand::Close(_) | ConnCommand::CloseWith(..)) {
                    return Poll::Ready(Wake::Over);
                }
            }
            if quiet_timer.poll_until(quiet_until, cx).is_ready() {
                return Poll::Ready(Wake::KeepAlive);
            }
            Poll::Pending
        })
        .await;
        match wake {
            Wake::Events(upto) => cursor = upto,
            Wake::KeepAlive => out.extend_from_slice(KEEP_ALIVE),
            Wake::Finished | Wake::Over => break true,
        }
    };
    // Ended here (the session's close delivered, or the client gone): the
    // session learns it, and keeps its events for a resume if it lives on.
    shared.detach(generation);
    intact
}

/// Resolves when the client closes its side (or its connection fails);
/// what it sends meanwhile is read and dropped.
async fn client_gone<R>(r: &mut R, buf: &mut ReadBuf)
where
    R: AsyncReadRent + ReadReady,
{
    if r.has_readiness() {
        let mut scratch = [0u8; 256];
        loop {
            if r.read_ready().await.is_err() {
                return;
            }
            match r.try_read(&mut scratch) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }
    loop {
        match buf.read_from(r, 4096).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let n = buf.len();
                buf.consume(n);
            }
        }
    }
}
