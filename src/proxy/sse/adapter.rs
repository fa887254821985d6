//! A fallback session's adapter: on the far end of the in-memory pipe
//! whose near end the relay takes for its client, it plays the WebSocket client.
//! Messages from the backend (and those the message hub injects) become
//! events in the session's shared state; posted messages become masked
//! frames; pings get pongs; a close becomes the `close` event. It also
//! keeps the session's clock: a stream gone past `--fallback-resume-timeout`,
//! or events piling past `--fallback-buffer` with no stream, close the
//! session with 1001. When the session is over it stays findable until its
//! last events went to a stream, or the resume timeout passed.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::rt::mem_pipe::MemPipe;
use monoio::io::{OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::time::Instant;

use crate::hub::sse::{Outgoing, Pushed, SseShared};
use crate::proto::sse::{write_binary, write_close, write_text};
use crate::proto::ws::close::{parse_close_payload, write_close_frame};
use crate::proto::ws::frame::{write_frame, FrameLimits, OpCode};
use crate::proto::ws::message::MessageReader;
use crate::proto::ws::scanner::ScannerConfig;
use crate::proxy::env::Env;
use crate::rt::io::{write_vec, LocalLock, ReadBuf};

/// The pipe's write side, shared by whoever writes a frame.
type PipeWriter = LocalLock<OwnedWriteHalf<MemPipe>>;

/// Runs the adapter until the session is over and its last events were
/// delivered or given up on; then the session leaves the table.
pub(crate) async fn run(env: Rc<Env>, far: MemPipe, shared: Arc<SseShared>) {
    let cfg = env.cfg();
    let (r, w) = far.into_split();
    let w = LocalLock::new(w);
    let close_sent = Cell::new(false);
    let side = Side {
        shared: &shared,
        w: &w,
        close_sent: &close_sent,
        token: shared.token.to_string(),
    };
    let max = cfg.max_message_size;
    let resume_timeout = cfg.fallback_resume_timeout;
    {
        let mut reader = pin!(side.read_backend(r, max));
        let mut writer = pin!(side.write_posts());
        let mut clock = pin!(side.watch_stream(resume_timeout));
        // The clock ends once it closed the session, while the reader still
        // waits for the close to come back: a finished part is not polled
        // again.
        let (mut writer_done, mut clock_done) = (false, false);
        poll_fn(|cx| {
            if reader.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            if !writer_done {
                writer_done = writer.as_mut().poll(cx).is_ready();
            }
            if !clock_done {
                clock_done = clock.as_mut().poll(cx).is_ready();
            }
            Poll::Pending
        })
        .await;
    }
    shared.end();
    linger(&shared, resume_timeout).await;
    env.router.sse.remove(&shared.token);
    tracing::debug!(token = %shared.token.short(), "fallback session removed");
}

/// What the adapter's three parts share.
struct Side<'a> {
    shared: &'a SseShared,
    w: &'a PipeWriter,
    close_sent: &'a Cell<bool>,
    token: String,
}

impl Side<'_> {
    /// Writes one frame (masked, as a client does) toward the relay.
    async fn send(&self, opcode: OpCode, payload: &[u8]) -> bool {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        write_frame(&mut frame, true, opcode, Some(mask()), payload);
        let mut w = self.w.lock().await;
        write_vec(&mut *w, frame).await.0.is_ok()
    }

    /// Sends a close (once); no more posts are taken.
    async fn close(&self, code: u16, reason: &str) {
        self.shared.end();
        if self.close_sent.replace(true) {
            return;
        }
        let mut frame = Vec::with_capacity(131);
        write_close_frame(&mut frame, code, reason, Some(mask()));
        let mut w = self.w.lock().await;
        let _ = write_vec(&mut *w, frame).await;
    }

    /// Reads the relay's frames until the pipe ends; every message becomes
    /// an event, the close the last one.
    async fn read_backend(&self, mut r: OwnedReadHalf<MemPipe>, max: u64) {
        let mut reader = MessageReader::new(ScannerConfig {
            limits: FrameLimits::client(max),
            max_message: max,
            validate_utf8: true,
        });
        let mut buf = ReadBuf::with_capacity(16 * 1024);
        let mut closed = false;
        loop {
            match buf.read_from(&mut r, 64 * 1024).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            loop {
                let fed = reader.feed(buf.data());
                let (used, msg) = match fed {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::debug!(error = %e, "fallback session: bad frame from the relay");
                        self.push_close(&mut closed, 1002, "protocol error");
                        self.close(1002, "").await;
                        return;
                    }
                };
                buf.consume(used);
                let Some(msg) = msg else { break };
                match msg.opcode {
                    OpCode::Text | OpCode::Binary if !closed => {
                        let binary = msg.opcode == OpCode::Binary;
                        let pushed = self.shared.push(false, |id, out| {
                            if binary {
                                write_binary(out, &self.token, id, &msg.payload);
                            } else {
                                write_text(out, &self.token, id, &msg.payload);
                            }
                        });
                        match pushed {
                            Pushed::Kept => {}
                            // A stream is there but behind: the backend
                            // waits (its bytes stay in the relay's socket).
                            Pushed::Full => {
                                poll_fn(|cx| match self.shared.poll_room(cx) {
                                    true => Poll::Ready(()),
                                    false => Poll::Pending,
                                })
                                .await
                            }
                            Pushed::Overflow => {
                                tracing::debug!(token = %self.shared.token.short(), "fallback buffer exceeded");
                                self.close(1001, "event stream buffer exceeded").await;
                            }
                        }
                    }
                    OpCode::Ping if !self.close_sent.get() => {
                        let _ = self.send(OpCode::Pong, &msg.payload).await;
                    }
                    OpCode::Close => {
                        let (code, reason) = match parse_close_payload(&msg.payload) {
                            Ok(Some((c, r))) => (c, r.to_string()),
                            _ => (1005, String::new()),
                        };
                        self.push_close(&mut closed, code, &reason);
                        // Answered with the same code, as a client does.
                        self.close(code, "").await;
                    }
                    _ => {}
                }
            }
        }
        // The relay ended without a close reaching us.
        self.push_close(&mut closed, 1006, "");
    }

    /// Pushes the `close` event (once).
    fn push_close(&self, closed: &mut bool, code: u16, reason: &str) {
        if std::mem::replace(closed, true) {
            return;
        }
        self.shared.end();
        self.shared.push(true, |id, out| {
            write_close(out, &self.token, id, code, reason)
        });
    }

    /// Sends what clients post, in order, until the session closes.
    async fn write_posts(&self) {
        loop {
            let msg = poll_fn(|cx| match self.shared.poll_outgoing(cx) {
                Some(m) => Poll::Ready(m),
                None => Poll::Pending,
            })
            .await;
            match msg {
                Outgoing::Text(p) => {
                    let _ = self.send(OpCode::Text, &p).await;
                }
                Outgoing::Binary(p) => {
                    let _ = self.send(OpCode::Binary, &p).await;
                }
                Outgoing::Close(code) => {
                    let reason = if code == 1000 {
                        ""
                    } else {
                        "event stream gone"
                    };
                    self.close(code, reason).await;
                }
            }
        }
    }

    /// Closes the session (1001) once its stream has been away for
    /// `timeout`.
    async fn watch_stream(&self, timeout: Duration) {
        loop {
            let (epoch, since) = poll_fn(|cx| Poll::Ready(self.shared.watch_attach(cx))).await;
            let moved = moved_from(self.shared, epoch);
            match since {
                None => moved.await,
                Some(t) => {
                    let at = Instant::from_std(t + timeout);
                    if monoio::time::timeout_at(at, moved).await.is_err() {
                        tracing::debug!(token = %self.shared.token.short(), "fallback stream not resumed");
                        self.close(1001, "event stream not resumed").await;
                        return;
                    }
                }
            }
        }
    }
}

/// Resolves when the attach epoch moves from `epoch`.
async fn moved_from(shared: &SseShared, epoch: u64) {
    poll_fn(|cx| match shared.watch_attach(cx).0 == epoch {
        true => Poll::Pending,
        false => Poll::Ready(()),
    })
    .await
}

/// After the session ended: waits until its last events went to a stream,
/// or no stream came for the resume timeout.
async fn linger(shared: &SseShared, timeout: Duration) {
    loop {
        if shared.delivered_all() {
            return;
        }
        let (epoch, since) = poll_fn(|cx| Poll::Ready(shared.watch_attach(cx))).await;
        match since {
            None => moved_from(shared, epoch).await,
            Some(t) => {
                let at = Instant::from_std(t + timeout);
                if monoio::time::timeout_at(at, moved_from(shared, epoch))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// A frame mask (RFC 6455 asks for unpredictable ones; the relay re-masks
/// toward the backend anyway).
fn mask() -> [u8; 4] {
    fastrand::u32(..).to_be_bytes()
}
