//! A loopback TCP relay in front of the balancer whose connections the test
//! can cut all at once (the browser's event stream drops, as on a flaky
//! network), and which keeps what the browser sent on each connection (to
//! see its resume request).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most bytes kept per connection for [`Relay::sent`].
const KEEP: usize = 256 * 1024;

/// What each connection sent so far, in accept order.
type Sent = Arc<Mutex<Vec<Vec<u8>>>>;

/// The relay; its accept loop stops when it drops.
pub struct Relay {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    heads: Sent,
}

impl Relay {
    /// Relays every connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        listener.set_nonblocking(true).expect("nonblocking");
        let relay = Relay {
            addr: listener.local_addr().expect("relay addr"),
            stop: Arc::new(AtomicBool::new(false)),
            open: Arc::new(Mutex::new(Vec::new())),
            heads: Arc::new(Mutex::new(Vec::new())),
        };
        let (stop, open, heads) = (relay.stop.clone(), relay.open.clone(), relay.heads.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = TcpStream::connect(upstream) else {
                            continue;
                        };
                        let slot = heads.lock().map(|mut h| {
                            h.push(Vec::new());
                            h.len() - 1
                        });
                        if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) {
                            if let Ok(mut o) = open.lock() {
                                o.push(c);
                                o.push(s);
                            }
                        }
                        let (c2, s2) = match (client.try_clone(), server.try_clone()) {
                            (Ok(c), Ok(s)) => (c, s),
                            _ => continue,
                        };
                        let keep = slot.ok().map(|i| (heads.clone(), i));
                        std::thread::spawn(move || pipe(client, server, keep));
                        std::thread::spawn(move || pipe(s2, c2, None));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        relay
    }

    /// Ends every connection relayed so far, both ways.
    pub fn cut(&self) {
        let mut open = self.open.lock().expect("relay lock");
        for s in open.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// What the browser sent on each connection (its first 256 KiB), in
    /// accept order.
    pub fn sent(&self) -> Vec<String> {
        let heads = self.heads.lock().expect("relay lock");
        heads
            .iter()
            .map(|h| String::from_utf8_lossy(h).into_owned())
            .collect()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut();
    }
}

/// Copies `from` to `to` until either ends; keeps the start in `keep`.
fn pipe(mut from: TcpStream, mut to: TcpStream, keep: Option<(Sent, usize)>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((heads, i)) = &keep {
            if let Ok(mut h) = heads.lock() {
                let room = KEEP.saturating_sub(h[*i].len());
                h[*i].extend_from_slice(&buf[..n.min(room)]);
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
