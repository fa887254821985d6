//! Blocking WebSocket test peer over `std::net::TcpStream` or a rustls
//! `StreamOwned`, built on the crate's own codec (`wslb::proto::ws`): the client
//! handshake (or a refusal with its HTTP status), masked frames out, whole
//! messages in, close codes, and a tiny server side for fake backends.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wslb::proto::ws::close::{parse_close_payload, write_close_frame};
use wslb::proto::ws::frame::{write_frame, FrameLimits, OpCode};
use wslb::proto::ws::handshake::{
    accept_key, check_server_response, generate_client_key, write_client_request,
    write_server_response,
};
use wslb::proto::ws::message::{Message, MessageReader};
use wslb::proto::ws::scanner::ScannerConfig;

/// Default read timeout of every test socket.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// What a read produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole message or control frame (payload unmasked).
    Msg(Message),
    /// The peer closed the TCP connection (EOF or reset).
    Eof,
    /// Nothing arrived within the read timeout.
    Timeout,
    /// The peer broke the protocol (as our codec sees it).
    Bad(String),
}

/// Which end of the session we play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Masks what it sends, refuses masked frames.
    Client,
    /// Sends unmasked, requires masked frames.
    Server,
}

/// A handshake that did not end in 101.
#[derive(Debug, Clone)]
pub struct Refused {
    pub status: u16,
    pub head: String,
    /// Whatever followed the head (usually the short error body).
    pub rest: Vec<u8>,
}

/// One WebSocket peer over stream `S`.
pub struct WsConn<S: Read + Write> {
    pub stream: S,
    /// A handle on the same socket, for timeouts and shutdown.
    sock: TcpStream,
    role: Role,
    buf: Vec<u8>,
    reader: MessageReader,
}

fn reader_for(role: Role) -> MessageReader {
    let limits = match role {
        Role::Client => FrameLimits::client(u64::MAX >> 1),
        Role::Server => FrameLimits::server(u64::MAX >> 1),
    };
    MessageReader::new(ScannerConfig {
        limits,
        max_message: 0,
        validate_utf8: true,
    })
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(READ_TIMEOUT)).ok();
    s.set_write_timeout(Some(READ_TIMEOUT)).ok();
    s.set_nodelay(true).ok();
    s
}

/// Sends a client upgrade request with `extra` headers and reads the head.
/// Ok(leftover bytes after the 101 head) or Err(refusal).
fn upgrade_on<S: Read + Write>(
    stream: &mut S,
    path: &str,
    extra: &[(&str, &str)],
) -> Result<Vec<u8>, Refused> {
    let key = generate_client_key();
    let mut req = Vec::new();
    write_client_request(&mut req, "127.0.0.1", path, &key, extra);
    stream.write_all(&req).expect("write upgrade request");
    raw_head(stream).and_then(|(status, head, rest)| {
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut hs);
        resp.parse(head.as_bytes()).expect("head parses");
        match check_server_response(status, resp.headers, &key) {
            Ok(()) => Ok(rest),
            Err(e) if status == 101 => panic!("bad 101 answer ({e}): {head}"),
            Err(_) => Err(Refused { status, head, rest }),
        }
    })
}

/// Reads a whole response head; Err only to carry a non-101 status.
fn raw_head<S: Read>(stream: &mut S) -> Result<(u16, String, Vec<u8>), Refused> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..p + 4]).into_owned();
            let mut hs = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut hs);
            resp.parse(head.as_bytes()).expect("response head parses");
            let status = resp.code.unwrap_or(0);
            let mut rest = buf[p + 4..].to_vec();
            if status != 101 {
                // Collect the short error body too (the server closes).
                while let Ok(n) = stream.read(&mut tmp) {
                    if n == 0 {
                        break;
                    }
                    rest.extend_from_slice(&tmp[..n]);
                }
                return Err(Refused { status, head, rest });
            }
            return Ok((status, head, rest));
        }
        match stream.read(&mut tmp) {
            Ok(0) | Err(_) => {
                return Err(Refused {
                    status: 0,
                    head: String::from_utf8_lossy(&buf).into_owned(),
                    rest: Vec::new(),
                })
            }
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

impl WsConn<TcpStream> {
    /// Upgrades a plain connection to `ws://addr/`; panics unless 101.
    pub fn connect(addr: SocketAddr) -> Self {
        Self::try_connect(addr, "/", &[]).unwrap_or_else(|r| panic!("upgrade refused: {r:?}"))
    }

    /// Upgrades with extra request headers; Err carries a refusal.
    pub fn try_connect(
        addr: SocketAddr,
        path: &str,
        extra: &[(&str, &str)],
    ) -> Result<Self, Refused> {
        let mut s = tcp(addr);
        let sock = s.try_clone().expect("clone socket");
        let rest = upgrade_on(&mut s, path, extra)?;
        Ok(Self::over(s, sock, Role::Client, rest))
    }

    /// Upgrades an already connected socket (one with custom socket
    /// options) to `ws://.../`; panics unless 101.
    pub fn connect_on(s: TcpStream) -> Self {
        Self::try_connect_on(s, "/", &[]).unwrap_or_else(|r| panic!("upgrade refused: {r:?}"))
    }

    /// Upgrades an already connected socket to `path` with extra headers.
    pub fn try_connect_on(
        mut s: TcpStream,
        path: &str,
        extra: &[(&str, &str)],
    ) -> Result<Self, Refused> {
        s.set_read_timeout(Some(READ_TIMEOUT)).ok();
        s.set_write_timeout(Some(READ_TIMEOUT)).ok();
        s.set_nodelay(true).ok();
        let sock = s.try_clone().expect("clone socket");
        let rest = upgrade_on(&mut s, path, extra)?;
        Ok(Self::over(s, sock, Role::Client, rest))
    }

    /// Answers one upgrade on an accepted socket (fake backend side).
    pub fn accept(mut s: TcpStream) -> Self {
        s.set_read_timeout(Some(READ_TIMEOUT)).ok();
        s.set_nodelay(true).ok();
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        let (key, used) = loop {
            let mut hs = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut hs);
            if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
                let key = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"))
                    .map(|h| h.value.to_vec())
                    .expect("upgrade request has a key");
                break (key, n);
            }
            let n = s.read(&mut tmp).expect("read upgrade request");
            assert!(n > 0, "EOF before upgrade request");
            buf.extend_from_slice(&tmp[..n]);
        };
        let mut out = Vec::new();
        write_server_response(&mut out, &accept_key(&key), None, None);
        s.write_all(&out).expect("write 101");
        let sock = s.try_clone().expect("clone socket");
        Self::over(s, sock, Role::Server, buf[used..].to_vec())
    }
}

impl WsConn<TlsStream> {
    /// Upgrades a TLS connection to `wss://addr/` trusting `config`'s roots.
    pub fn connect_tls(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> Self {
        Self::connect_tls_on(tcp(addr), config, server_name)
    }

    /// Like [`WsConn::connect_tls`] over an already connected socket (one
    /// with custom socket options).
    pub fn connect_tls_on(
        s: TcpStream,
        config: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> Self {
        s.set_read_timeout(Some(READ_TIMEOUT)).ok();
        s.set_write_timeout(Some(READ_TIMEOUT)).ok();
        s.set_nodelay(true).ok();
        let sock = s.try_clone().expect("clone socket");
        let name =
            rustls::pki_types::ServerName::try_from(server_name.to_string()).expect("server name");
        let conn = rustls::ClientConnection::new(config, name).expect("tls client");
        let mut tls = rustls::StreamOwned::new(conn, s);
        let rest =
            upgrade_on(&mut tls, "/", &[]).unwrap_or_else(|r| panic!("tls upgrade refused: {r:?}"));
        Self::over(tls, sock, Role::Client, rest)
    }
}

impl<S: Read + Write> WsConn<S> {
    fn over(stream: S, sock: TcpStream, role: Role, leftover: Vec<u8>) -> Self {
        WsConn {
            stream,
            sock,
            role,
            buf: leftover,
            reader: reader_for(role),
        }
    }

    pub fn set_read_timeout(&self, d: Duration) {
        self.sock.set_read_timeout(Some(d)).ok();
    }

    pub fn set_write_timeout(&self, d: Duration) {
        self.sock.set_write_timeout(Some(d)).ok();
    }

    fn mask(&self) -> Option<[u8; 4]> {
        (self.role == Role::Client).then(|| fastrand::u32(..).to_ne_bytes())
    }

    /// Writes raw bytes; false if the peer is gone.
    pub fn send_raw(&mut self, bytes: &[u8]) -> bool {
        self.stream
            .write_all(bytes)
            .and_then(|_| self.stream.flush())
            .is_ok()
    }

    /// Sends one frame, masked as our role requires.
    pub fn send_frame(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) -> bool {
        let mut out = Vec::with_capacity(payload.len() + 14);
        write_frame(&mut out, fin, opcode, self.mask(), payload);
        self.send_raw(&out)
    }

    pub fn send_text(&mut self, text: &str) -> bool {
        self.send_frame(true, OpCode::Text, text.as_bytes())
    }

    pub fn send_binary(&mut self, data: &[u8]) -> bool {
        self.send_frame(true, OpCode::Binary, data)
    }

    pub fn send_close(&mut self, code: u16, reason: &str) -> bool {
        let mut out = Vec::new();
        write_close_frame(&mut out, code, reason, self.mask());
        self.send_raw(&out)
    }

    /// Reads the next message or control frame (or EOF, timeout, error).
    pub fn recv(&mut self) -> Event {
        let mut tmp = vec![0u8; 64 * 1024];
        loop {
            if !self.buf.is_empty() {
                match self.reader.feed(&self.buf) {
                    Ok((n, msg)) => {
                        self.buf.drain(..n);
                        if let Some(m) = msg {
                            return Event::Msg(m);
                        }
                        if n > 0 && !self.buf.is_empty() {
                            continue;
                        }
                    }
                    Err(e) => return Event::Bad(e.to_string()),
                }
            }
            match self.stream.read(&mut tmp) {
                Ok(0) => return Event::Eof,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Event::Timeout
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Event::Eof,
            }
        }
    }

    /// The next message, which must be a data or control message; panics on
    /// EOF, timeout or protocol error.
    pub fn recv_msg(&mut self) -> Message {
        match self.recv() {
            Event::Msg(m) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Reads until a close frame, skipping pings (answered) and other
    /// messages; returns its code (1005 for an empty close) and reason, or
    /// None if the connection ended (or timed out) without one.
    pub fn recv_close(&mut self) -> Option<(u16, String)> {
        loop {
            match self.recv() {
                Event::Msg(m) if m.opcode == OpCode::Close => {
                    return match parse_close_payload(&m.payload) {
                        Ok(Some((code, reason))) => Some((code, reason.to_string())),
                        Ok(None) => Some((1005, String::new())),
                        Err(e) => panic!("malformed close payload from peer: {e}"),
                    };
                }
                Event::Msg(m) if m.opcode == OpCode::Ping => {
                    self.send_frame(true, OpCode::Pong, &m.payload);
                }
                Event::Msg(_) => {}
                _ => return None,
            }
        }
    }

    /// True if the connection reaches EOF (after any frames) within `within`.
    pub fn closes_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.set_read_timeout(left);
            match self.recv() {
                Event::Eof => return true,
                Event::Timeout => return false,
                Event::Msg(_) | Event::Bad(_) => {
                    // Garbage after an error: drop what we have and go on.
                    self.buf.clear();
                    self.reader = reader_for(self.role);
                }
            }
        }
    }

    /// Sends text and expects the same text echoed.
    pub fn echo_text(&mut self, text: &str) {
        assert!(self.send_text(text), "send text");
        let m = self.recv_msg();
        assert_eq!(m.opcode, OpCode::Text);
        assert_eq!(String::from_utf8_lossy(&m.payload), text);
    }

    /// Closes the TCP connection without a close frame.
    pub fn drop_tcp(self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }

    /// Half-closes our sending side (TCP FIN).
    pub fn shutdown_write(&self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
    }
}
