//! Blocking test clients over std sockets: raw HTTP/1.1 (with response
//! framing, so keep-alive and pipelining can be checked) and WebSocket on the
//! crate's own codec.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw HTTP/1.1 connection that keeps leftover bytes between responses.
pub struct HttpConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl HttpConn {
    pub fn connect(addr: SocketAddr) -> HttpConn {
        Self::on(TcpStream::connect(addr).expect("connect"))
    }

    /// A connection over a socket already connected (e.g. one with a small
    /// receive buffer).
    pub fn on(stream: TcpStream) -> HttpConn {
        stream.set_read_timeout(Some(Duration::from_secs(20))).ok();
        stream.set_nodelay(true).ok();
        HttpConn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).expect("write");
    }

    /// GET `path` with keep-alive.
    pub fn get(&mut self, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
        self.read_response(false).expect("response")
    }

    fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 65536];
        match self.stream.read(&mut tmp) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
        }
    }

    /// Reads one response (`head_request`: no body expected). None on EOF
    /// before a whole head.
    pub fn read_response(&mut self, head_request: bool) -> Option<Response> {
        let mut resp = self.read_head()?;
        resp.body = self.read_body(&resp, head_request)?;
        Some(resp)
    }

    /// Reads the body that follows `head` (as read by
    /// [`HttpConn::read_head`]), framed as its headers say. None on EOF
    /// before a framed body's end.
    pub fn read_body(&mut self, head: &Response, head_request: bool) -> Option<Vec<u8>> {
        let status = head.status;
        if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
            Some(Vec::new())
        } else if head
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            self.read_chunked()
        } else if let Some(cl) = head.header("content-length") {
            let n: usize = cl.trim().parse().ok()?;
            while self.buf.len() < n {
                if !self.fill() {
                    return None;
                }
            }
            Some(self.buf.drain(..n).collect())
        } else {
            while self.fill() {}
            Some(std::mem::take(&mut self.buf))
        }
    }

    /// The socket and the bytes read past the last response taken so far
    /// (for a stream that goes on after a head, e.g. Server-Sent Events).
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.buf)
    }

    fn read_chunked(&mut self) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break p;
                }
                if !self.fill() {
                    return None;
                }
            };
            let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
            self.buf.drain(..line_end + 2);
            if size == 0 {
                // Trailers until an empty line.
                loop {
                    let p = loop {
                        if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                            break p;
                        }
                        if !self.fill() {
                            return None;
                        }
                    };
                    self.buf.drain(..p + 2);
                    if p == 0 {
                        return Some(body);
                    }
                }
            }
            while self.buf.len() < size + 2 {
                if !self.fill() {
                    return None;
                }
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.drain(..size + 2);
        }
    }

    /// True if the peer closed the connection (EOF) within `timeout`.
    pub fn is_closed(&mut self, timeout: Duration) -> bool {
        self.stream.set_read_timeout(Some(timeout)).ok();
        let mut tmp = [0u8; 1024];
        let closed = loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => break true,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(_) => break false,
            }
        };
        self.stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .ok();
        closed
    }
}

impl HttpConn {
    /// Reads one response head and leaves its body unread (large bodies are
    /// then counted with [`HttpConn::count_body`]). None on EOF.
    pub fn read_head(&mut self) -> Option<Response> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(n)) = resp.parse(&self.buf) {
                let status = resp.code.unwrap_or(0);
                let headers = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                self.buf.drain(..n);
                return Some(Response {
                    status,
                    headers,
                    body: Vec::new(),
                });
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Reads up to `n` body bytes without keeping them; returns how many
    /// arrived before `n` was reached or the stream ended.
    pub fn count_body(&mut self, n: u64) -> u64 {
        let mut got = (self.buf.len() as u64).min(n);
        self.buf.drain(..got as usize);
        let mut tmp = vec![0u8; 256 * 1024];
        while got < n {
            match self.stream.read(&mut tmp) {
                Ok(0) | Err(_) => break,
                Ok(k) => {
                    let take = (k as u64).min(n - got);
                    if take < k as u64 {
                        self.buf.extend_from_slice(&tmp[take as usize..k]);
                    }
                    got += take;
                }
            }
        }
        got
    }
}

/// A raw TCP backend for the cases an echo cannot play: it records every
/// byte it receives, and on each connection waits for a request head, writes
/// `reply` (if any) and closes.
pub struct RawBackend {
    pub addr: SocketAddr,
    pub accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub received: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl RawBackend {
    pub fn start(reply: &'static [u8]) -> RawBackend {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind raw backend");
        let addr = listener.local_addr().expect("addr");
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (acc, rec) = (accepted.clone(), received.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                acc.fetch_add(1, Ordering::SeqCst);
                let rec = rec.clone();
                std::thread::spawn(move || {
                    stream.set_read_timeout(Some(Duration::from_secs(3))).ok();
                    let mut seen = Vec::new();
                    let mut tmp = [0u8; 4096];
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut tmp) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                seen.extend_from_slice(&tmp[..n]);
                                rec.lock().expect("lock").extend_from_slice(&tmp[..n]);
                            }
                        }
                    }
                    if !reply.is_empty() {
                        let _ = stream.write_all(reply);
                    }
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        RawBackend {
            addr,
            accepted,
            received,
        }
    }

    /// The `--backend` flag value for this backend.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<u8> {
        self.received.lock().expect("lock").clone()
    }
}

/// VmRSS of process `pid` in KiB (0 if unreadable).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// One-shot GET on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    let mut c = HttpConn::connect(addr);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes());
    c.read_response(false).expect("response")
}

/// Sends raw bytes on a fresh connection and returns the status answered.
pub fn raw_status(addr: SocketAddr, raw: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    s.write_all(raw).expect("send");
    let mut head = [0u8; 12];
    s.read_exact(&mut head).expect("status line");
    std::str::from_utf8(&head[9..12])
        .expect("ASCII status")
        .parse()
        .expect("a status code")
}
