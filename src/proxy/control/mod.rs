//! The balancer side of the control channel: a WebSocket at `/_lb/register`
//! where backends authenticate, register, heartbeat, drain and leave, and
//! (protocol v2) ask for operations on sessions and for events. This is the
//! registry's only I/O; it runs on the worker that accepted the channel.
//! Here: the access check and the channel's loop (one read always in
//! flight, never cancelled; the mailbox; the heartbeat deadline);
//! `members` acts on each message, `ops` runs operations and events.

mod members;
mod ops;
#[cfg(test)]
mod tests;

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Instant;

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::env::Env;
use crate::pool::registry::protocol::{ProtocolError, ServerMessage, MAX_V2_CONTROL_MESSAGE};
use crate::proto::http::auth::bearer_matches;
use crate::proto::http::ParsedRequest;
use crate::proto::ws::close::write_close_frame;
use crate::proto::ws::frame::{write_frame, FrameLimits, OpCode};
use crate::proto::ws::handshake::{accept_key, write_server_response};
use crate::proto::ws::message::MessageReader;
use crate::proto::ws::scanner::ScannerConfig;
use crate::proxy::client_write::ClientWriter;
use crate::proxy::ClientConn;
use crate::rt::io::ReadBuf;
use members::{Channel, Done};

/// Whether the request may open a control channel: 401 for a wrong or
/// missing token; without a configured token, only a loopback control
/// listener is trusted (403 elsewhere).
pub(crate) fn authorize(
    env: &Env,
    data: &[u8],
    req: &ParsedRequest,
    on_control_listener: bool,
) -> Result<(), u16> {
    let cfg = env.cfg();
    let given = req.authorization.clone().and_then(|r| data.get(r));
    let loopback_control = cfg.control_listen.is_some_and(|a| a.ip().is_loopback());
    access(
        cfg.register_token.as_deref(),
        given,
        on_control_listener && loopback_control,
    )
}

/// The decision behind [`authorize`]: with a token, the `Authorization`
/// value must be `Bearer TOKEN` (compared in constant time, without leaking
/// the token's length); without one, only a loopback control listener.
fn access(token: Option<&str>, given: Option<&[u8]>, trusted_listener: bool) -> Result<(), u16> {
    match token {
        Some(token) if bearer_matches(given, token) => Ok(()),
        Some(_) => Err(401),
        None if trusted_listener => Ok(()),
        None => Err(403),
    }
}

/// Writes toward the peer are bounded by the idle timeout; one that gets
/// nowhere (a peer that stopped reading) cuts the writer and ends the
/// channel, and nothing is written after it.
async fn send<W: AsyncWriteRent>(w: &mut ClientWriter<'_, W>, msg: &ServerMessage) -> bool {
    let json = msg.to_json();
    let mut out = Vec::with_capacity(json.len() + 10);
    write_frame(&mut out, true, OpCode::Text, None, json.as_bytes());
    w.write_vec(out).await.0.is_ok()
}

async fn close<W: AsyncWriteRent>(w: &mut ClientWriter<'_, W>, code: u16, reason: &str) {
    let mut out = Vec::with_capacity(reason.len() + 8);
    // Close reasons are limited to 123 bytes.
    let reason = &reason[..reason.len().min(120)];
    write_close_frame(&mut out, code, reason, None);
    let _ = w.write_vec(out).await;
}

type ReadOut<'a, R> = (&'a mut R, ReadBuf, io::Result<usize>);

/// One read that owns the buffer (and borrows the read half) until it
/// completes, so that it stays in flight while the channel writes answers
/// and is never cancelled (no bytes lost).
fn start_read<'a, R: AsyncReadRent>(
    r: &'a mut R,
    mut buf: ReadBuf,
) -> Pin<Box<dyn Future<Output = ReadOut<'a, R>> + 'a>> {
    Box::pin(async move {
        let res = buf.read_from(r, 4096).await;
        (r, buf, res)
    })
}

/// What woke the channel.
enum Wake<'a, R> {
    Read(ReadOut<'a, R>),
    Mail(ServerMessage),
    Deadline,
    /// The balancer drains (shutdown or upgrade): the agent reconnects,
    /// to a successor if there is one.
    Draining,
}

/// Whether the channel goes on after the bytes handled.
enum Flow {
    Go,
    End,
}

/// Runs one control channel after the handshake checks passed.
pub(crate) async fn serve_channel<S>(
    env: &Env,
    client: &mut ClientConn<S>,
    req: &ParsedRequest,
    key: &[u8],
) where
    S: AsyncReadRent + AsyncWriteRent,
{
    let mut out = Vec::with_capacity(256);
    write_server_response(&mut out, &accept_key(key), None, None);
    client.buf.consume(req.head_len);
    let peer = client.peer;
    let mut buf = std::mem::replace(&mut client.buf, ReadBuf::with_capacity(0));
    let mut w = ClientWriter::new(
        &mut client.w,
        &mut client.writer_cut,
        &client.timer,
        env.cfg().idle_timeout,
    );
    if w.write_vec(out).await.0.is_err() {
        return;
    }
    let mut chan = Channel::new(env);
    let mut reader = MessageReader::new(ScannerConfig {
        limits: FrameLimits {
            max_payload: MAX_V2_CONTROL_MESSAGE as u64,
            rsv_allowed: 0,
            expect_masked: Some(true),
        },
        max_message: MAX_V2_CONTROL_MESSAGE as u64,
        validate_utf8: true,
    });
    let timeout = env.cfg().heartbeat_timeout;
    // A channel that has not registered holds no table slot, and may not
    // stay open unregistered for longer than a heartbeat timeout either.
    let register_by = Instant::now() + timeout;
    let mut last_heard = Instant::now();
    if let Flow::Go = handle_buffered(env, peer, &mut chan, &mut reader, &mut buf, &mut w).await {
        let mut read = start_read(&mut client.r, buf);
        let mut draining = pin!(env.draining.wait());
        loop {
            let deadline = match chan.current {
                Some(_) => last_heard + timeout,
                None => register_by,
            };
            let wake = {
                let mut sleep = pin!(monoio::time::sleep_until(monoio::time::Instant::from_std(
                    deadline
                )));
                let mailbox = &chan.mailbox;
                poll_fn(|cx| {
                    if let Poll::Ready(out) = read.as_mut().poll(cx) {
                        return Poll::Ready(Wake::Read(out));
                    }
                    if let Poll::Ready(m) = mailbox.poll_next(cx) {
                        return Poll::Ready(Wake::Mail(m));
                    }
                    if sleep.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Wake::Deadline);
                    }
                    if draining.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Wake::Draining);
                    }
                    Poll::Pending
                })
                .await
            };
            match wake {
                Wake::Read((r, mut b, res)) => {
                    if !matches!(res, Ok(n) if n > 0) {
                        break;
                    }
                    last_heard = Instant::now();
                    let flow = handle_buffered(env, peer, &mut chan, &mut reader, &mut b, &mut w);
                    if let Flow::End = flow.await {
                        break;
                    }
                    read = start_read(r, b);
                }
                Wake::Mail(m) => {
                    if !send(&mut w, &m).await {
                        break;
                    }
                }
                Wake::Deadline if chan.current.is_none() => {
                    close(&mut w, 1008, "register first").await;
                    break;
                }
                Wake::Deadline => {
                    close(&mut w, 1001, "heartbeat timeout").await;
                    break;
                }
                Wake::Draining => {
                    close(&mut w, 1001, "going away").await;
                    break;
                }
            }
        }
    }
    // However the channel ended (close, TCP end, silence, a refused message
    // or a binary frame), its registration leaves the pool now, unless a
    // newer channel has taken the id over; its operations stop.
    chan.end(env);
}

/// Acts on every whole message in `buf`, answering as it goes.
async fn handle_buffered<W: AsyncWriteRent>(
    env: &Env,
    peer: std::net::SocketAddr,
    chan: &mut Channel,
    reader: &mut MessageReader,
    buf: &mut ReadBuf,
    w: &mut ClientWriter<'_, W>,
) -> Flow {
    while !buf.is_empty() {
        let (used, msg) = match reader.feed(buf.data()) {
            Ok(r) => r,
            Err(e) => {
                close(w, e.close_code(), "protocol error").await;
                return Flow::End;
            }
        };
        buf.consume(used);
        let Some(msg) = msg else {
            if used == 0 {
                break;
            }
            continue;
        };
        let refused = match msg.opcode {
            OpCode::Ping => {
                let mut pong = Vec::with_capacity(msg.payload.len() + 2);
                write_frame(&mut pong, true, OpCode::Pong, None, &msg.payload);
                if w.write_vec(pong).await.0.is_err() {
                    return Flow::End;
                }
                continue;
            }
            OpCode::Close => {
                close(w, 1000, "").await;
                return Flow::End;
            }
            OpCode::Text => {
                let text = String::from_utf8_lossy(&msg.payload);
                match chan.handle(env, peer, &text) {
                    Ok(Some(reply)) => {
                        if !send(w, &reply).await {
                            return Flow::End;
                        }
                        continue;
                    }
                    Ok(None) => continue,
                    Err(Done::Deregistered) => {
                        close(w, 1000, "deregistered").await;
                        return Flow::End;
                    }
                    Err(Done::Refused(e)) => e,
                }
            }
            OpCode::Binary => ProtocolError::BinaryFrame,
            _ => continue,
        };
        tracing::warn!(%peer, error = %refused, "control message refused");
        let message = refused.to_string();
        let _ = send(w, &ServerMessage::Error { message }).await;
        let reason = match refused {
            ProtocolError::BinaryFrame => "binary frames are not supported",
            _ => "refused",
        };
        close(w, refused.close_code(), reason).await;
        return Flow::End;
    }
    Flow::Go
}

#[cfg(test)]
mod access_tests {
    use super::access;

    #[test]
    fn register_token_is_checked_with_the_constant_time_bearer_match() {
        let t = Some("s3cret");
        assert_eq!(access(t, Some(b"Bearer s3cret"), false), Ok(()));
        assert_eq!(access(t, Some(b"Bearer s3cret"), true), Ok(()));
        for wrong in [
            &b"Bearer s3cre"[..],
            b"Bearer s3cret ",
            b"Bearer s3cretX",
            b"bearer s3cret",
            b"s3cret",
            b"Bearer ",
            b"",
        ] {
            assert_eq!(access(t, Some(wrong), true), Err(401), "{wrong:?}");
        }
        assert_eq!(access(t, None, true), Err(401));
        // No token: only a loopback control listener is trusted.
        assert_eq!(access(None, None, true), Ok(()));
        assert_eq!(access(None, Some(b"Bearer x"), false), Err(403));
    }
}
