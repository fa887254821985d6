//! Tunnel mode: after the 101, bytes both ways with nothing parsed — the
//! cheapest relay, at the price of no limits, pings or close codes. A
//! session with no bytes either way for `--ws-tunnel-idle-timeout`, or with
//! a write toward the client pending for `--idle-timeout`, is closed by the
//! worker's sweeper (no timer per session).
//!
//! The hooks hear of tunnel sessions (`on_connect`, `on_disconnect`) but
//! never of messages: frames are not parsed, so `on_message` is not called,
//! and the close code reported is 1005 when both directions ended with an
//! orderly end of stream, 1006 otherwise (a reset, a failed write, a close
//! command, or one side not finishing within the grace after the other).

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf};

use super::backend::BackendConn;
use super::env::Env;
use super::exchange::shutdown_quietly;
use super::session::WsSession;
use super::track::{Track, LOST, NO_CODE};
use super::ClientConn;
use crate::hub::events::ClosedBy;
use crate::proxy::conns::{ConnCommand, ConnHandle};
use crate::rt::io::{write_range, ReadBuf};
use crate::rt::rate::RateLimit;
use crate::rt::ready::ReadReady;
use crate::rt::ready_read::{read_some, ReadPool};

/// The largest read (the read size adapts below it).
const TUNNEL_CHUNK: usize = crate::rt::ready_read::POOLED_READ;
/// After one side closes, how long the other may still finish.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Copies until EOF; returns after writing EOF (shutdown) to `w`, true when
/// the source ended with an orderly end of stream and every write went
/// through. Counts the bytes read in `track` (`up`: from the client). Stamps
/// the connection's activity whenever bytes went through (the worker's
/// sweeper closes tunnels idle past `--ws-tunnel-idle-timeout`). When `w`
/// is the client's (`to_client`), each write and the shutdown are stamped
/// on the handle while pending: the sweeper ends a session whose client
/// stopped reading even while the other way moves, and a stamp left by a
/// write that failed or was abandoned (this future dropped) says `w` must
/// not be used again. With `rate`, each read is paid for before its bytes
/// are written on.
#[allow(clippy::too_many_arguments)]
async fn copy<R: AsyncReadRent + ReadReady, W: AsyncWriteRent>(
    r: &mut R,
    w: &mut W,
    buf: &mut ReadBuf,
    pool: &ReadPool,
    handle: &ConnHandle,
    to_client: bool,
    track: &Track,
    rate: Option<&RateLimit>,
) -> bool {
    let started = || {
        if to_client {
            handle.client_write_started();
        }
    };
    let done = || {
        if to_client {
            handle.client_write_done();
        }
    };
    let mut clean = true;
    loop {
        if !buf.is_empty() {
            let v = std::mem::take(&mut buf.buf);
            let (pos, end) = (buf.pos, v.len());
            started();
            // Boxed: an idle tunnel (waiting on reads) keeps no write state.
            let (res, v) = Box::pin(write_range(w, v, pos, end)).await;
            buf.buf = v;
            buf.consume(end - pos);
            if res.is_err() {
                return false;
            }
            done();
            handle.touch();
        }
        match read_some(buf, r, pool, TUNNEL_CHUNK).await {
            Ok(n) if n > 0 => {
                track.count(!to_client, n);
                if let Some(rate) = rate {
                    rate.pace(n).await;
                }
            }
            Ok(_) => break,
            Err(_) => {
                clean = false;
                break;
            }
        }
    }
    started();
    // Boxed, like the writes: only an ending tunnel holds shutdown state.
    Box::pin(shutdown_quietly(w)).await;
    done();
    clean
}

/// Relays bytes between the upgraded client and backend until both end,
/// noting the ending (see the module docs) and the bytes in `track`.
/// Returns false when a write toward the client was abandoned part way
/// (or failed): its writer must not be used again, not even to shut it.
pub(crate) async fn relay<S>(
    env: &Env,
    client: &mut ClientConn<S>,
    conn: BackendConn,
    session: &WsSession,
) -> bool
where
    S: AsyncReadRent + AsyncWriteRent,
    OwnedReadHalf<S>: ReadReady,
{
    let BackendConn {
        r: mut br,
        w: mut bw,
        buf: mut bbuf,
        ..
    } = conn;
    let handle = client.handle.clone();
    let track = &session.track;
    client.buf.shrink_idle();
    bbuf.shrink_idle();
    handle.touch();
    let rates = client.rate.as_deref();
    let up = copy(
        &mut client.r,
        &mut bw,
        &mut client.buf,
        &env.reads,
        &handle,
        false,
        track,
        rates.map(|r| &r.up),
    );
    let down = copy(
        &mut br,
        &mut client.w,
        &mut bbuf,
        &env.reads,
        &handle,
        true,
        track,
        rates.map(|r| &r.down),
    );
    let mut up = pin!(up);
    let mut down = pin!(down);
    // Tunnel mode cannot send a close frame: a close command ends the
    // connection; a drain lets the session run until that close comes
    // (pings are never sent to tunnel sessions, nor frames injected).
    let closed = async {
        loop {
            match handle.next().await {
                ConnCommand::Drain | ConnCommand::Ping(_) => {}
                ConnCommand::Close(code) | ConnCommand::CloseWith(code, _) => {
                    track.note(code, ClosedBy::Balancer);
                    return;
                }
            }
        }
    };
    let mut closed = pin!(closed);
    let mut up_done = None;
    let mut down_done = None;
    let mut grace = None;
    // Which side ended its direction first.
    let mut first = None;
    poll_fn(|cx| {
        if up_done.is_none() {
            if let Poll::Ready(clean) = up.as_mut().poll(cx) {
                up_done = Some(clean);
            }
        }
        if down_done.is_none() {
            if let Poll::Ready(clean) = down.as_mut().poll(cx) {
                down_done = Some(clean);
            }
        }
        if let (Some(u), Some(d)) = (up_done, down_done) {
            let code = if u && d { NO_CODE } else { LOST };
            track.note(code, first.unwrap_or(ClosedBy::Client));
            return Poll::Ready(());
        }
        if first.is_none() {
            if up_done.is_some() {
                first = Some(ClosedBy::Client);
            } else if down_done.is_some() {
                first = Some(ClosedBy::Backend);
            }
        }
        if closed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        if up_done.is_some() || down_done.is_some() {
            let sleep = grace.get_or_insert_with(|| Box::pin(monoio::time::sleep(CLOSE_GRACE)));
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await;
    // A stamp still there: a write toward the client failed or was cut.
    let intact = handle.client_write_since_ms().is_none();
    handle.client_write_done();
    intact
}
