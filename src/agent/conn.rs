//! Opening one control channel: name resolution (off the runtime thread),
//! TCP connect, TLS for `wss://`, the WebSocket upgrade with the bearer
//! token, and the `register` / `registered` exchange. Also the masked frame
//! builders the agent writes with.

use std::future::poll_fn;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use atomic_waker::AtomicWaker;
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;

use super::error::SessionError;
use super::url::BalancerUrl;
use crate::pool::registry::protocol::{parse_server_message, ClientMessage, ServerMessage};
use crate::proto::ws::close::{parse_close_payload, write_close_frame};
use crate::proto::ws::frame::{write_frame, FrameLimits, OpCode};
use crate::proto::ws::handshake::{
    check_server_response, generate_client_key, httparse, write_client_request,
};
use crate::proto::ws::message::{Message, MessageReader};
use crate::proto::ws::scanner::ScannerConfig;
use crate::rt::io::{write_vec, ReadBuf};

/// Largest message accepted from a balancer.
pub(super) const MAX_SERVER_MESSAGE: usize = 64 * 1024;
/// Largest HTTP answer head to the upgrade request.
const MAX_HEAD: usize = 16 * 1024;
const READ_CHUNK: usize = 4096;

/// A fresh random masking key (client frames must be masked).
fn mask() -> [u8; 4] {
    fastrand::u32(..).to_ne_bytes()
}

/// Appends a masked text frame holding `msg` as JSON.
pub(super) fn message_frame(out: &mut Vec<u8>, msg: &ClientMessage) {
    write_frame(
        out,
        true,
        OpCode::Text,
        Some(mask()),
        msg.to_json().as_bytes(),
    );
}

/// Appends a masked text frame holding `text` (a message already in JSON).
pub(super) fn text_frame(out: &mut Vec<u8>, text: &str) {
    write_frame(out, true, OpCode::Text, Some(mask()), text.as_bytes());
}

/// Appends a masked pong echoing `payload`.
pub(super) fn pong_frame(out: &mut Vec<u8>, payload: &[u8]) {
    write_frame(out, true, OpCode::Pong, Some(mask()), payload);
}

/// Appends a masked ping.
pub(super) fn ping_frame(out: &mut Vec<u8>) {
    write_frame(out, true, OpCode::Ping, Some(mask()), b"wslb-agent");
}

/// Appends a masked close frame.
pub(super) fn close_frame(out: &mut Vec<u8>, code: u16, reason: &str) {
    write_close_frame(out, code, reason, Some(mask()));
}

/// A message reader for frames from a balancer (unmasked, bounded).
pub(super) fn new_reader() -> MessageReader {
    MessageReader::new(ScannerConfig {
        limits: FrameLimits::client(MAX_SERVER_MESSAGE as u64),
        max_message: MAX_SERVER_MESSAGE as u64,
        validate_utf8: true,
    })
}

/// The balancer's answer to `register`.
#[derive(Debug, Clone)]
pub(super) struct Registered {
    /// The balancer's protocol version (1 from balancers before v2).
    pub v: u32,
    pub balancer_id: String,
    pub heartbeat_interval: Duration,
    pub bindings: Vec<String>,
}

/// Resolves the balancer's host: IP literals directly, names on a helper
/// thread so the agent's runtime never blocks on DNS.
pub(super) async fn resolve(url: &BalancerUrl) -> Result<Vec<SocketAddr>, SessionError> {
    if let Some(ip) = url.ip() {
        return Ok(vec![SocketAddr::new(ip, url.port)]);
    }
    type Slot = Mutex<Option<std::io::Result<Vec<SocketAddr>>>>;
    let slot: Arc<(Slot, AtomicWaker)> = Arc::new((Mutex::new(None), AtomicWaker::new()));
    let theirs = slot.clone();
    let (host, port) = (url.host.clone(), url.port);
    std::thread::Builder::new()
        .name("wslb-agent-dns".into())
        .spawn(move || {
            let res = (host.as_str(), port).to_socket_addrs().map(|a| a.collect());
            *theirs.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(res);
            theirs.1.wake();
        })
        .map_err(|e| SessionError::Resolve {
            host: url.host.clone(),
            detail: format!("cannot start resolver thread: {e}"),
        })?;
    let res = poll_fn(|cx| {
        slot.1.register(cx.waker());
        match slot.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    })
    .await;
    let detail = |d: String| SessionError::Resolve {
        host: url.host.clone(),
        detail: d,
    };
    match res {
        Ok(addrs) if !addrs.is_empty() => Ok(addrs),
        Ok(_) => Err(detail("no addresses".into())),
        Err(e) => Err(detail(e.to_string())),
    }
}

/// Connects to the first address that answers.
pub(super) async fn connect(addrs: &[SocketAddr]) -> Result<TcpStream, SessionError> {
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_addr(*a).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(SessionError::Connect(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no address to connect to")
    })))
}

/// Sends the upgrade request and checks the answer. Returns the bytes read
/// past the answer's head (frames the balancer sent right after the 101).
pub(super) async fn upgrade<S: AsyncReadRent + AsyncWriteRent>(
    stream: &mut S,
    url: &BalancerUrl,
    token: Option<&str>,
) -> Result<ReadBuf, SessionError> {
    let key = generate_client_key();
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut extra: Vec<(&str, &str)> = vec![("User-Agent", "wslb-agent")];
    if let Some(a) = &auth {
        extra.push(("Authorization", a));
    }
    let mut out = Vec::with_capacity(512);
    write_client_request(&mut out, &url.host_header(), &url.path, &key, &extra);
    write_vec(stream, out).await.0?;
    let mut buf = ReadBuf::with_capacity(READ_CHUNK);
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(buf.data()) {
            Ok(httparse::Status::Complete(head_len)) => {
                let status = resp.code.unwrap_or(0);
                match status {
                    101 => check_server_response(status, resp.headers, &key)?,
                    401 | 403 => return Err(SessionError::Unauthorized(status)),
                    _ => {
                        return Err(SessionError::HttpStatus {
                            status,
                            reason: resp.reason.unwrap_or("").to_string(),
                        })
                    }
                }
                buf.consume(head_len);
                return Ok(buf);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err(SessionError::HttpStatus {
                    status: 0,
                    reason: "answer head too large".into(),
                })
            }
            Err(e) => {
                return Err(SessionError::HttpStatus {
                    status: 0,
                    reason: format!("malformed answer: {e}"),
                })
            }
        }
        if buf.read_from(stream, READ_CHUNK).await? == 0 {
            return Err(SessionError::Eof);
        }
    }
}

/// Reads until the reader yields a message (for the setup phase, where the
/// read is never cancelled except with the whole session).
pub(super) async fn next_message<S: AsyncReadRent>(
    stream: &mut S,
    buf: &mut ReadBuf,
    reader: &mut MessageReader,
) -> Result<Message, SessionError> {
    loop {
        while !buf.is_empty() {
            let (used, msg) = reader.feed(buf.data())?;
            buf.consume(used);
            if let Some(m) = msg {
                return Ok(m);
            }
            if used == 0 {
                break;
            }
        }
        if buf.read_from(stream, READ_CHUNK).await? == 0 {
            return Err(SessionError::Eof);
        }
    }
}

/// The error a close frame from the balancer ends the session with.
pub(super) fn closed(payload: &[u8]) -> SessionError {
    match parse_close_payload(payload) {
        Ok(Some((code, reason))) => SessionError::Closed {
            code,
            reason: reason.to_string(),
        },
        Ok(None) => SessionError::Closed {
            code: 1005,
            reason: String::new(),
        },
        Err(e) => SessionError::Ws(e),
    }
}

/// Sends `register` and waits for `registered` (pings answered meanwhile).
pub(super) async fn register<S: AsyncReadRent + AsyncWriteRent>(
    stream: &mut S,
    buf: &mut ReadBuf,
    reader: &mut MessageReader,
    msg: &ClientMessage,
) -> Result<Registered, SessionError> {
    let mut out = Vec::with_capacity(256);
    message_frame(&mut out, msg);
    write_vec(stream, out).await.0?;
    loop {
        let m = next_message(stream, buf, reader).await?;
        match m.opcode {
            OpCode::Ping => {
                let mut out = Vec::with_capacity(m.payload.len() + 8);
                pong_frame(&mut out, &m.payload);
                write_vec(stream, out).await.0?;
            }
            OpCode::Close => return Err(closed(&m.payload)),
            OpCode::Text => {
                let text = std::str::from_utf8(&m.payload).unwrap_or("");
                match parse_server_message(text, MAX_SERVER_MESSAGE)? {
                    ServerMessage::Registered {
                        v,
                        balancer_id,
                        heartbeat_interval_ms,
                        bindings,
                        ..
                    } => {
                        return Ok(Registered {
                            v,
                            balancer_id,
                            heartbeat_interval: heartbeat_interval(heartbeat_interval_ms),
                            bindings,
                        })
                    }
                    ServerMessage::Error { message } => return Err(SessionError::Refused(message)),
                    other => tracing::debug!(?other, "agent: message before registered, ignored"),
                }
            }
            _ => {}
        }
    }
}

/// The heartbeat period for the interval a balancer asked for: 5 s when it
/// gave 0, otherwise kept within 50 ms to 1 hour.
pub(super) fn heartbeat_interval(ms: u64) -> Duration {
    if ms == 0 {
        return Duration::from_secs(5);
    }
    Duration::from_millis(ms.clamp(50, 3_600_000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ws::frame::parse_header;

    fn unmask(frame: &[u8]) -> (OpCode, Vec<u8>) {
        let limits = FrameLimits::server(1 << 20);
        let h = parse_header(frame, &limits)
            .expect("valid")
            .expect("complete");
        let key = h.mask.expect("client frames are masked");
        let mut p = frame[h.header_len as usize..].to_vec();
        assert_eq!(p.len() as u64, h.payload_len);
        crate::proto::ws::mask::apply_mask(&mut p, key, 0);
        (h.opcode, p)
    }

    #[test]
    fn frames_are_masked_and_carry_the_json() {
        let mut out = Vec::new();
        message_frame(&mut out, &ClientMessage::Heartbeat { load: 42 });
        let (op, p) = unmask(&out);
        assert_eq!(op, OpCode::Text);
        assert_eq!(p, br#"{"type":"heartbeat","load":42}"#);
        for (msg, json) in [
            (ClientMessage::Drain, r#"{"type":"drain"}"#),
            (ClientMessage::Resume, r#"{"type":"resume"}"#),
            (ClientMessage::Deregister, r#"{"type":"deregister"}"#),
        ] {
            let mut out = Vec::new();
            message_frame(&mut out, &msg);
            assert_eq!(unmask(&out).1, json.as_bytes());
        }
        let mut out = Vec::new();
        pong_frame(&mut out, b"abc");
        assert_eq!(unmask(&out), (OpCode::Pong, b"abc".to_vec()));
        let mut out = Vec::new();
        close_frame(&mut out, 1000, "bye");
        assert_eq!(unmask(&out), (OpCode::Close, b"\x03\xe8bye".to_vec()));
    }

    #[test]
    fn close_payloads() {
        assert!(
            matches!(closed(b"\x03\xf0policy"), SessionError::Closed { code: 1008, ref reason } if reason == "policy")
        );
        assert!(matches!(
            closed(b""),
            SessionError::Closed { code: 1005, .. }
        ));
        assert!(matches!(closed(b"\x00"), SessionError::Ws(_)));
    }

    #[test]
    fn heartbeat_intervals_are_bounded() {
        assert_eq!(heartbeat_interval(0), Duration::from_secs(5));
        assert_eq!(heartbeat_interval(1), Duration::from_millis(50));
        assert_eq!(heartbeat_interval(2000), Duration::from_secs(2));
        assert_eq!(heartbeat_interval(u64::MAX), Duration::from_secs(3600));
    }

    #[test]
    fn reader_takes_unmasked_server_frames() {
        let mut r = new_reader();
        let mut bytes = Vec::new();
        write_frame(&mut bytes, true, OpCode::Text, None, br#"{"type":"drain"}"#);
        let (used, m) = r.feed(&bytes).expect("ok");
        assert_eq!(used, bytes.len());
        assert_eq!(m.expect("message").payload, br#"{"type":"drain"}"#);
        let mut masked = Vec::new();
        write_frame(&mut masked, true, OpCode::Text, Some([1, 2, 3, 4]), b"x");
        assert!(
            new_reader().feed(&masked).is_err(),
            "masked server frames are refused"
        );
    }
}
