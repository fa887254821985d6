//! One session of `wslb bench sse`: the event stream and the kept-alive
//! connection the messages are POSTed over; opening it (the `open` event),
//! one echo round trip with its checks (next event id, the exact bytes),
//! and ending it (DELETE, then the `close` event with code 1000).

use std::time::{Duration, Instant};

use serde::Deserialize;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::conn::Conn;
use super::runner::Worker;
use super::sse_http::{
    delete_request, fill_by, next_event, parse_open, read_reply, send_by, stream_head,
    stream_request, write_post, Opened, StreamHead,
};
use super::sse_parse::{Event, SseParser};
use super::stats::ErrorKind;
use super::url::Target;
use super::ws_window::Ramp;

/// Echo mismatches, stalls and refusals described on stderr, at most.
const MAX_REPORTS: u32 = 20;

/// Settings every session task shares.
#[derive(Debug, Clone)]
pub struct SseJob {
    pub target: Target,
    pub size: usize,
    pub(super) rate: Option<f64>,
    pub(super) connections: usize,
    /// Bound on connecting, on each exchange and on each echo.
    pub timeout: Duration,
    pub(super) ramp: Option<Ramp>,
    /// Problems described on stderr so far (all threads).
    pub(super) reports: Arc<AtomicU32>,
}

impl SseJob {
    /// Describe a problem on stderr (the first few only).
    pub fn report(&self, what: std::fmt::Arguments<'_>) {
        if self.reports.fetch_add(1, Ordering::Relaxed) < MAX_REPORTS {
            eprintln!("bench sse: {what}");
        }
    }
}

/// First read buffer of the event stream (it grows for big messages).
const STREAM_RBUF: usize = 16 * 1024;
/// First read buffer of the POST connection (it only reads short answers).
const POST_RBUF: usize = 1024;
/// Characters of the sequence number at the start of every message.
const SEQ_DIGITS: usize = 16;
/// How long to wait for the server's FIN after the `close` event.
const LINGER: Duration = Duration::from_secs(1);

/// A live session.
pub struct Session {
    stream: Conn,
    post: Conn,
    /// The server said it closes the POST connection: open a new one first.
    post_closed: bool,
    parser: SseParser,
    opened: Opened,
    /// Global connection number, for reports.
    global: usize,
    /// The id number the next event must carry.
    next: u64,
    /// Messages sent in this session.
    seq: u64,
    /// The message: its sequence number in hex, then letters.
    msg: Vec<u8>,
    /// Byte counts of connections replaced (sent, received).
    carried: (u64, u64),
}

async fn connect(job: &SseJob, deadline: Instant, rcap: usize) -> Result<Conn, ErrorKind> {
    let left = deadline.saturating_duration_since(Instant::now());
    Conn::connect_with(job.target.addr, left, rcap).await
}

/// A short field (event type, id) for a report.
fn label(b: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(&b[..b.len().min(80)]))
}

/// Shorten `b` for a report.
fn show(b: &[u8]) -> String {
    let cut = &b[..b.len().min(40)];
    let more = if b.len() > cut.len() { "..." } else { "" };
    format!("{:?}{more} ({} B)", String::from_utf8_lossy(cut), b.len())
}

impl Session {
    /// Open the event stream, read the `open` event, connect for the POSTs.
    pub async fn open(job: &SseJob, global: usize) -> Result<Session, ErrorKind> {
        let deadline = Instant::now() + job.timeout;
        let mut stream = connect(job, deadline, STREAM_RBUF).await?;
        stream.wbuf = stream_request(&job.target);
        send_by(&mut stream, deadline).await?;
        loop {
            match stream_head(stream.pending())? {
                None => fill_by(&mut stream, deadline).await?,
                Some((n, StreamHead::Events)) => {
                    stream.consume(n);
                    break;
                }
                Some((_, StreamHead::Refused(status))) => {
                    job.report(format_args!(
                        "session {global}: the stream GET got {status}"
                    ));
                    return Err(ErrorKind::Handshake);
                }
                Some((_, StreamHead::NotAStream)) => {
                    job.report(format_args!(
                        "session {global}: the stream GET's 200 is not a close-delimited text/event-stream"
                    ));
                    return Err(ErrorKind::Protocol);
                }
            }
        }
        let mut parser = SseParser::new((job.size * 2).max(1 << 20));
        let (ev, _) = next_event(&mut stream, &mut parser, deadline).await?;
        let Some(opened) = parse_open(&ev) else {
            job.report(format_args!(
                "session {global}: the first event is not a valid open event: event {} id {} data {}",
                label(&ev.kind),
                label(ev.id.as_deref().unwrap_or_default()),
                show(&ev.data)
            ));
            return Err(ErrorKind::Protocol);
        };
        if parser.retry().is_none() {
            // Worth a note (the spec has the stream start with one), not an error.
            job.report(format_args!(
                "session {global}: no retry field before the open event"
            ));
        }
        let post = connect(job, deadline, POST_RBUF).await?;
        let mut rng = fastrand::Rng::new();
        Ok(Session {
            stream,
            post,
            post_closed: false,
            parser,
            opened,
            global,
            next: 1,
            seq: 0,
            msg: (0..job.size).map(|_| rng.alphanumeric() as u8).collect(),
            carried: (0, 0),
        })
    }

    /// Replace the POST connection with a new one.
    async fn reconnect_post(&mut self, job: &SseJob, deadline: Instant) -> Result<(), ErrorKind> {
        let fresh = connect(job, deadline, POST_RBUF).await?;
        let mut old = std::mem::replace(&mut self.post, fresh);
        let (s, r) = old.take_counts();
        self.carried.0 += s;
        self.carried.1 += r;
        self.post_closed = false;
        Ok(())
    }

    /// Write the next sequence number over the message's first characters.
    fn stamp(&mut self) {
        self.seq += 1;
        let hex = format!("{:0width$x}", self.seq, width = SEQ_DIGITS);
        let n = self.msg.len().min(SEQ_DIGITS);
        self.msg[..n].copy_from_slice(&hex.as_bytes()[SEQ_DIGITS - n..]);
    }

    /// POST the next message and wait for its echo and the 204; returns the
    /// instant the echo was complete.
    pub async fn round_trip(&mut self, job: &SseJob) -> Result<Instant, ErrorKind> {
        let deadline = Instant::now() + job.timeout;
        if self.post_closed {
            self.reconnect_post(job, deadline).await?;
        }
        self.stamp();
        write_post(
            &mut self.post.wbuf,
            &job.target.host,
            &self.opened.url,
            &self.msg,
        );
        send_by(&mut self.post, deadline).await?;
        let (reply, echo) = monoio::join!(
            read_reply(&mut self.post, deadline),
            next_event(&mut self.stream, &mut self.parser, deadline)
        );
        let (g, seq) = (self.global, self.seq);
        let reply = reply.inspect_err(|k| {
            job.report(format_args!(
                "session {g}: no answer to the POST of message #{seq}: {}",
                k.name()
            ))
        })?;
        self.post_closed = reply.close;
        if reply.status != 204 {
            job.report(format_args!(
                "session {g}: the POST of message #{seq} got {}",
                reply.status
            ));
            return Err(ErrorKind::Status);
        }
        let (ev, at) = echo.inspect_err(|k| {
            job.report(format_args!(
                "session {g}: no echo of message #{seq} (204 received): {} within {:?}",
                k.name(),
                job.timeout
            ))
        })?;
        self.check(job, &ev)?;
        self.next += 1;
        Ok(at)
    }

    /// Is `ev` the echo of the message just sent, with the next id?
    fn check(&self, job: &SseJob, ev: &Event) -> Result<(), ErrorKind> {
        let want_id = format!("{}.{}", self.opened.session, self.next);
        let (g, seq) = (self.global, self.seq);
        if ev.kind == b"close" {
            job.report(format_args!(
                "session {g}: closed by the balancer while waiting for message #{seq}: {}",
                show(&ev.data)
            ));
            return Err(ErrorKind::Closed);
        }
        if ev.kind != b"message" || ev.id.as_deref() != Some(want_id.as_bytes()) {
            job.report(format_args!(
                "session {g}: message #{seq}: wanted a message event with id {want_id}, got event {} id {} data {}",
                label(&ev.kind),
                label(ev.id.as_deref().unwrap_or_default()),
                show(&ev.data)
            ));
            return Err(ErrorKind::Mismatch);
        }
        if ev.data != self.msg {
            job.report(format_args!(
                "session {g}: the echo of message #{seq} (id {want_id}) differs: sent {}, got {}",
                show(&self.msg),
                show(&ev.data)
            ));
            return Err(ErrorKind::Mismatch);
        }
        Ok(())
    }

    /// End the session with a DELETE. After a clean run the answer must be
    /// 204 and the stream's next event `close` with code 1000; after a
    /// failure the DELETE goes over a new connection and nothing is checked.
    pub async fn end(&mut self, job: &SseJob, clean: bool) -> Result<(), ErrorKind> {
        let deadline = Instant::now() + job.timeout;
        let host = &job.target.host;
        if !clean {
            if self.reconnect_post(job, deadline).await.is_ok() {
                self.post.wbuf = delete_request(host, &self.opened.url, true);
                if send_by(&mut self.post, deadline).await.is_ok() {
                    let _ = read_reply(&mut self.post, deadline).await;
                }
            }
            return Ok(());
        }
        if self.post_closed {
            self.reconnect_post(job, deadline).await?;
        }
        self.post.wbuf = delete_request(host, &self.opened.url, true);
        send_by(&mut self.post, deadline).await?;
        let g = self.global;
        let reply = read_reply(&mut self.post, deadline).await?;
        if reply.status != 204 {
            job.report(format_args!("session {g}: the DELETE got {}", reply.status));
            return Err(ErrorKind::Status);
        }
        let (ev, _) = next_event(&mut self.stream, &mut self.parser, deadline)
            .await
            .inspect_err(|k| {
                job.report(format_args!(
                    "session {g}: no close event after the DELETE: {}",
                    k.name()
                ))
            })?;
        if !is_close_1000(&ev) {
            job.report(format_args!(
                "session {g}: after the DELETE: event {} data {}",
                label(&ev.kind),
                show(&ev.data)
            ));
            return Err(ErrorKind::Mismatch);
        }
        // The server closes the stream: its FIN first (brief; any result ends it).
        let linger = Instant::now() + LINGER;
        while fill_by(&mut self.stream, linger).await.is_ok() {
            let n = self.stream.pending().len();
            self.stream.consume(n);
        }
        Ok(())
    }

    /// Move the byte counts of both connections into the worker's stats.
    pub fn flush_bytes(&mut self, w: &Worker) {
        w.flush_bytes(&mut self.stream);
        w.flush_bytes(&mut self.post);
        let (s, r) = std::mem::take(&mut self.carried);
        w.bytes(s, r);
    }
}

/// The `close` event's data.
#[derive(Deserialize)]
struct CloseData {
    code: u16,
}

fn is_close_1000(ev: &Event) -> bool {
    ev.kind == b"close"
        && serde_json::from_slice::<CloseData>(&ev.data).is_ok_and(|c| c.code == 1000)
}
