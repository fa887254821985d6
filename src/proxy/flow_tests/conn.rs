//! The flow tests' socket ends: bounded reads and writes over one loopback
//! connection, and HTTP messages read with the crate's own codecs (heads
//! parsed, bodies framed by `BodyTracker`, kept raw for byte-exact checks).

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::STEP;
use crate::proto::http::{
    parse_request, parse_response, BodyKind, BodyTracker, ForwardInfo, Limits, Method,
};

const LIMITS: Limits = Limits {
    max_header_bytes: 64 * 1024,
    max_headers: 100,
};

/// One end of a loopback connection with what was read and not yet used.
pub struct Conn {
    pub(super) name: &'static str,
    s: TcpStream,
    pub buf: Vec<u8>,
}

/// A response as the client saw it: the head and the raw body (chunked
/// framing included).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

/// A request as the backend saw it: the head and the raw body.
#[derive(Debug)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub head: String,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        header_in(&self.head, name)
    }
}

impl Req {
    pub fn header(&self, name: &str) -> Option<String> {
        header_in(&self.head, name)
    }
}

/// The first field `name` of a head, trimmed.
fn header_in(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// The fields of a head, owned, in order.
pub(super) fn fields(head: &str) -> Vec<(String, Vec<u8>)> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.to_string(), v.trim().as_bytes().to_vec()))
        .collect()
}

impl Conn {
    pub(super) fn new(name: &'static str, s: TcpStream) -> Conn {
        let _ = s.set_nodelay(true);
        Conn {
            name,
            s,
            buf: Vec::new(),
        }
    }

    /// Writes all of `bytes`.
    pub async fn send(&mut self, bytes: &[u8]) {
        let write = self.s.write_all(bytes.to_vec());
        match monoio::time::timeout(STEP, write).await {
            Ok((Ok(_), _)) => {}
            Ok((Err(e), _)) => panic!("{}: write failed: {e}", self.name),
            Err(_) => panic!("{}: write got nowhere", self.name),
        }
    }

    /// Closes the write side (FIN), keeping the read side.
    pub async fn shutdown(&mut self) {
        let _ = monoio::time::timeout(STEP, self.s.shutdown()).await;
    }

    /// One read appended to `buf`; 0 when the peer closed (or reset).
    pub async fn read_more(&mut self) -> usize {
        let read = self.s.read(Vec::with_capacity(64 * 1024));
        match monoio::time::timeout(STEP, read).await {
            Ok((Ok(n), b)) => {
                self.buf.extend_from_slice(&b[..n]);
                n
            }
            Ok((Err(_), _)) => 0,
            Err(_) => panic!("{}: nothing came in {STEP:?}", self.name),
        }
    }

    /// Reads until the peer closes; returns what came before the end.
    pub async fn rest_until_closed(&mut self) -> Vec<u8> {
        for _ in 0..10_000 {
            if self.read_more().await == 0 {
                return std::mem::take(&mut self.buf);
            }
        }
        panic!("{}: the peer never closed", self.name);
    }

    /// Asserts the peer closes without sending anything more.
    pub async fn closed(&mut self) {
        let rest = self.rest_until_closed().await;
        assert!(
            rest.is_empty(),
            "{}: bytes before the close: {:?}",
            self.name,
            String::from_utf8_lossy(&rest)
        );
    }

    /// Reads until at least `n` bytes are buffered, and takes them.
    pub async fn exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            if self.read_more().await == 0 {
                panic!(
                    "{}: closed after {} of {n} bytes",
                    self.name,
                    self.buf.len()
                );
            }
        }
        self.buf.drain(..n).collect()
    }

    /// Reads the body that follows a head, as `kind` frames it.
    async fn body(&mut self, kind: BodyKind) -> Vec<u8> {
        if kind == BodyKind::UntilClose {
            return self.rest_until_closed().await;
        }
        let mut tracker = BodyTracker::new(kind);
        let mut body = Vec::new();
        loop {
            let p = tracker.scan(&self.buf).expect("a well-framed body");
            body.extend(self.buf.drain(..p.consumed));
            if tracker.is_done() {
                return body;
            }
            if self.read_more().await == 0 {
                panic!("{}: closed in the middle of a body", self.name);
            }
        }
    }

    /// Reads one response (to a request of `method`).
    pub async fn response_to(&mut self, method: Method) -> Resp {
        loop {
            let mut out = Vec::new();
            let parsed = parse_response(&self.buf, &LIMITS, method, 1, true, &mut out)
                .unwrap_or_else(|e| panic!("{}: bad response head: {e}", self.name));
            if let Some(r) = parsed {
                let head = String::from_utf8_lossy(&self.buf[..r.head_len]).into_owned();
                self.buf.drain(..r.head_len);
                let body = self.body(r.body).await;
                return Resp {
                    status: r.status,
                    head,
                    body,
                };
            }
            if self.read_more().await == 0 {
                panic!(
                    "{}: closed before a whole response head: {:?}",
                    self.name,
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }

    pub async fn response(&mut self) -> Resp {
        self.response_to(Method::Get).await
    }

    /// Reads one request head, and its body unless `with_body` is false.
    pub async fn request_head(&mut self, with_body: bool) -> Req {
        let fwd = ForwardInfo {
            client_ip: [127, 0, 0, 1].into(),
            tls: false,
            trusted: true,
        };
        loop {
            let mut out = Vec::new();
            let parsed = parse_request(&self.buf, &LIMITS, &fwd, &mut out)
                .unwrap_or_else(|e| panic!("{}: bad request head: {e}", self.name));
            if let Some(r) = parsed {
                let head = String::from_utf8_lossy(&self.buf[..r.head_len]).into_owned();
                let path = String::from_utf8_lossy(&self.buf[r.path.clone()]).into_owned();
                self.buf.drain(..r.head_len);
                let body = if with_body {
                    self.body(r.body).await
                } else {
                    Vec::new()
                };
                return Req {
                    method: r.method,
                    path,
                    head,
                    body,
                };
            }
            if self.read_more().await == 0 {
                panic!(
                    "{}: closed before a whole request head: {:?}",
                    self.name,
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }

    /// Reads one whole request.
    pub async fn request(&mut self) -> Req {
        self.request_head(true).await
    }
}

/// A response with a body, as `write_response` writes it.
pub fn ok_response(status: u16, body: &[u8], keep_alive: bool) -> Vec<u8> {
    let mut out = Vec::new();
    assert!(crate::proto::http::write_response(
        &mut out,
        status,
        "text/plain",
        &[],
        body,
        keep_alive
    ));
    out
}
