//! The demo's broadcast: WebSocket clients through the balancer (spread
//! over the backends by its picks; each learns its backend from the echo's
//! `/headers` greeting), one `POST /api/publish` to the admin API, and
//! every client's copy of the message. Blocking, every step bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::cmd::admin_client::{post_json, AdminUrl};
use wslb::hub::Outcome;
use wslb::proto::ws::frame::{write_frame, FrameLimits, OpCode};
use wslb::proto::ws::handshake::{
    check_server_response, generate_client_key, write_client_request,
};
use wslb::proto::ws::message::{Message, MessageReader};
use wslb::proto::ws::scanner::ScannerConfig;
use wslb::proto::ws::write_close_frame;

/// What every client should get.
const GREETING: &str = "hello, everyone (one POST /api/publish)";

/// One blocking WebSocket client.
struct Client {
    s: TcpStream,
    reader: MessageReader,
    buf: Vec<u8>,
    backend: String,
}

impl Client {
    /// Opens `/headers` through the balancer; the first message names the
    /// backend.
    fn open(lb: SocketAddr, deadline: Instant) -> Result<Client, String> {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut s = TcpStream::connect_timeout(&lb, left.max(Duration::from_millis(1)))
            .map_err(|e| format!("connect: {e}"))?;
        let key = generate_client_key();
        let mut req = Vec::new();
        write_client_request(&mut req, &lb.to_string(), "/headers", &key, &[]);
        s.write_all(&req).map_err(|e| format!("upgrade: {e}"))?;
        let mut buf = Vec::new();
        let head_len = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(n)) = resp.parse(&buf) {
                check_server_response(resp.code.unwrap_or(0), resp.headers, &key)
                    .map_err(|e| format!("upgrade refused: {e}"))?;
                break n;
            }
            read_some(&mut s, &mut buf, deadline)?;
        };
        buf.drain(..head_len);
        let reader = MessageReader::new(ScannerConfig {
            limits: FrameLimits::client(1 << 20),
            max_message: 1 << 20,
            validate_utf8: true,
        });
        let mut c = Client {
            s,
            reader,
            buf,
            backend: String::new(),
        };
        let hello = c.next_text(deadline)?;
        c.backend = hello.lines().next().unwrap_or("?").to_string();
        Ok(c)
    }

    /// The next text message (pings answered on the way).
    fn next_text(&mut self, deadline: Instant) -> Result<String, String> {
        loop {
            let m = self.next_message(deadline)?;
            match m.opcode {
                OpCode::Text => return Ok(String::from_utf8_lossy(&m.payload).into_owned()),
                OpCode::Ping => {
                    let mut pong = Vec::new();
                    write_frame(&mut pong, true, OpCode::Pong, Some(mask()), &m.payload);
                    let _ = self.s.write_all(&pong);
                }
                OpCode::Close => return Err("closed by the balancer".into()),
                _ => {}
            }
        }
    }

    fn next_message(&mut self, deadline: Instant) -> Result<Message, String> {
        loop {
            if !self.buf.is_empty() {
                let (used, m) = self
                    .reader
                    .feed(&self.buf)
                    .map_err(|e| format!("bad frames: {e}"))?;
                self.buf.drain(..used);
                if let Some(m) = m {
                    return Ok(m);
                }
            }
            read_some(&mut self.s, &mut self.buf, deadline)?;
        }
    }

    fn close(mut self) {
        let mut out = Vec::new();
        write_close_frame(&mut out, 1000, "", Some(mask()));
        let _ = self.s.write_all(&out);
    }
}

fn mask() -> [u8; 4] {
    fastrand::u32(..).to_ne_bytes()
}

fn read_some(s: &mut TcpStream, buf: &mut Vec<u8>, deadline: Instant) -> Result<(), String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err("timed out".into());
    }
    s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
    let mut chunk = [0u8; 4096];
    match s.read(&mut chunk) {
        Ok(0) => Err("connection closed".into()),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Runs the broadcast with `clients` clients; returns the lines to print.
pub fn show(lb: SocketAddr, admin: SocketAddr, clients: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut lines = vec![format!(
        "Broadcast: {clients} WebSocket clients through {lb}, one POST /api/publish to {admin}:"
    )];
    let mut open = Vec::new();
    for i in 1..=clients {
        match Client::open(lb, deadline) {
            Ok(c) => open.push(c),
            Err(e) => lines.push(format!("  client {i} could not connect: {e}")),
        }
    }
    let url = AdminUrl {
        authority: admin.to_string(),
        prefix: String::new(),
    };
    let body = serde_json::json!({ "text": GREETING }).to_string();
    let left = deadline.saturating_duration_since(Instant::now());
    let answer = post_json(&url, "/api/publish", None, body.as_bytes(), left);
    match answer {
        Ok(a) if a.status == 200 => {
            let o: Outcome = serde_json::from_slice(&a.body).unwrap_or_default();
            lines.push(format!(
                "  the balancer matched {} sessions and delivered to {}",
                o.matched, o.delivered
            ));
        }
        Ok(a) => {
            lines.push(format!(
                "  the admin API answered {}: {} (no message hub in this build?)",
                a.status,
                a.error_text()
            ));
            open.into_iter().for_each(Client::close);
            return lines;
        }
        Err(e) => {
            lines.push(format!("  the admin API did not answer: {e}"));
            open.into_iter().for_each(Client::close);
            return lines;
        }
    }
    let mut got = 0;
    for (i, mut c) in open.into_iter().enumerate() {
        match c.next_text(deadline) {
            Ok(text) if text == GREETING => {
                got += 1;
                lines.push(format!("  client {} on {}: got {text:?}", i + 1, c.backend));
            }
            Ok(other) => lines.push(format!(
                "  client {} on {}: got something else: {other:?}",
                i + 1,
                c.backend
            )),
            Err(e) => lines.push(format!("  client {} on {}: {e}", i + 1, c.backend)),
        }
        c.close();
    }
    lines.push(format!("  {got} of {clients} clients got the message"));
    lines
}
