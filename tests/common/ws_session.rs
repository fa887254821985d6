//! A light WebSocket client session for load tests (the soak test): one
//! read buffer reused, whole messages out, data messages and closes in,
//! pings answered on the way.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use wslb::proto::ws::close::{parse_close_payload, write_close_frame};
use wslb::proto::ws::frame::{write_frame, FrameLimits, OpCode};
use wslb::proto::ws::handshake::{
    check_server_response, generate_client_key, write_client_request,
};
use wslb::proto::ws::message::{Message, MessageReader};
use wslb::proto::ws::scanner::ScannerConfig;

/// What a session read.
pub enum Got {
    Msg(Message),
    Close(u16),
    Eof,
    Timeout,
    Bad(String),
}

/// One client session over a plain socket.
pub struct Session {
    stream: TcpStream,
    buf: Vec<u8>,
    reader: MessageReader,
}

impl Session {
    /// Opens a session; Err says why not (connect error, refusal status).
    pub fn connect(addr: SocketAddr, stall: Duration) -> Result<Session, String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(stall)).ok();
        s.set_write_timeout(Some(stall)).ok();
        s.set_nodelay(true).ok();
        let key = generate_client_key();
        let mut req = Vec::new();
        write_client_request(&mut req, "127.0.0.1", "/", &key, &[]);
        s.write_all(&req)
            .map_err(|e| format!("send upgrade: {e}"))?;
        let mut buf = Vec::new();
        let mut tmp = [0u8; 1024];
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            match s.read(&mut tmp) {
                Ok(n) if n > 0 && buf.len() < 16 * 1024 => buf.extend_from_slice(&tmp[..n]),
                _ => return Err("no upgrade answer".into()),
            }
        };
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut hs);
        resp.parse(&buf[..end])
            .map_err(|e| format!("answer: {e}"))?;
        let status = resp.code.unwrap_or(0);
        check_server_response(status, resp.headers, &key).map_err(|_| format!("{status}"))?;
        let reader = MessageReader::new(ScannerConfig {
            limits: FrameLimits::client(1 << 20),
            max_message: 0,
            validate_utf8: true,
        });
        Ok(Session {
            stream: s,
            buf: buf[end..].to_vec(),
            reader,
        })
    }

    /// Sends one masked message; false if the connection is gone.
    pub fn send(&mut self, op: OpCode, payload: &[u8]) -> bool {
        let mut out = Vec::with_capacity(payload.len() + 14);
        write_frame(
            &mut out,
            true,
            op,
            Some(fastrand::u32(..).to_ne_bytes()),
            payload,
        );
        self.stream.write_all(&out).is_ok()
    }

    /// The next data message or close; pings answered, pongs skipped.
    pub fn recv(&mut self) -> Got {
        let mut tmp = [0u8; 8 * 1024];
        loop {
            if !self.buf.is_empty() {
                match self.reader.feed(&self.buf) {
                    Ok((n, msg)) => {
                        self.buf.drain(..n);
                        if let Some(m) = msg {
                            match m.opcode {
                                OpCode::Close => {
                                    return match parse_close_payload(&m.payload) {
                                        Ok(Some((code, _))) => Got::Close(code),
                                        Ok(None) => Got::Close(1005),
                                        Err(e) => Got::Bad(format!("close payload: {e}")),
                                    }
                                }
                                OpCode::Ping => {
                                    let mut out = Vec::new();
                                    let mask = Some(fastrand::u32(..).to_ne_bytes());
                                    write_frame(&mut out, true, OpCode::Pong, mask, &m.payload);
                                    let _ = self.stream.write_all(&out);
                                    continue;
                                }
                                OpCode::Pong => continue,
                                _ => return Got::Msg(m),
                            }
                        }
                        if n > 0 && !self.buf.is_empty() {
                            continue;
                        }
                    }
                    Err(e) => return Got::Bad(e.to_string()),
                }
            }
            match self.stream.read(&mut tmp) {
                Ok(0) => return Got::Eof,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Got::Timeout
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Got::Eof,
            }
        }
    }

    /// Answers a close and drops the connection.
    pub fn reply_close(mut self, code: u16) {
        let mut out = Vec::new();
        write_close_frame(&mut out, code, "", Some(fastrand::u32(..).to_ne_bytes()));
        let _ = self.stream.write_all(&out);
    }
}
