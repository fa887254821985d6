//! Inspect mode: WebSocket frames parsed in both directions and forwarded
//! without re-encoding. Enforces message limits and protocol rules, pings
//! idle clients, swallows their pongs, and closes with a meaningful code when
//! a side misbehaves or vanishes, or the balancer drains.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::backend::BackendConn;
use super::exchange::shutdown_quietly;
use super::io::{write_range, write_vec, LocalLock, ReadBuf};
use super::ClientConn;
use crate::server::conns::{ConnCommand, ConnHandle};
use crate::server::worker::WorkerCtx;
use crate::ws::close::write_close_frame;
use crate::ws::frame::{write_frame, FrameLimits, OpCode};
use crate::ws::scanner::{control_payload, FrameScanner, ScannerConfig, Segment};

const RELAY_CHUNK: usize = 16 * 1024;
/// After a close frame went one way, how long the reply may take.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// After an abnormal end, how long the other side may finish.
const ABORT_GRACE: Duration = Duration::from_secs(1);

/// One direction's writer, shared by the forwarder of that direction and by
/// whoever injects frames (pings, closes). Injection happens only at a frame
/// boundary; otherwise the frame waits in `pending` for the next boundary.
struct Outbound<W> {
    w: LocalLock<W>,
    at_boundary: Cell<bool>,
    pending: RefCell<Vec<u8>>,
    close_sent: Cell<bool>,
    mask: bool,
}

impl<W: AsyncWriteRent> Outbound<W> {
    fn new(w: W, mask: bool) -> Self {
        Self {
            w: LocalLock::new(w),
            at_boundary: Cell::new(true),
            pending: RefCell::new(Vec::new()),
            close_sent: Cell::new(false),
            mask,
        }
    }

    fn mask_key(&self) -> Option<[u8; 4]> {
        self.mask.then(|| fastrand::u32(..).to_ne_bytes())
    }

    /// Forwards `buf[start..end]`; `boundary` says whether `end` is a frame
    /// boundary. Flushes injected frames waiting for one.
    async fn forward(
        &self,
        buf: Vec<u8>,
        start: usize,
        end: usize,
        boundary: bool,
    ) -> (bool, Vec<u8>) {
        let mut w = self.w.lock().await;
        let (res, buf) = write_range(&mut *w, buf, start, end).await;
        self.at_boundary.set(boundary);
        let mut ok = res.is_ok();
        if ok && boundary && !self.pending.borrow().is_empty() {
            let pending = std::mem::take(&mut *self.pending.borrow_mut());
            ok = write_vec(&mut *w, pending).await.0.is_ok();
        }
        (ok, buf)
    }

    /// Sends a frame the balancer makes itself.
    async fn inject(&self, opcode: OpCode, payload: &[u8]) -> bool {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        write_frame(&mut frame, true, opcode, self.mask_key(), payload);
        self.send_made(frame).await
    }

    /// Sends a close frame once; later calls do nothing.
    async fn close(&self, code: u16, reason: &str) -> bool {
        if self.close_sent.replace(true) {
            return true;
        }
        let mut frame = Vec::with_capacity(reason.len() + 16);
        write_close_frame(&mut frame, code, reason, self.mask_key());
        self.send_made(frame).await
    }

    async fn send_made(&self, frame: Vec<u8>) -> bool {
        let mut w = self.w.lock().await;
        if self.at_boundary.get() {
            write_vec(&mut *w, frame).await.0.is_ok()
        } else {
            self.pending.borrow_mut().extend_from_slice(&frame);
            true
        }
    }

    async fn shutdown(&self) {
        let mut w = self.w.lock().await;
        shutdown_quietly(&mut *w).await;
    }
}

/// How one direction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// A close frame was forwarded; the reply should follow.
    Closed,
    /// The side went away without a close frame.
    Vanished,
    /// Protocol error, ping timeout or write failure: closes already sent.
    Aborted,
}

/// The client's liveness: pings sent on idle, pongs expected back.
struct PingState {
    interval: Option<Duration>,
    timeout: Duration,
    outstanding: Cell<Option<[u8; 8]>>,
    counter: Cell<u64>,
}

/// Scans and forwards what is buffered in `buf`; returns whether a close
/// frame went through, or the protocol error.
async fn forward_buffered<W: AsyncWriteRent>(
    buf: &mut ReadBuf,
    scanner: &mut FrameScanner,
    out: &Outbound<W>,
    ping: Option<&PingState>,
) -> Result<(bool, bool), crate::ws::WsError> {
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
                    let (_, v) = out.forward(v, fwd_start, cursor, true).await;
                    buf.buf = v;
                }
                buf.consume(cursor - buf.pos);
                return Err(e);
            }
        };
        match seg {
            Segment::Data { len } => cursor += len,
            Segment::Control { len, header } => {
                let swallow = header.opcode == OpCode::Pong
                    && ping.is_some_and(|p| {
                        let (payload, n) = control_payload(&buf.buf[cursor..cursor + len], &header);
                        let ours = p.outstanding.get().is_some_and(|o| payload[..n] == o);
                        if ours {
                            p.outstanding.set(None);
                        }
                        ours
                    });
                if swallow {
                    if fwd_start < cursor {
                        let v = std::mem::take(&mut buf.buf);
                        let (w_ok, v) = out.forward(v, fwd_start, cursor, true).await;
                        buf.buf = v;
                        ok &= w_ok;
                    }
                    cursor += len;
                    fwd_start = cursor;
                    continue;
                }
                cursor += len;
                if header.opcode == OpCode::Close {
                    out.close_sent.set(true);
                    closed = true;
                    break;
                }
            }
        }
    }
    if fwd_start < cursor {
        let v = std::mem::take(&mut buf.buf);
        let boundary = !scanner.in_frame();
        let (w_ok, v) = out.forward(v, fwd_start, cursor, boundary).await;
        buf.buf = v;
        ok &= w_ok;
    }
    buf.consume(cursor - buf.pos);
    Ok((closed, ok))
}

/// Reads with an optional timeout without losing a partial frame already in
/// `buf` if the timeout cancels the read. Ok(None) = timed out.
async fn read_keeping<R: AsyncReadRent>(
    r: &mut R,
    buf: &mut ReadBuf,
    timeout: Option<Duration>,
) -> std::io::Result<Option<usize>> {
    let Some(t) = timeout else {
        return buf.read_from(r, RELAY_CHUNK).await.map(Some);
    };
    let saved: Vec<u8> = buf.data().to_vec();
    match monoio::time::timeout(t, buf.read_from(r, RELAY_CHUNK)).await {
        Ok(res) => res.map(Some),
        Err(_) => {
            let mut v = Vec::with_capacity(RELAY_CHUNK);
            v.extend_from_slice(&saved);
            *buf = ReadBuf::from_vec(v, 0);
            Ok(None)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn client_to_backend<R, CW, BW>(
    r: &mut R,
    buf: &mut ReadBuf,
    mut scanner: FrameScanner,
    to_backend: &Outbound<BW>,
    to_client: &Outbound<CW>,
    ping: &PingState,
) -> End
where
    R: AsyncReadRent,
    CW: AsyncWriteRent,
    BW: AsyncWriteRent,
{
    loop {
        match forward_buffered(buf, &mut scanner, to_backend, Some(ping)).await {
            Ok((true, _)) => return End::Closed,
            Ok((false, true)) => {}
            Ok((false, false)) => {
                to_client.close(1011, "backend write failed").await;
                return End::Aborted;
            }
            Err(e) => {
                to_client.close(e.close_code(), "protocol error").await;
                to_backend.close(1001, "client error").await;
                return End::Aborted;
            }
        }
        let wait = match (ping.outstanding.get(), ping.interval) {
            (Some(_), _) => Some(ping.timeout),
            (None, Some(iv)) => Some(iv),
            (None, None) => None,
        };
        match read_keeping(r, buf, wait).await {
            Ok(Some(0)) | Err(_) => {
                to_backend.close(1001, "client went away").await;
                return End::Vanished;
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                if ping.outstanding.get().is_some() {
                    tracing::debug!("client did not answer ping: closing");
                    to_client.close(1001, "ping timeout").await;
                    to_backend.close(1001, "client ping timeout").await;
                    return End::Aborted;
                }
                let n = ping.counter.get().wrapping_add(1);
                ping.counter.set(n);
                let payload = n.to_be_bytes();
                ping.outstanding.set(Some(payload));
                if !to_client.inject(OpCode::Ping, &payload).await {
                    return End::Vanished;
                }
            }
        }
    }
}

async fn backend_to_client<R, CW, BW>(
    r: &mut R,
    buf: &mut ReadBuf,
    mut scanner: FrameScanner,
    to_client: &Outbound<CW>,
    to_backend: &Outbound<BW>,
) -> End
where
    R: AsyncReadRent,
    CW: AsyncWriteRent,
    BW: AsyncWriteRent,
{
    loop {
        match forward_buffered(buf, &mut scanner, to_client, None).await {
            Ok((true, _)) => return End::Closed,
            Ok((false, true)) => {}
            Ok((false, false)) => {
                to_backend.close(1001, "client went away").await;
                return End::Aborted;
            }
            Err(e) => {
                to_backend.close(e.close_code(), "protocol error").await;
                to_client.close(1001, "backend error").await;
                return End::Aborted;
            }
        }
        match buf.read_from(r, RELAY_CHUNK).await {
            Ok(n) if n > 0 => {}
            _ => {
                to_client.close(1012, "backend went away").await;
                return End::Vanished;
            }
        }
    }
}

async fn commands<CW: AsyncWriteRent, BW: AsyncWriteRent>(
    handle: &ConnHandle,
    to_client: &Outbound<CW>,
    to_backend: &Outbound<BW>,
) -> End {
    loop {
        match handle.next().await {
            // Sessions outlive the drain until its timeout closes them.
            ConnCommand::Drain => continue,
            ConnCommand::Close(code) => {
                to_client.close(code, "going away").await;
                to_backend.close(1001, "balancer closing").await;
                return End::Aborted;
            }
        }
    }
}

/// Relays an upgraded session in inspect mode until it ends.
pub async fn relay<S>(
    ctx: &WorkerCtx,
    client: &mut ClientConn<S>,
    conn: BackendConn,
    extensions: bool,
) where
    S: AsyncReadRent + AsyncWriteRent,
{
    let cfg = &ctx.shared.cfg;
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
    let to_client = Outbound::new(&mut client.w, false);
    let to_backend = Outbound::new(bw, true);
    let ping = PingState {
        interval: cfg.ws_ping_interval,
        timeout: cfg.ws_pong_timeout,
        outstanding: Cell::new(None),
        counter: Cell::new(0),
    };
    let up = client_to_backend(
        &mut client.r,
        &mut client.buf,
        scanner_for(true),
        &to_backend,
        &to_client,
        &ping,
    );
    let down = backend_to_client(
        &mut br,
        &mut bbuf,
        scanner_for(false),
        &to_client,
        &to_backend,
    );
    let cmds = commands(&handle, &to_client, &to_backend);
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
        if up_end.is_some() && down_end.is_some() {
            return Poll::Ready(());
        }
        let clean = matches!(up_end, Some(End::Closed)) || matches!(down_end, Some(End::Closed));
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
    tracing::debug!(?up_end, ?down_end, "websocket session ended");
    to_backend.shutdown().await;
}
