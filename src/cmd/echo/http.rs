//! The echo backend's HTTP side: a keep-alive request loop with the routes
//! described in the module above; upgrades go to the WebSocket echo.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;

use wslb::proto::http::{
    write_response, BodyKind, BodyTracker, ForwardInfo, Limits, Method, ParsedRequest, CONTINUE_100,
};
use wslb::rt::io::{read_request_head, write_range, write_vec, ReadBuf};

const CHUNK: usize = 64 * 1024;

pub async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    name: Rc<str>,
    load: std::sync::Arc<std::sync::atomic::AtomicU32>,
) {
    let _load = wslb::agent::LoadGuard::new(&load);
    let limits = Limits {
        max_header_bytes: 64 * 1024,
        max_headers: 128,
    };
    let fwd = ForwardInfo {
        client_ip: peer.ip(),
        tls: false,
        trusted: true,
    };
    let mut buf = ReadBuf::with_capacity(16 * 1024);
    let mut scratch = Vec::with_capacity(1024);
    let mut out = Vec::with_capacity(1024);
    let mut served: u64 = 0;
    loop {
        let Some(req) =
            read_request_head(&mut stream, &mut buf, &limits, &fwd, &mut scratch, None).await
        else {
            return;
        };
        if req.upgrade_websocket {
            super::ws::serve(stream, buf, &req, &name).await;
            return;
        }
        served += 1;
        let keep = match route(&mut stream, &mut buf, &req, &name, served, &mut out).await {
            Ok(keep) => keep && req.keep_alive,
            Err(_) => return,
        };
        if !keep {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

fn path_of<'a>(buf: &'a ReadBuf, req: &ParsedRequest) -> &'a str {
    std::str::from_utf8(&buf.data()[req.path.clone()]).unwrap_or("")
}

async fn send<W: AsyncWriteRent>(w: &mut W, out: &mut Vec<u8>) -> std::io::Result<()> {
    let (res, b) = write_vec(w, std::mem::take(out)).await;
    *out = b;
    res
}

/// Serves one request; returns whether the connection may stay open.
async fn route(
    stream: &mut TcpStream,
    buf: &mut ReadBuf,
    req: &ParsedRequest,
    name: &str,
    served: u64,
    out: &mut Vec<u8>,
) -> std::io::Result<bool> {
    out.clear();
    // How many requests this backend connection has served, this one included
    // (lets tests see backend-side keep-alive).
    let served = served.to_string();
    let tags = [("X-Backend", name), ("X-Conn-Requests", served.as_str())];
    let path = path_of(buf, req).to_string();
    let path = path.split('?').next().unwrap_or("").to_string();
    if !matches!(req.method, Method::Post | Method::Put) && req.body != BodyKind::Empty {
        // Routes that ignore a body still read it whole first, so that its
        // bytes are never taken for the next request on this connection.
        // The head stays at the front of `buf` for the route.
        discard_body(stream, buf, req).await?;
    }
    match (req.method, path.as_str()) {
        (Method::Post | Method::Put, _) => {
            let head_len = req.head_len;
            buf.consume(head_len);
            echo_body(stream, buf, req, out).await?;
            Ok(true)
        }
        (Method::Get | Method::Head, "/headers") => {
            let head = buf.data()[..req.head_len].to_vec();
            buf.consume(req.head_len);
            write_response(out, 200, "text/plain", &tags, &head, true);
            send(stream, out).await?;
            Ok(true)
        }
        (Method::Get | Method::Head, p) if p.starts_with("/bytes/") => {
            buf.consume(req.head_len);
            let n: u64 = p["/bytes/".len()..].parse().unwrap_or(0);
            send_bytes(stream, n, req.method == Method::Head, out).await?;
            Ok(true)
        }
        (Method::Get, p) if p.starts_with("/delay/") => {
            buf.consume(req.head_len);
            let ms: u64 = p["/delay/".len()..].parse().unwrap_or(0);
            monoio::time::sleep(Duration::from_millis(ms.min(600_000))).await;
            let body = format!("{name} delayed {ms}ms\n");
            write_response(out, 200, "text/plain", &tags, body.as_bytes(), true);
            send(stream, out).await?;
            Ok(true)
        }
        (Method::Get | Method::Head, p) if p.starts_with("/status/") => {
            buf.consume(req.head_len);
            let code: u16 = p["/status/".len()..]
                .parse()
                .ok()
                .filter(|c| (200..600).contains(c))
                .unwrap_or(400);
            if code == 204 || code == 304 {
                let line = format!("HTTP/1.1 {code} No Body\r\nX-Backend: {name}\r\n\r\n");
                out.extend_from_slice(line.as_bytes());
            } else {
                let body = format!("status {code} from {name}\n");
                write_response(
                    out,
                    code,
                    "text/plain",
                    &[("X-Backend", name)],
                    body.as_bytes(),
                    true,
                );
            }
            send(stream, out).await?;
            Ok(true)
        }
        (Method::Get | Method::Head, _) => {
            buf.consume(req.head_len);
            let body = format!("{name}\n");
            if req.method == Method::Head {
                let line = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nX-Backend: {name}\r\nX-Conn-Requests: {served}\r\n\r\n",
                    body.len()
                );
                out.extend_from_slice(line.as_bytes());
            } else {
                write_response(out, 200, "text/plain", &tags, body.as_bytes(), true);
            }
            send(stream, out).await?;
            Ok(true)
        }
        _ => {
            buf.consume(req.head_len);
            write_response(out, 404, "text/plain", &[], b"not found\n", true);
            send(stream, out).await?;
            Ok(true)
        }
    }
}

/// Reads and drops the body that follows the head at the front of `buf`,
/// leaving the head (and anything after the body) in place.
async fn discard_body(
    stream: &mut TcpStream,
    buf: &mut ReadBuf,
    req: &ParsedRequest,
) -> std::io::Result<()> {
    let mut tracker = BodyTracker::new(req.body);
    loop {
        let p = tracker
            .scan(&buf.data()[req.head_len..])
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        // Drop the body bytes scanned so far, keeping the head in front.
        let start = buf.pos + req.head_len;
        buf.buf.drain(start..start + p.consumed);
        if tracker.is_done() {
            return Ok(());
        }
        let n = buf.read_from(stream, CHUNK).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Streams the request body back with the same framing.
async fn echo_body(
    stream: &mut TcpStream,
    buf: &mut ReadBuf,
    req: &ParsedRequest,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    if req.expect_continue {
        let (res, _) = monoio::io::AsyncWriteRentExt::write_all(stream, CONTINUE_100).await;
        res?;
    }
    let framing = match req.body {
        BodyKind::Chunked => "Transfer-Encoding: chunked\r\n".to_string(),
        BodyKind::Length(n) => format!("Content-Length: {n}\r\n"),
        _ => "Content-Length: 0\r\n".to_string(),
    };
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n");
    out.extend_from_slice(framing.as_bytes());
    out.extend_from_slice(b"\r\n");
    send(stream, out).await?;
    let mut tracker = BodyTracker::new(req.body);
    while !tracker.is_done() {
        if buf.is_empty() {
            let n = buf.read_from(stream, CHUNK).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        let p = tracker
            .scan(buf.data())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        let v = std::mem::take(&mut buf.buf);
        let pos = buf.pos;
        let (res, v) = write_range(stream, v, pos, pos + p.consumed).await;
        buf.buf = v;
        res?;
        buf.consume(p.consumed);
    }
    Ok(())
}

async fn send_bytes<S: AsyncReadRent + AsyncWriteRent>(
    stream: &mut S,
    n: u64,
    head_only: bool,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\n\r\n"
    );
    out.extend_from_slice(head.as_bytes());
    if head_only {
        return send(stream, out).await;
    }
    let mut left = n;
    let first = left.min(CHUNK as u64 - out.len() as u64) as usize;
    out.resize(out.len() + first, b'x');
    left -= first as u64;
    send(stream, out).await?;
    let mut chunk = vec![b'x'; CHUNK];
    while left > 0 {
        let k = left.min(CHUNK as u64) as usize;
        let (res, c) = write_range(stream, chunk, 0, k).await;
        chunk = c;
        res?;
        left -= k as u64;
    }
    Ok(())
}
