//! Fake backends and probes for the hardening tests: a keep-alive backend
//! that reads or ignores request bodies, one that resets mid-response, one
//! that closes on a request it dies of, one with its own body timeout, one
//! that never reads, a background body writer, and a count of a process's
//! sockets to a port.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::common::client::HttpConn;

/// A keep-alive backend on threads: for each request head it answers 200
/// with the request line as the body. With `reads_body` it first reads the
/// `Content-Length` body; without, it ignores bodies (a careless backend).
pub fn keepalive_backend(reads_body: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || serve_keepalive(stream, reads_body));
        }
    });
    addr
}

/// Runs `serve` on a thread for each connection of a new loopback listener.
fn spawn_backend(serve: impl Fn(TcpStream) + Clone + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let serve = serve.clone();
            std::thread::spawn(move || serve(stream));
        }
    });
    addr
}

/// Reads until a whole head is in `buf`; its length (with the blank line).
fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    let mut tmp = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(end + 4);
        }
        match stream.read(&mut tmp) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}

/// A keep-alive backend that answers each request 200 after 200 ms, except
/// one for `/kill` (a query of death): it counts it in `kills` and closes
/// without answering.
pub fn killed_by_backend(kills: Arc<AtomicUsize>) -> SocketAddr {
    spawn_backend(move |mut stream| {
        let mut buf = Vec::new();
        while let Some(end) = read_head(&mut stream, &mut buf) {
            let line = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.clear();
            if line.split(' ').nth(1) == Some("/kill") {
                kills.fetch_add(1, Ordering::SeqCst);
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
            if stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
        }
    })
}

/// A keep-alive backend with its own body timeout: a request whose
/// `Content-Length` body is not whole `within` of its head gets the
/// connection closed without an answer; others get 200 `ok`.
pub fn body_timeout_backend(within: Duration) -> SocketAddr {
    spawn_backend(move |mut stream| {
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        while let Some(end) = read_head(&mut stream, &mut buf) {
            let len = content_length(&buf[..end]);
            buf.drain(..end);
            let until = Instant::now() + within;
            while buf.len() < len {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
                    return;
                }
                match stream.read(&mut tmp) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&tmp[..n]),
                }
            }
            buf.drain(..len);
            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if stream.write_all(ok).is_err() {
                return;
            }
        }
    })
}

/// A backend that accepts connections and never reads nor answers; they
/// stay open as long as the test runs.
pub fn silent_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    addr
}

fn serve_keepalive(mut stream: TcpStream, reads_body: bool) {
    stream.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let line = head.lines().next().unwrap_or("").to_string();
        if reads_body {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < len {
                match stream.read(&mut tmp) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&tmp[..n]),
                }
            }
            buf.drain(..len);
        }
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{line}",
            line.len()
        );
        if stream.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// Writes `total` body bytes in the background, ignoring errors (the peer
/// may stop reading and close).
pub fn write_body_in_background(stream: &TcpStream, total: usize) -> std::thread::JoinHandle<()> {
    let mut w = stream.try_clone().expect("clone");
    w.set_write_timeout(Some(Duration::from_secs(5))).ok();
    std::thread::spawn(move || {
        let chunk = vec![b'b'; 64 * 1024];
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk.len());
            if w.write_all(&chunk[..n]).is_err() {
                return;
            }
            left -= n;
        }
    })
}

/// Everything the peer sends until it closes (or 10 s pass).
pub fn read_to_close(conn: &mut HttpConn) -> Vec<u8> {
    conn.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok();
    let mut all = Vec::new();
    let mut tmp = [0u8; 65536];
    while let Ok(n) = conn.stream.read(&mut tmp) {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&tmp[..n]);
    }
    all
}

/// A backend that sends a 200 head and part of its body, then resets.
pub fn resetting_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut tmp = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut tmp) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&tmp[..n]),
                    }
                }
                let _ =
                    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial");
                std::thread::sleep(Duration::from_millis(300));
                let linger = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                use std::os::fd::AsRawFd;
                // SAFETY: setsockopt on our own open socket with a valid
                // pointer to a linger struct of the size given.
                unsafe {
                    libc::setsockopt(
                        stream.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        (&linger as *const libc::linger).cast(),
                        std::mem::size_of::<libc::linger>() as libc::socklen_t,
                    );
                }
            });
        }
    });
    addr
}

/// Established or half-closed sockets of process `pid` toward `port`.
pub fn sockets_toward(pid: u32, port: u16) -> usize {
    let mut inodes = std::collections::HashSet::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in dir.flatten() {
            if let Ok(link) = std::fs::read_link(e.path()) {
                let s = link.to_string_lossy().into_owned();
                if let Some(n) = s.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    inodes.insert(n.to_string());
                }
            }
        }
    }
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let port_hex = format!("{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 9
                && f[2].ends_with(&format!(":{port_hex}"))
                && (f[3] == "01" || f[3] == "08")
                && inodes.contains(f[9])
        })
        .count()
}
