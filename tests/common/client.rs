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
        let stream = TcpStream::connect(addr).expect("connect");
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
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(n)) = resp.parse(&self.buf) {
                let status = resp.code.unwrap_or(0);
                let hs: Vec<(String, String)> = resp
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
                let get = |name: &str| {
                    hs.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.clone())
                };
                let body = if head_request
                    || status == 204
                    || status == 304
                    || (100..200).contains(&status)
                {
                    Vec::new()
                } else if get("transfer-encoding")
                    .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
                {
                    self.read_chunked()?
                } else if let Some(cl) = get("content-length") {
                    let n: usize = cl.trim().parse().ok()?;
                    while self.buf.len() < n {
                        if !self.fill() {
                            return None;
                        }
                    }
                    self.buf.drain(..n).collect()
                } else {
                    while self.fill() {}
                    std::mem::take(&mut self.buf)
                };
                return Some(Response {
                    status,
                    headers: hs,
                    body,
                });
            }
            if !self.fill() {
                return None;
            }
        }
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

/// One-shot GET on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    let mut c = HttpConn::connect(addr);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes());
    c.read_response(false).expect("response")
}
