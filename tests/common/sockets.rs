//! Client sockets and waits shared by the stall and limit tests: a socket
//! with a tiny receive buffer, a socket from a chosen loopback source
//! address, the balancer's open-connection count, and a bounded poll.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use super::client::get;

/// `open_connections` from the admin API.
pub fn open_connections(admin: SocketAddr) -> u64 {
    let r = get(admin, "/api/status");
    assert_eq!(r.status, 200, "status answered {}", r.status);
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("status JSON");
    v["open_connections"].as_u64().expect("open_connections")
}

/// Polls `cond` every 50 ms until it holds (returns the time it took) or
/// `within` passes (None).
pub fn within(within: Duration, cond: impl Fn() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if cond() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// A socket whose receive buffer is a few KiB (set before connecting, so
/// the window stays small), so that the balancer's writes toward it stall
/// soon after it stops reading.
pub fn small_buffer_socket(addr: SocketAddr) -> TcpStream {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    s.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    s.connect_timeout(&addr.into(), Duration::from_secs(5))
        .expect("connect");
    s.into()
}

/// A client socket bound to `local` (e.g. 127.0.0.2) before connecting,
/// with a 5 s read timeout.
pub fn connect_from(local: &str, to: SocketAddr) -> TcpStream {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let from: SocketAddr = format!("{local}:0").parse().expect("addr");
    sock.bind(&from.into()).expect("bind");
    sock.connect(&to.into()).expect("connect");
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s
}
