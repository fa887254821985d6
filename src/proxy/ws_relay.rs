//! Inspect mode: WebSocket frames parsed in both directions and forwarded
//! without re-encoding. Enforces message limits and protocol rules, pings
//! idle clients, swallows their pongs, and closes with a meaningful code when
//! a side misbehaves or vanishes, or the balancer drains.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use monoio::time::Instant;

use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf};

use super::backend::BackendConn;
use super::env::Env;
use super::outbound::{At, End, Outbound};
use super::session::WsSession;
use super::track::{close_code_of, source, Track, LOST};
use super::ws_hooks::Live;
use super::ws_messages::{Inspector, Lane};
use super::ws_notes::{at, Notes};
use super::ws_pinger::{pinger, PingState};
use super::ClientConn;
use crate::hooks::{Direction, MessageMode};
use crate::hub::events::ClosedBy;
use crate::proto::ws::frame::{FrameLimits, OpCode};
use crate::proto::ws::scanner::{FrameScanner, ScannerConfig, Segment};
use crate::proxy::conns::{ConnCommand, ConnHandle};
use crate::rt::io::ReadBuf;
use crate::rt::rate::RateLimit;
use crate::rt::ready::ReadReady;
use crate::rt::ready_read::{read_some, ReadPool};

/// The largest read (the read size adapts below it).
const RELAY_CHUNK: usize = crate::rt::ready_read::POOLED_READ;
/// After a close frame went one way, how long the reply may take.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// After an abnormal end, how long the other side may finish.
const ABORT_GRACE: Duration = Duration::from_secs(1);

/// Scans and forwards what is buffered in `buf`; returns whether a close
/// frame went through, or the protocol error. A close frame's code is noted
/// in the session's track, and so is every data message that ends.
async fn forward_buffered<W: AsyncWriteRent>(
    buf: &mut ReadBuf,
    scanner: &mut FrameScanner,
    out: &Outbound<W>,
    ping: Option<&PingState>,
    notes: &Notes<'_>,
) -> Result<(bool, bool), crate::proto::ws::WsError> {
    let mut cursor = buf.pos;
    let mut fwd_start = cursor;
    let mut closed = false;
    let mut ok = true;
    loop {
        let seg = match scanner.next(&buf.buf[cursor..]) {
            Ok(Some(seg)) => seg,
            Ok(None) => break,
            Err(e) => {
                // Forward what was valid before the error, then report it.
                if fwd_start < cursor {
                    let v = std::mem::take(&mut buf.buf);
                    let (_, v) = out.forward(v, fwd_start, cursor, At::InMessage).await;
                    buf.buf = v;
                }
                buf.consume(cursor - buf.pos);
                return Err(e);
            }
        };
        match seg {
            Segment::Data { len } => {
                cursor += len;
                if !scanner.in_message() {
                    notes.message_ended(scanner);
                }
            }
            Segment::Control { len, header } => {
                let swallow = header.opcode == OpCode::Pong
                    && ping.is_some_and(|p| p.answered_by(&buf.buf[cursor..cursor + len], &header));
                if swallow {
                    if fwd_start < cursor {
                        let v = std::mem::take(&mut buf.buf);
                        let (w_ok, v) = out.forward(v, fwd_start, cursor, at(scanner)).await;
                        buf.buf = v;
                        ok &= w_ok;
                    }
                    cursor += len;
                    fwd_start = cursor;
                    continue;
                }
                if header.opcode == OpCode::Close {
                    notes.note_source(close_code_of(&buf.buf[cursor..cursor + len], &header));
                    if let Some(code) = out.deferred.take() {
                        // The reply to our close of the other side: the
                        // offender gets its own close instead.
                        if fwd_start < cursor {
                            let v = std::mem::take(&mut buf.buf);
                            let (w_ok, v) = out.forward(v, fwd_start, cursor, at(scanner)).await;
                            buf.buf = v;
                            ok &= w_ok;
                        }
                        ok &= out.close(code, "protocol error").await;
                        cursor += len;
                        fwd_start = cursor;
                        closed = true;
                        break;
                    }
                    cursor += len;
                    out.close_sent.set(true);
                    closed = true;
                    break;
                }
                cursor += len;
            }
        }
    }
    if fwd_start < cursor {
        let v = std::mem::take(&mut buf.buf);
        let (w_ok, v) = out.forward(v, fwd_start, cursor, at(scanner)).await;
        buf.buf = v;
        ok &= w_ok;
    }
    buf.consume(cursor - buf.pos);
    Ok((closed, ok))
}

/// What one direction sends when it ends badly.
struct Endings {
    /// To the source, when writing to the destination fails.
    write_failed: (u16, &'static str),
    /// To the destination, when the source breaks the protocol.
    source_error: &'static str,
    /// To the destination, when the source goes away without a close.
    source_gone: (u16, &'static str),
}

/// Client to backend. A write toward the backend fails only once its
/// connection is gone (one that merely stops reading stalls instead), so
/// the client gets 1012 as when the backend's end is read first: which of
/// the two directions notices first is a race.
const UP: Endings = Endings {
    write_failed: (1012, "backend went away"),
    source_error: "client error",
    source_gone: (1001, "client went away"),
};

/// Backend to client: a backend that vanishes gets its client 1012.
const DOWN: Endings = Endings {
    write_failed: (1001, "client went away"),
    source_error: "backend error",
    source_gone: (1012, "backend went away"),
};

/// The session's bookkeeping for one direction of the relay.
struct Side<'a> {
    /// Where the ending, the bytes and the messages are noted.
    notes: Notes<'a>,
    /// The hooks' inspector, when `on_message` is asked about messages.
    inspect: Option<Box<Inspector<'a>>>,
    /// This direction's bandwidth limit (`--throttle-bps`), if any.
    rate: Option<&'a RateLimit>,
}

/// One direction of the relay: reads from the source, forwards frames to
/// `dst`, and on a bad ending sends the closes `endings` names. `ping` is
/// the client's liveness (client to backend only).
#[allow(clippy::too_many_arguments)]
async fn pump<R, D, S>(
    r: &mut R,
    buf: &mut ReadBuf,
    pool: &ReadPool,
    mut scanner: FrameScanner,
    dst: &Outbound<D>,
    src: &Outbound<S>,
    ping: Option<&PingState>,
    endings: &Endings,
    mut side: Side<'_>,
) -> End
where
    R: AsyncReadRent + ReadReady,
    D: AsyncWriteRent,
    S: AsyncWriteRent,
{
    let notes = &side.notes;
    let track = notes.track();
    let up = notes.up;
    loop {
        let forwarded = match side.inspect.as_mut() {
            None => forward_buffered(buf, &mut scanner, dst, ping, notes).await,
            // Boxed: the plain relay's state stays as small as before.
            Some(i) => Box::pin(i.forward(buf, &mut scanner, dst, src, ping, notes)).await,
        };
        match forwarded {
            Ok((true, _)) => return End::Closed,
            Ok((false, true)) => {}
            Ok((false, false)) => {
                // The destination's connection is gone.
                track.note(LOST, source(!up));
                let (code, reason) = endings.write_failed;
                // Boxed, as the other endings: a session pays for their
                // state only when it ends, not all its idle life.
                Box::pin(src.close(code, reason)).await;
                return End::Aborted;
            }
            Err(e) => {
                track.note(e.close_code(), ClosedBy::Balancer);
                // What the other side sent before our close reaches the
                // offender first; its close follows the other side's reply.
                src.defer_close(e.close_code());
                Box::pin(async {
                    dst.close(1001, endings.source_error).await;
                    if !dst.at_boundary.get() {
                        // The error came mid-frame: our close cannot go out
                        // to `dst`, so no reply will come. Fail fast.
                        src.flush_deferred().await;
                    }
                })
                .await;
                return End::Aborted;
            }
        }
        match read_some(buf, r, pool, RELAY_CHUNK).await {
            Ok(n) if n > 0 => {
                track.count(up, n);
                if let Some(p) = ping.filter(|p| p.interval.is_some()) {
                    p.last_rx.set(Instant::now());
                }
                if let Some(rate) = side.rate {
                    rate.pace(n).await;
                }
            }
            _ => {
                track.note(LOST, source(up));
                let (code, reason) = endings.source_gone;
                Box::pin(async {
                    dst.flush_deferred().await;
                    dst.close(code, reason).await;
                })
                .await;
                return End::Vanished;
            }
        }
    }
}

async fn commands<CW: AsyncWriteRent, BW: AsyncWriteRent>(
    handle: &ConnHandle,
    to_client: &Outbound<CW>,
    to_backend: &Outbound<BW>,
    track: &Track,
) -> End {
    loop {
        let (code, reason): (u16, &str) = match handle.next().await {
            // Sessions outlive the drain until its timeout closes them.
            ConnCommand::Drain => continue,
            ConnCommand::Ping(payload) => {
                // Boxed: the wait for commands stays small.
                Box::pin(to_client.inject(OpCode::Ping, &payload)).await;
                continue;
            }
            ConnCommand::Close(code) => (code, "going away"),
            ConnCommand::CloseWith(code, reason) => {
                track.note(code, ClosedBy::Balancer);
                // Boxed: only an ending session holds the closes' state.
                Box::pin(async {
                    to_client.close(code, &reason).await;
                    to_backend.close(1001, "balancer closing").await;
                })
                .await;
                return End::Aborted;
            }
        };
        track.note(code, ClosedBy::Balancer);
        Box::pin(async {
            to_client.close(code, reason).await;
            to_backend.close(1001, "balancer closing").await;
        })
        .await;
        return End::Aborted;
    }
}

/// Writes the session's injected frames whenever they come while the
/// stream toward the client is idle between messages (the forwarder writes
/// them when it is busy). Ends when a write fails.
async fn injector<CW: AsyncWriteRent>(session: &WsSession, to_client: &Outbound<CW>) {
    loop {
        session.kicked().await;
        // Boxed: an idle session's relay holds only the wait above.
        if !Box::pin(to_client.inject_outbox()).await {
            return;
        }
    }
}

/// Relays an upgraded session in inspect mode until it ends, noting how
/// it ended in `track`; with `live` hooks whose message mode is not `Off`,
/// data messages go through `on_message`. Returns false when a write
/// toward the client was abandoned part way: its writer must not be used
/// again, not even to shut it.
pub(crate) async fn relay<S>(
    env: &Env,
    client: &mut ClientConn<S>,
    conn: BackendConn,
    extensions: bool,
    session: &WsSession,
    live: Option<&Live>,
) -> bool
where
    S: AsyncReadRent + AsyncWriteRent,
    OwnedReadHalf<S>: ReadReady,
{
    let cfg = env.cfg();
    // A negotiated extension (permessage-deflate) may use RSV1 and compress
    // text, so UTF-8 can only be checked without one.
    let rsv_allowed = if extensions { 0b100 } else { 0 };
    let validate_utf8 = cfg.ws_validate_utf8 && !extensions;
    let scanner_for = |masked| {
        FrameScanner::new(ScannerConfig {
            limits: FrameLimits {
                max_payload: cfg.max_message_size,
                rsv_allowed,
                expect_masked: Some(masked),
            },
            max_message: cfg.max_message_size,
            validate_utf8,
        })
    };
    let BackendConn {
        r: mut br,
        w: bw,
        buf: mut bbuf,
        ..
    } = conn;
    let handle = client.handle.clone();
    let track = &session.track;
    client.buf.shrink_idle();
    bbuf.shrink_idle();
    let owned = handle.session();
    let mut to_client = Outbound::new(&mut client.w, false);
    if let Some(s) = owned.clone() {
        to_client = to_client.with_outbox(s);
    }
    let to_backend = Outbound::new(bw, true);
    let mut ping = PingState::new(cfg.ws_ping_interval, cfg.ws_pong_timeout);
    ping.session = owned;
    // Toward the backend, toward the client; only when messages are shown.
    let lanes = live
        .filter(|_| env.message_mode != MessageMode::Off)
        .map(|live| (live, Box::new([Lane::default(), Lane::default()])));
    let rates = client.rate.as_deref();
    let side = |up: bool| Side {
        rate: rates.map(|r| if up { &r.up } else { &r.down }),
        notes: Notes {
            env: Some(env),
            session,
            up,
        },
        inspect: lanes.as_ref().map(|(live, l)| {
            let (dir, lane, back) = if up {
                (Direction::ClientToBackend, &l[0], &l[1])
            } else {
                (Direction::BackendToClient, &l[1], &l[0])
            };
            Box::new(Inspector::new(live, env.message_mode, dir, lane, back))
        }),
    };
    // The relay's tasks live in this block: when it ends they are dropped,
    // with any write still stuck on a peer that stopped reading, so the
    // writers are free for the last closes and the shutdown.
    let (up_end, down_end) = {
        let up = pump(
            &mut client.r,
            &mut client.buf,
            &env.reads,
            scanner_for(true),
            &to_backend,
            &to_client,
            Some(&ping),
            &UP,
            side(true),
        );
        let down = pump(
            &mut br,
            &mut bbuf,
            &env.reads,
            scanner_for(false),
            &to_client,
            &to_backend,
            None,
            &DOWN,
            side(false),
        );
        let cmds = commands(&handle, &to_client, &to_backend, track);
        let pings = pinger(&ping, &to_client, &to_backend);
        let inject = injector(session, &to_client);
        let mut pings = pin!(pings);
        let mut inject = pin!(inject);
        let mut inject_end = false;
        let mut up = pin!(up);
        let mut down = pin!(down);
        let mut cmds = pin!(cmds);
        let mut up_end: Option<End> = None;
        let mut down_end: Option<End> = None;
        let mut cmd_end = false;
        let mut grace: Option<std::pin::Pin<Box<monoio::time::Sleep>>> = None;
        poll_fn(|cx| {
            if up_end.is_none() {
                if let Poll::Ready(e) = up.as_mut().poll(cx) {
                    up_end = Some(e);
                }
            }
            if down_end.is_none() {
                if let Poll::Ready(e) = down.as_mut().poll(cx) {
                    down_end = Some(e);
                }
            }
            if !cmd_end && cmds.as_mut().poll(cx).is_ready() {
                cmd_end = true;
            }
            if !cmd_end {
                if let Poll::Ready(e) = pings.as_mut().poll(cx) {
                    match e {
                        End::Vanished => track.note(LOST, ClosedBy::Client),
                        _ => track.note(1001, ClosedBy::Balancer),
                    }
                    cmd_end = true;
                }
            }
            if !inject_end && inject.as_mut().poll(cx).is_ready() {
                inject_end = true;
            }
            if up_end.is_some() && down_end.is_some() {
                return Poll::Ready(());
            }
            let clean =
                matches!(up_end, Some(End::Closed)) || matches!(down_end, Some(End::Closed));
            if up_end.is_some() || down_end.is_some() || cmd_end {
                let t = if clean && !cmd_end {
                    CLOSE_GRACE
                } else {
                    ABORT_GRACE
                };
                let sleep = grace.get_or_insert_with(|| Box::pin(monoio::time::sleep(t)));
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(());
                }
            }
            Poll::Pending
        })
        .await;
        (up_end, down_end)
    };
    tracing::debug!(?up_end, ?down_end, "websocket session ended");
    // Each bounded: a peer that does not read gets its socket shut (the
    // client's by the caller) without the close.
    to_client.flush_deferred().await;
    to_backend.flush_deferred().await;
    to_client.finish(false).await;
    to_backend.finish(true).await;
    !to_client.is_cut()
}

#[cfg(test)]
#[path = "ws_relay_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "injection_tests.rs"]
mod injection_tests;

#[cfg(test)]
#[path = "ws_relay_ready_tests.rs"]
mod ready_tests;
