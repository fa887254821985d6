//! Hardening of WebSocket sessions against peers that stop reading: a
//! client that floods the echo backend through the balancer, then neither
//! reads nor sends, must not hold its session (nor the backend's
//! connection) open, in either relay mode; while one that reads slowly,
//! and only reads, keeps it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::certs;
use common::proc::{echo, serve, Proc};
use common::sockets::{open_connections, small_buffer_socket, within};
use common::ws_client::{Event, WsConn};
use socket2::{Domain, Socket, Type};
use wslb::proto::ws::frame::{FrameLimits, OpCode};
use wslb::proto::ws::message::{Message, MessageReader};
use wslb::proto::ws::scanner::ScannerConfig;

/// How long a stalled session may live at most before the test fails.
const BOUND: Duration = Duration::from_secs(10);

/// Established TCP connections whose local port is `port` (the backend's
/// side of its connections), from /proc/net/tcp{,6}.
fn established_on(port: u16) -> usize {
    let mut n = 0;
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 {
                continue;
            }
            let local_port = f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) && f[3] == "01" {
                n += 1;
            }
        }
    }
    n
}

/// Floods the echo backend through `lb` from a client `ws` that never reads,
/// then goes quiet; checks that the balancer ends the session (its
/// connection count drops to zero) and the backend's connection within
/// [`BOUND`], and that the client, once it reads again, reaches the end.
fn stalled_client_is_let_go<S: Read + Write>(
    lb: &Proc,
    backend: &Proc,
    mut ws: WsConn<S>,
    max_bytes: usize,
) {
    let admin = lb.addr("admin");
    ws.echo_text("hello");
    assert_eq!(open_connections(admin), 1);
    let backend_port = backend.http().port();
    assert!(established_on(backend_port) >= 1, "backend connection");
    // Messages, never reading the echoes, until a send cannot finish within
    // a second (or `max_bytes`): the balancer's writer toward us stalls;
    // with enough bytes, then the echo backend's writes, then its reads,
    // and so the balancer's writer toward the backend: every buffer full.
    ws.set_write_timeout(Duration::from_secs(1));
    let chunk = vec![0x5au8; 16 * 1024];
    let mut sent = 0usize;
    while sent < max_bytes && ws.send_frame(true, OpCode::Binary, &chunk) {
        sent += chunk.len();
    }
    let quiet_since = Instant::now();
    let ended = within(BOUND, || open_connections(admin) == 0);
    assert!(
        ended.is_some(),
        "the balancer kept the stalled session open for {BOUND:?} (sent {sent} bytes)"
    );
    let backend_gone = within(BOUND, || established_on(backend_port) == 0);
    assert!(
        backend_gone.is_some(),
        "the backend's connection stayed established"
    );
    eprintln!(
        "sent {sent} bytes; session ended {ended:?} and the backend's connection \
         {:?} after the client went quiet",
        quiet_since.elapsed()
    );
    // Reading again: whatever was buffered, then the end of the stream.
    let deadline = Instant::now() + BOUND;
    ws.set_read_timeout(Duration::from_secs(2));
    let end = loop {
        assert!(Instant::now() < deadline, "no end of stream");
        match ws.recv() {
            Event::Msg(_) => {}
            other => break other,
        }
    };
    assert!(
        matches!(end, Event::Eof | Event::Bad(_)),
        "the client's stream did not end: {end:?}"
    );
}

fn lb_for(backend: &Proc, extra: &[&str]) -> Proc {
    let mut flags = vec![
        "--workers",
        "1",
        "--admin-listen",
        "127.0.0.1:0",
        "--ws-ping-interval",
        "1s",
        "--ws-pong-timeout",
        "1s",
    ];
    flags.extend_from_slice(extra);
    serve(&[backend], &flags)
}

#[test]
fn inspect_mode_ends_a_session_whose_client_stopped_reading() {
    let e = echo("stall-inspect");
    let lb = lb_for(&e, &["--ws-mode", "inspect"]);
    let ws = WsConn::connect_on(small_buffer_socket(lb.http()));
    stalled_client_is_let_go(&lb, &e, ws, 64 << 20);
}

#[test]
fn tunnel_mode_ends_a_stalled_session_at_its_idle_timeout() {
    // Tunnel mode has no pings: a write stalled on a client that stopped
    // reading moves no bytes, so the idle timeout is what ends it.
    let e = echo("stall-tunnel");
    let lb = lb_for(
        &e,
        &["--ws-mode", "tunnel", "--ws-tunnel-idle-timeout", "2s"],
    );
    let ws = WsConn::connect_on(small_buffer_socket(lb.http()));
    stalled_client_is_let_go(&lb, &e, ws, 64 << 20);
}

fn tls_client_stalls(mode: &str, max_bytes: usize) {
    let cert = certs::generate(&["localhost", "127.0.0.1"]);
    let e = echo("stall-tls");
    let (c, k) = (cert.cert.to_string_lossy(), cert.key.to_string_lossy());
    let lb = lb_for(
        &e,
        &[
            "--ws-mode",
            mode,
            "--ws-tunnel-idle-timeout",
            "2s",
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            &c,
            "--tls-key",
            &k,
        ],
    );
    let config = certs::client_config(&cert.cert_pem);
    let ws = WsConn::connect_tls_on(small_buffer_socket(lb.addr("https")), config, "localhost");
    stalled_client_is_let_go(&lb, &e, ws, max_bytes);
    cert.cleanup();
}

#[test]
fn inspect_mode_over_tls_ends_a_session_whose_client_stopped_reading() {
    // 8 MiB: only the writer toward the client stalls; the session ends,
    // the relay drops that write part way, and the TLS writer must not be
    // shut afterwards (it panicked the worker: "buffer mut expected").
    tls_client_stalls("inspect", 8 << 20);
    tls_client_stalls("inspect", 64 << 20);
}

#[test]
fn tunnel_mode_over_tls_ends_a_stalled_session_at_its_idle_timeout() {
    tls_client_stalls("tunnel", 64 << 20);
}

#[test]
fn a_backend_reset_while_the_client_streams_gets_the_client_1012() {
    // The backend resets its connection while the client's messages are
    // on their way to it: the relay toward the backend may see its write
    // fail before the relay from it reads the reset (a race this test
    // rarely wins; the soak test and a unit test in ws_relay.rs pin it).
    // Either way the backend vanished mid-session: the client hears 1012.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    const SESSIONS: usize = 20;
    let backend = std::thread::spawn(move || {
        for _ in 0..SESSIONS {
            let Ok((s, _)) = listener.accept() else {
                return;
            };
            let mut ws = WsConn::accept(s);
            let _ = ws.recv();
            let _ = socket2::SockRef::from(&ws.stream).set_linger(Some(Duration::ZERO));
        }
    });
    let lb = Proc::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--no-pin",
        "--workers",
        "1",
        "--admin-listen",
        "off",
        "--backend",
        &format!("http://{addr}"),
    ]);
    let mut codes = Vec::new();
    for _ in 0..SESSIONS {
        let mut ws = WsConn::connect(lb.http());
        ws.stream
            .set_write_timeout(Some(Duration::from_millis(500)))
            .ok();
        let started = Instant::now();
        let msg = [b'x'; 512];
        while started.elapsed() < Duration::from_millis(300) && ws.send_binary(&msg) {}
        codes.push(ws.recv_close().map(|(c, _)| c));
    }
    backend.join().expect("backend thread");
    assert!(
        codes.iter().all(|c| *c == Some(1012)),
        "close codes after backend resets: {codes:?}"
    );
}

/// Reads at most `budget` bytes of what has arrived (waiting for none) and
/// returns the messages they complete, answering pings.
fn read_some(
    ws: &mut WsConn<TcpStream>,
    reader: &mut MessageReader,
    budget: usize,
) -> Vec<Message> {
    let mut got = Vec::new();
    let mut tmp = vec![0u8; 64 * 1024];
    ws.set_read_timeout(Duration::from_millis(10));
    while got.len() < budget {
        let want = tmp.len().min(budget - got.len());
        match ws.stream.read(&mut tmp[..want]) {
            Ok(0) => panic!("the balancer ended the session"),
            Ok(n) => got.extend_from_slice(&tmp[..n]),
            Err(_) => break,
        }
    }
    let (mut at, mut msgs) = (0, Vec::new());
    while at < got.len() {
        let (used, msg) = reader.feed(&got[at..]).expect("frames from the balancer");
        at += used;
        match msg {
            Some(m) if m.opcode == OpCode::Ping => {
                assert!(ws.send_frame(true, OpCode::Pong, &m.payload), "pong");
                msgs.push(m);
            }
            Some(m) => msgs.push(m),
            None if used == 0 => panic!("the reader took nothing"),
            None => {}
        }
    }
    msgs
}

#[test]
fn a_client_reading_a_large_echo_slowly_is_not_taken_for_dead() {
    // One 16 MiB message, echoed back as one frame, read at 256 KiB every
    // 100 ms (6 s): the ping falls due mid-frame and waits for the frame's
    // end, far past interval + pong timeout; the client only reads.
    let e = echo("slow-reader");
    let lb = lb_for(&e, &["--ws-mode", "inspect"]);
    // An Internet-sized MSS: with loopback's 64 KiB one, the balancer's send
    // buffer toward us grows to megabytes, and a ping written behind them
    // would reach us a second later (no writer can see that queue drain).
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    s.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    s.set_mss(1460).expect("TCP_MAXSEG");
    s.connect_timeout(&lb.http().into(), Duration::from_secs(5))
        .expect("connect");
    let mut ws = WsConn::connect_on(s.into());
    let mut reader = MessageReader::new(ScannerConfig {
        limits: FrameLimits::client(64 << 20),
        max_message: 64 << 20,
        validate_utf8: true,
    });
    let size = 16 << 20;
    assert!(ws.send_binary(&vec![0x5a; size]), "send 16 MiB");
    let start = Instant::now();
    let (mut echoed, mut pings) = (None, 0);
    while echoed.is_none() {
        assert!(start.elapsed() < Duration::from_secs(60), "no echo");
        std::thread::sleep(Duration::from_millis(100));
        for m in read_some(&mut ws, &mut reader, 256 << 10) {
            match m.opcode {
                OpCode::Ping => pings += 1,
                OpCode::Binary => echoed = Some((m.payload.len(), start.elapsed())),
                other => panic!("{other:?} {:?} during the echo", m.payload),
            }
        }
    }
    assert_eq!(echoed.map(|e| e.0), Some(size), "echo length");
    // Idle, still answering pings: the session stays and still echoes.
    let idle = Instant::now();
    while idle.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
        for m in read_some(&mut ws, &mut reader, usize::MAX) {
            assert_eq!(m.opcode, OpCode::Ping, "{m:?} while idle");
            pings += 1;
        }
    }
    assert!(ws.send_text("still here"), "send after the echo");
    let mut back = Vec::new();
    while back.is_empty() && idle.elapsed() < Duration::from_secs(10) {
        back = read_some(&mut ws, &mut reader, usize::MAX);
        back.retain(|m| m.opcode != OpCode::Ping);
    }
    assert_eq!(
        back.first().map(|m| &m.payload[..]),
        Some(&b"still here"[..])
    );
    assert!(pings >= 2, "pings: {pings}");
    eprintln!(
        "echo read in {:?}; {pings} pings answered",
        echoed.map(|e| e.1)
    );
}
