//! `GET /api/events` on the real binary: the token is required, the answer
//! is an open-ended `text/event-stream`; drains, resumes and refused
//! upgrades (origin policy, no backend) arrive as events with their fields;
//! `?backend=` filters; streams may hold only half the admin slots; a
//! reader that stops reading loses events (counted by a `lost` event when
//! it reads again) while traffic goes on.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::client::{get, HttpConn, Response};
use common::proc::{echo, serve};
use common::ws_client::WsConn;

const TOKEN: &str = "events-token";

/// One event off the stream.
#[derive(Debug)]
struct Sse {
    event: String,
    id: Option<u64>,
    data: serde_json::Value,
}

/// A client of the event stream.
struct Stream {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Stream {
    /// Opens `/api/events{query}`; `Err` carries a refusal's status.
    fn open(admin: SocketAddr, query: &str) -> Result<(Stream, Response), u16> {
        Self::open_on(TcpStream::connect(admin).expect("connect admin"), query)
    }

    /// Same, with a small receive buffer (a reader that can hold little).
    fn open_small(admin: SocketAddr, query: &str) -> Result<(Stream, Response), u16> {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        sock.set_recv_buffer_size(4096).expect("rcvbuf");
        sock.connect(&admin.into()).expect("connect admin");
        Self::open_on(sock.into(), query)
    }

    fn open_on(mut stream: TcpStream, query: &str) -> Result<(Stream, Response), u16> {
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let req = format!(
            "GET /api/events{query} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).expect("write");
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = stream.read(&mut tmp).expect("read head");
            assert!(n > 0, "closed before a head: {buf:?}");
            buf.extend_from_slice(&tmp[..n]);
        };
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut hs);
        resp.parse(&buf[..end]).expect("head parses");
        let status = resp.code.unwrap_or(0);
        let headers = resp
            .headers
            .iter()
            .map(|h| {
                let v = String::from_utf8_lossy(h.value).into_owned();
                (h.name.to_string(), v)
            })
            .collect();
        if status != 200 {
            return Err(status);
        }
        let head = Response {
            status,
            headers,
            body: Vec::new(),
        };
        buf.drain(..end);
        Ok((Stream { stream, buf }, head))
    }

    /// The next event (keep-alive comments skipped), or None if none comes
    /// within `within`.
    fn next(&mut self, within: Duration) -> Option<Sse> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block = String::from_utf8_lossy(&self.buf[..p]).into_owned();
                self.buf.drain(..p + 2);
                let (mut event, mut id, mut data) = (None, None, None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse().expect("numeric id"));
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).expect("data is JSON"));
                    } else {
                        assert!(line.starts_with(':'), "unexpected line {line:?}");
                    }
                }
                match (event, data) {
                    (Some(event), Some(data)) => return Some(Sse { event, id, data }),
                    (None, None) => continue,
                    other => panic!("half an event: {other:?}"),
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).ok();
            let mut tmp = [0u8; 65536];
            match self.stream.read(&mut tmp) {
                Ok(0) => panic!("the stream ended"),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None
                }
                Err(e) => panic!("stream read: {e}"),
            }
        }
    }

    /// The next event, which must be `event`.
    fn expect(&mut self, event: &str) -> Sse {
        let got = self
            .next(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no {event} event"));
        assert_eq!(got.event, event, "{got:?}");
        assert_eq!(got.data["type"], event, "{got:?}");
        if event != "lost" {
            assert!(got.data["ts_ms"].as_u64().is_some_and(|t| t > 0), "{got:?}");
        }
        got
    }
}

fn enc(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn toggle_request(id: &str, action: &str) -> String {
    format!(
        "POST /api/backends/{}/{action} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\n\r\n",
        enc(id)
    )
}

/// `POST /api/backends/{id}/{action}` with the token, on `c`.
fn toggle(c: &mut HttpConn, id: &str, action: &str) {
    c.send(toggle_request(id, action).as_bytes());
    let r = c.read_response(false).expect("admin answer");
    assert_eq!(r.status, 200, "{action}: {}", r.text());
}

/// Drains and resumes backend `id` `pairs` times, pipelined.
fn flood(admin: SocketAddr, id: &str, pairs: usize) {
    const BATCH: usize = 250;
    let mut c = HttpConn::connect(admin);
    let pair = toggle_request(id, "drain") + &toggle_request(id, "resume");
    for _ in 0..pairs.div_ceil(BATCH) {
        c.send(pair.repeat(BATCH).as_bytes());
        for _ in 0..2 * BATCH {
            let r = c.read_response(false).expect("admin answer");
            assert_eq!(r.status, 200, "{}", r.text());
        }
    }
}

#[test]
fn the_stream_carries_backend_changes_and_refused_handshakes() {
    let a = echo("a");
    let lb = serve(
        &[&a],
        &[
            "--workers",
            "1",
            "--admin-listen",
            "127.0.0.1:0",
            "--admin-token",
            TOKEN,
            "--admin-max-connections",
            "6",
            "--allowed-origins",
            "http://ok.example",
        ],
    );
    let admin = lb.addr("admin");
    let id = format!("http://{}", a.http());

    // No token, no stream; a bad query is refused.
    let mut c = HttpConn::connect(admin);
    c.send(b"GET /api/events HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.read_response(false).map(|r| r.status), Some(401));
    assert_eq!(Stream::open(admin, "?messages=maybe").err(), Some(400));

    let (mut all, head) = Stream::open(admin, "").expect("stream");
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("cache-control"), Some("no-cache"));
    assert_eq!(head.header("content-length"), None);
    let (mut other, _) = Stream::open(admin, "?backend=nobody").expect("filtered stream");
    let (mut with_messages, _) = Stream::open(admin, "?messages=1").expect("messages stream");
    // Six slots: streams may hold three.
    assert_eq!(Stream::open(admin, "").err(), Some(503));

    let mut c = HttpConn::connect(admin);
    toggle(&mut c, &id, "drain");
    let drained = all.expect("backend_drained");
    assert_eq!(
        (drained.data["id"].as_str(), drained.id),
        (Some(&*id), Some(1))
    );
    assert_eq!(drained.data["url"], id);
    toggle(&mut c, &id, "resume");
    let ready = all.expect("backend_ready");
    assert_eq!((ready.data["id"].as_str(), ready.id), (Some(&*id), Some(2)));
    // A resume of a ready backend says nothing: the next event is the
    // refused handshake below.
    toggle(&mut c, &id, "resume");

    // The origin policy refuses an upgrade.
    let evil = [("Origin", "http://evil.example")];
    let refused = WsConn::try_connect(lb.http(), "/chat?room=1", &evil).err();
    assert_eq!(refused.map(|r| r.status), Some(403));
    let ev = all.expect("handshake_refused");
    let d = &ev.data;
    assert_eq!(
        (d["status"].as_u64(), d["path"].as_str()),
        (Some(403), Some("/chat"))
    );
    assert!(
        d["reason"].as_str().is_some_and(|r| r.contains("origin")),
        "{d}"
    );
    assert!(
        d["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("127.0.0.1:")),
        "{d}"
    );

    // No backend to take an upgrade: 503, reported as refused too.
    toggle(&mut c, &id, "drain");
    all.expect("backend_drained");
    let ok = [("Origin", "http://ok.example")];
    let refused = WsConn::try_connect(lb.http(), "/ws", &ok).err();
    assert_eq!(refused.map(|r| r.status), Some(503));
    let ev = all.expect("handshake_refused");
    assert_eq!(ev.data["status"], 503);
    assert_eq!(ev.data["reason"], "no backend available");
    toggle(&mut c, &id, "resume");
    all.expect("backend_ready");
    // Plain HTTP makes no events; an accepted upgrade is no refusal.
    assert_eq!(get(lb.http(), "/").status, 200);
    let mut ws = WsConn::try_connect(lb.http(), "/ws", &ok).expect("upgrade");
    ws.echo_text("hi");

    // The other streams: every event here, nothing about other backends.
    for name in ["backend_drained", "backend_ready", "handshake_refused"] {
        with_messages.expect(name);
    }
    assert!(
        other.next(Duration::from_millis(300)).is_none(),
        "the filtered stream got an event"
    );
}

#[test]
fn a_reader_that_stops_reading_loses_events_not_traffic() {
    let a = echo("a");
    let b = echo("b");
    let lb = serve(
        &[&a, &b],
        &[
            "--workers",
            "1",
            "--admin-listen",
            "127.0.0.1:0",
            "--admin-token",
            TOKEN,
            // The stuck stream must outlive the flood.
            "--admin-request-timeout",
            "30s",
        ],
    );
    let admin = lb.addr("admin");
    let http = lb.http();
    let id = format!("http://{}", a.http());
    let (mut slow, _) = Stream::open_small(admin, "").expect("stream");

    // Traffic during the flood (backend b is never drained).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut n, mut slowest) = (0u32, Duration::ZERO);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 5 {
                let t = Instant::now();
                assert_eq!(get(http, "/").status, 200);
                slowest = slowest.max(t.elapsed());
                n += 1;
            }
            (n, slowest)
        })
    };

    // Drain and resume thousands of times over.
    const PAIRS: usize = 6000;
    flood(admin, &id, PAIRS);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (requests, slowest) = traffic.join().expect("traffic");
    assert!(
        slowest < Duration::from_secs(2),
        "a request took {slowest:?} during the flood ({requests} requests)"
    );
    assert_eq!(get(http, "/").status, 200);

    // Reading again: what was queued, with the losses counted.
    let (mut received, mut lost, mut last_id) = (0usize, 0usize, 0u64);
    let deadline = Instant::now() + Duration::from_secs(10);
    while received + lost < 2 * PAIRS {
        assert!(
            Instant::now() < deadline,
            "{received} received, {lost} lost"
        );
        let Some(ev) = slow.next(Duration::from_secs(2)) else {
            panic!("stream went quiet: {received} received, {lost} lost");
        };
        match ev.event.as_str() {
            "lost" => lost += ev.data["lost"].as_u64().expect("count") as usize,
            "backend_drained" | "backend_ready" => {
                received += 1;
                let id = ev.id.expect("id");
                assert_eq!(id, last_id + 1, "ids count the events sent");
                last_id = id;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(lost > 0, "nothing was lost ({received} received)");
    assert_eq!(
        received + lost,
        2 * PAIRS,
        "every event received or counted"
    );
}

#[test]
fn a_reader_stuck_for_the_request_timeout_is_dropped_and_frees_its_slot() {
    let a = echo("a");
    let lb = serve(
        &[&a],
        &[
            "--workers",
            "1",
            "--admin-listen",
            "127.0.0.1:0",
            "--admin-token",
            TOKEN,
            "--admin-request-timeout",
            "1s",
            // Room for one stream.
            "--admin-max-connections",
            "2",
        ],
    );
    let admin = lb.addr("admin");
    let id = format!("http://{}", a.http());
    let (mut stuck, _) = Stream::open_small(admin, "").expect("stream");
    // Enough to fill every buffer between the stream and this reader.
    flood(admin, &id, 2500);
    std::thread::sleep(Duration::from_millis(1500));
    // What the buffers held, then the end.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut tmp = [0u8; 65536];
    loop {
        assert!(Instant::now() < deadline, "the stuck stream was kept");
        match stuck.stream.read(&mut tmp) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read: {e}"),
        }
    }
    // Its slot is free for a new stream.
    let (mut again, _) = Stream::open(admin, "").expect("a new stream");
    let mut c = HttpConn::connect(admin);
    toggle(&mut c, &id, "drain");
    again.expect("backend_drained");
}

#[test]
fn sessions_report_their_opening_messages_and_end() {
    let a = echo("a");
    let lb = serve(
        &[&a],
        &["--admin-listen", "127.0.0.1:0", "--admin-token", TOKEN],
    );
    let admin = lb.addr("admin");
    let (mut plain, _) = Stream::open(admin, "").expect("stream");
    let (mut msgs, _) = Stream::open(admin, "?messages=1").expect("stream");
    let mut ws = WsConn::try_connect(lb.http(), "/room?x=1", &[]).expect("upgrade");
    let opened = plain.expect("session_open");
    let id = opened.data["id"].as_str().expect("id").to_string();
    assert_eq!(opened.data["path"], "/room");
    assert_eq!(opened.data["backend"], format!("http://{}", a.http()));
    assert!(opened.data["client"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(msgs.expect("session_open").data["id"], id.as_str());

    // One fragmented message out and its echo back.
    assert!(ws.send_frame(false, wslb::proto::ws::frame::OpCode::Text, b"hel"));
    assert!(ws.send_frame(true, wslb::proto::ws::frame::OpCode::Continuation, b"lo"));
    assert_eq!(ws.recv_msg().payload, b"hello");
    let inbound = msgs.expect("message");
    assert_eq!(inbound.data["id"], id.as_str());
    assert_eq!(inbound.data["direction"], "in");
    assert_eq!(inbound.data["opcode"], "text");
    assert_eq!(inbound.data["length"], 5);
    assert_eq!(inbound.data["fragmented"], true);
    let outbound = msgs.expect("message");
    assert_eq!(outbound.data["direction"], "out");
    assert_eq!(outbound.data["fragmented"], false);

    // The client closes: who, the code, the counts.
    assert!(ws.send_close(4000, "done"));
    let _ = ws.recv_close();
    let closed = plain.expect("session_closed");
    assert_eq!(closed.data["id"], id.as_str());
    assert_eq!(closed.data["code"], 4000);
    assert_eq!(closed.data["closed_by"], "client");
    assert_eq!(closed.data["messages_in"], 1);
    assert_eq!(closed.data["messages_out"], 1);
    assert!(closed.data["bytes_in"].as_u64().unwrap() >= 5 + 4 + 8);
    assert!(closed.data["duration_ms"].is_u64());
    assert!(
        plain.next(Duration::from_millis(200)).is_none(),
        "no message metadata unasked"
    );
}
