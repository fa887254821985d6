//! The SSE fallback (issue 13) on the real binary over loopback: a GET with
//! `Accept: text/event-stream` opens a backend WebSocket session on the
//! client's behalf and streams its messages as events; `POST`/`DELETE
//! /_lb/sse/<token>` talk back; bad input gets its status; the message hub
//! sees the session like any other; a dropped stream resumes from
//! `Last-Event-ID` with nothing lost or repeated (a hundred cuts), until the
//! resume timeout or the buffer runs out; the token stays out of the log.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use common::client::Response;
use common::proc::{echo, serve, Proc};
use common::sse::{self, expect_open, Next, SseStream};
use serde_json::{json, Value};

/// An echo backend and a balancer in front of it with `--fallback sse`
/// and `extra` flags.
fn fallback(extra: &[&str]) -> (Proc, Proc) {
    let e = echo("e1");
    let mut flags = vec!["--fallback", "sse"];
    flags.extend_from_slice(extra);
    let lb = serve(&[&e], &flags);
    (e, lb)
}

/// Opens a fresh stream on `/chat` (panics on any other answer).
fn stream(addr: SocketAddr) -> SseStream {
    sse::open(addr, "/chat", None, &[])
        .unwrap_or_else(|r| panic!("no event stream: {} {}", r.status, r.text()))
}

/// Resumes after `last_id` on `/chat`.
fn resume(addr: SocketAddr, last_id: &str) -> Result<SseStream, Response> {
    sse::open(addr, "/chat", Some(last_id), &[])
}

fn assert_status(r: &Response, status: u16, what: &str) {
    assert_eq!(
        r.status,
        status,
        "{what}: answered {} {}",
        r.status,
        r.text()
    );
}

/// Reads the `close` event that must come next, then the end of the
/// stream; its `{code, reason}`.
fn expect_close(s: &mut SseStream, token: &str) -> (u64, String) {
    let ev = s.event();
    assert_eq!(ev.event.as_deref(), Some("close"), "{ev:?}");
    assert_eq!(ev.token(), Some(token), "{ev:?}");
    let v = ev.json();
    let code = v["code"].as_u64().unwrap_or_else(|| panic!("no code: {v}"));
    let reason = v["reason"].as_str().unwrap_or_default().to_string();
    if let Err(extra) = s.ends_within(Duration::from_secs(5)) {
        panic!("the stream went on after close: {extra:?}");
    }
    (code, reason)
}

/// A JSON request to the admin API: status and JSON answer.
fn admin_post(admin: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let r = sse::request(
        admin,
        "POST",
        path,
        Some("application/json"),
        body.as_bytes(),
    );
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

/// The ids `GET /api/connections` lists.
fn listed(admin: SocketAddr) -> Vec<String> {
    let r = common::client::get(admin, "/api/connections");
    assert_status(&r, 200, "/api/connections");
    let v: Value = serde_json::from_slice(&r.body).expect("connections JSON");
    v["sessions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls until `cond` holds on the listed ids (the time it took) or
/// `within` passes (None).
fn until_listed(
    admin: SocketAddr,
    within: Duration,
    cond: impl Fn(&[String]) -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if cond(&listed(admin)) {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    None
}

/// The admin event stream (`GET /api/events`).
fn events(admin: SocketAddr) -> SseStream {
    sse::open(admin, "/api/events", None, &[])
        .unwrap_or_else(|r| panic!("no events stream: {} {}", r.status, r.text()))
}

/// Reads admin events until one of type `kind` about session `id` (5 s).
fn admin_event(es: &mut SseStream, kind: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match es.next(left) {
            Next::Event(ev) => {
                let v = ev.json();
                if v["type"] == kind && v["id"] == id {
                    return v;
                }
                seen.push(v);
            }
            other => panic!("no {kind} about {id} ({other:?}); saw {seen:?}"),
        }
    }
}

#[test]
fn a_get_for_an_event_stream_opens_a_session_with_token_url_and_retry() {
    let (_e, lb) = fallback(&[]);
    let mut s = stream(lb.http());
    let ct = s
        .head
        .header("content-type")
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    assert_eq!(s.head.header("cache-control"), Some("no-store"));
    assert!(
        s.head.header("content-length").is_none() && s.head.header("transfer-encoding").is_none(),
        "the stream is close-delimited: {:?}",
        s.head.headers
    );
    let o = expect_open(&mut s);
    assert_eq!(s.retry, Some(2000), "retry: of the default 2s");
    assert!(s.unknown.is_empty(), "{:?}", s.unknown);
    // Every session gets its own token.
    let mut other = stream(lb.http());
    let o2 = expect_open(&mut other);
    assert_ne!(o.token, o2.token);
    assert_ne!(o.conn_id, o2.conn_id);
    // The client library is served by the balancer.
    let js = common::client::get(lb.http(), "/_lb/client.js");
    assert_status(&js, 200, "/_lb/client.js");
    let jt = js.header("content-type").unwrap_or_default();
    assert!(jt.starts_with("application/javascript"), "{jt}");
    assert!(!js.body.is_empty());
    drop((s, other, lb));

    let (_e, lb) = fallback(&["--fallback-retry", "500ms"]);
    let mut s = stream(lb.http());
    expect_open(&mut s);
    assert_eq!(s.retry, Some(500), "retry: of --fallback-retry 500ms");
}

#[test]
fn text_multiline_and_binary_messages_echo_as_events_with_increasing_ids() {
    let (_e, lb) = fallback(&[]);
    let addr = lb.http();
    let mut s = stream(addr);
    let o = expect_open(&mut s);
    let t = o.token.as_str();

    assert_status(&sse::post_text(addr, t, b"hello"), 204, "POST text");
    let ev = s.event();
    assert_eq!(
        (ev.event.as_deref(), ev.data.as_str()),
        (None, "hello"),
        "{ev:?}"
    );
    assert_eq!(ev.id, Some(format!("{t}.1")));

    // Each line its own data line (\n, \r\n and \r all split), joined back.
    let lines = "first\nsecond\r\nthird\rfourth é ✓";
    assert_status(
        &sse::post_text(addr, t, lines.as_bytes()),
        204,
        "POST lines",
    );
    let ev = s.event();
    assert_eq!(ev.event, None, "{ev:?}");
    assert_eq!(ev.data, "first\nsecond\nthird\nfourth é ✓");
    assert_eq!(ev.data_lines, 4, "{ev:?}");
    assert_eq!(ev.id, Some(format!("{t}.2")));

    let bytes: Vec<u8> = (0..=255u8).chain([0, 0, 13, 10, 10]).collect();
    assert_status(&sse::post_binary(addr, t, &bytes), 204, "POST binary");
    let ev = s.event();
    assert_eq!(ev.event.as_deref(), Some("binary"), "{ev:?}");
    let back = base64::engine::general_purpose::STANDARD
        .decode(&ev.data)
        .unwrap_or_else(|e| panic!("not standard padded base64 ({e}): {ev:?}"));
    assert_eq!(back, bytes);
    assert_eq!(ev.id, Some(format!("{t}.3")));

    // Ids go up by one, message after message.
    for i in 0..20u64 {
        let msg = format!("n{i}");
        assert_status(&sse::post_text(addr, t, msg.as_bytes()), 204, "POST");
        let ev = s.event();
        assert_eq!(ev.data, msg);
        assert_eq!(ev.seq(), Some(4 + i), "{ev:?}");
        assert_eq!(ev.token(), Some(t));
    }
}

#[test]
fn without_the_fallback_an_event_stream_get_is_proxied_as_plain_http() {
    let e = echo("e1");
    for flags in [&[][..], &["--fallback", "off"][..]] {
        let lb = serve(&[&e], flags);
        let r = match sse::open(lb.http(), "/chat", None, &[]) {
            Ok(s) => panic!("{flags:?}: an event stream: {:?}", s.head),
            Err(r) => r,
        };
        assert_status(&r, 200, "plain GET");
        assert_eq!(r.text(), "e1\n", "{flags:?}: the backend's answer");
        assert_eq!(r.header("x-backend"), Some("e1"));
    }
    // With it, a GET that does not ask for a stream is proxied as before.
    let lb = serve(&[&e], &["--fallback", "sse"]);
    let r = common::client::get(lb.http(), "/chat");
    assert_status(&r, 200, "plain GET with the fallback on");
    assert_eq!(r.text(), "e1\n");
}

#[test]
fn bad_input_gets_404_413_400_and_delete_closes_with_1000() {
    let (_e, lb) = fallback(&["--max-message-size", "1k"]);
    let addr = lb.http();
    let unknown = "0123456789abcdef0123456789abcdef";
    assert_status(&sse::post_text(addr, unknown, b"x"), 404, "POST unknown");
    assert_status(&sse::delete(addr, unknown), 404, "DELETE unknown");
    match resume(addr, &format!("{unknown}.0")) {
        Ok(s) => panic!("resumed an unknown token: {:?}", s.head),
        Err(r) => assert_status(&r, 404, "resume unknown"),
    }

    let mut s = stream(addr);
    let o = expect_open(&mut s);
    let t = o.token.as_str();
    let big = vec![b'a'; 1025];
    assert_status(&sse::post_text(addr, t, &big), 413, "POST 1025 bytes");
    assert_status(
        &sse::post_binary(addr, t, &big),
        413,
        "POST 1025 bytes binary",
    );
    assert_status(
        &sse::post_text(addr, t, b"ok \xff\xfe"),
        400,
        "POST bad UTF-8",
    );
    // The session goes on after refused posts; 1024 bytes is not over.
    assert_status(
        &sse::post_text(addr, t, &big[..1024]),
        204,
        "POST 1024 bytes",
    );
    let ev = s.event();
    assert_eq!(ev.data.len(), 1024, "{ev:?}");
    assert_eq!(ev.seq(), Some(1), "refused posts made no events");
    // The same bytes as binary are fine.
    assert_status(
        &sse::post_binary(addr, t, b"ok \xff\xfe"),
        204,
        "POST binary",
    );
    let ev = s.event();
    assert_eq!(ev.event.as_deref(), Some("binary"));

    assert_status(&sse::delete(addr, t), 204, "DELETE");
    assert_eq!(expect_close(&mut s, t).0, 1000);
    assert_status(&sse::post_text(addr, t, b"late"), 404, "POST after close");
    assert_status(&sse::delete(addr, t), 404, "DELETE after close");
}

#[test]
fn the_hub_lists_publishes_sends_and_closes_an_sse_session() {
    let (_e, lb) = fallback(&["--admin-listen", "127.0.0.1:0"]);
    let (addr, admin) = (lb.http(), lb.addr("admin"));
    let mut es = events(admin);
    let mut s = stream(addr);
    let o = expect_open(&mut s);
    let id = o.conn_id.as_str();
    let opened = admin_event(&mut es, "session_open", id);
    assert_eq!(opened["path"], "/chat", "{opened}");
    assert!(
        until_listed(admin, Duration::from_secs(5), |l| l.iter().any(|x| x == id)).is_some(),
        "{id} not in /api/connections: {:?}",
        listed(admin)
    );

    let counts = |v: &Value| {
        let n = |k: &str| v[k].as_u64().unwrap_or(u64::MAX);
        (n("matched"), n("delivered"), n("skipped"), n("dropped"))
    };
    let (st, v) = admin_post(admin, "/api/publish", &json!({"text": "to all"}));
    assert_eq!((st, counts(&v)), (200, (1, 1, 0, 0)), "publish: {v}");
    let ev = s.event();
    assert_eq!(
        (ev.event.as_deref(), ev.data.as_str()),
        (None, "to all"),
        "{ev:?}"
    );
    let (st, v) = admin_post(admin, "/api/publish", &json!({"binary": "AAEC"}));
    assert_eq!((st, counts(&v)), (200, (1, 1, 0, 0)), "publish binary: {v}");
    let ev = s.event();
    assert_eq!(
        (ev.event.as_deref(), ev.data.as_str()),
        (Some("binary"), "AAEC")
    );
    let (st, v) = admin_post(admin, "/api/send", &json!({"id": id, "text": "just you"}));
    assert_eq!((st, counts(&v)), (200, (1, 1, 0, 0)), "send: {v}");
    let ev = s.event();
    assert_eq!(ev.data, "just you");
    assert_eq!(ev.seq(), Some(3), "hub messages count in the ids: {ev:?}");
    // The client still talks to the backend in between.
    assert_status(&sse::post_text(addr, &o.token, b"mine"), 204, "POST");
    assert_eq!(s.event().data, "mine");

    let close = json!({"id": id, "code": 4001, "reason": "bye"});
    let (st, v) = admin_post(admin, "/api/close", &close);
    assert_eq!((st, counts(&v)), (200, (1, 1, 0, 0)), "close: {v}");
    assert_eq!(expect_close(&mut s, &o.token), (4001, "bye".to_string()));
    let closed = admin_event(&mut es, "session_closed", id);
    assert_eq!(closed["code"], 4001, "{closed}");
    assert!(
        until_listed(admin, Duration::from_secs(5), |l| !l
            .iter()
            .any(|x| x == id))
        .is_some(),
        "{id} still listed after its close"
    );
    assert_status(
        &sse::post_text(addr, &o.token, b"x"),
        404,
        "POST after close",
    );
}

#[test]
fn a_resume_replays_what_was_missed_and_ends_the_older_stream() {
    let (_e, lb) = fallback(&[]);
    let addr = lb.http();
    let mut first = stream(addr);
    let o = expect_open(&mut first);
    let t = o.token.as_str();
    for m in ["a", "b", "c"] {
        assert_status(&sse::post_text(addr, t, m.as_bytes()), 204, "POST");
        assert_eq!(first.event().data, m);
    }
    // Resumed after the first message while the first stream is attached.
    let mut second = resume(addr, &format!("{t}.1"))
        .unwrap_or_else(|r| panic!("resume refused: {} {}", r.status, r.text()));
    let ct = second.head.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    for (n, m) in [(2, "b"), (3, "c")] {
        let ev = second.event();
        assert_eq!((ev.seq(), ev.data.as_str()), (Some(n), m), "{ev:?}");
    }
    assert_eq!(second.retry, Some(2000), "a resume starts with retry:");
    if let Err(extra) = first.ends_within(Duration::from_secs(5)) {
        panic!("the superseded stream did not end: {extra:?}");
    }
    assert_status(&sse::post_text(addr, t, b"d"), 204, "POST");
    let ev = second.event();
    assert_eq!((ev.seq(), ev.data.as_str()), (Some(4), "d"), "{ev:?}");
}

/// Counts what a resumed reader got against what was sent (`m<n>` texts).
#[derive(Default, Debug)]
struct Tally {
    /// The next message expected.
    next: u64,
    /// The last event id seen (what a resume sends).
    last_id: String,
    last_seq: u64,
    lost: u64,
    duplicated: u64,
    id_gaps: u64,
    opens: u64,
}

impl Tally {
    fn take(&mut self, ev: sse::SseEvent) {
        match ev.event.as_deref() {
            Some("open") => {
                self.opens += 1;
                return;
            }
            None => {}
            Some(_) => panic!("unexpected event {ev:?} after {self:?}"),
        }
        let seq = ev.seq().unwrap_or_else(|| panic!("no id: {ev:?}"));
        if seq != self.last_seq + 1 {
            self.id_gaps += 1;
        }
        self.last_seq = seq;
        self.last_id = ev.id.clone().unwrap_or_default();
        let n: u64 = ev
            .data
            .strip_prefix('m')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a test message: {ev:?}"));
        if n < self.next {
            self.duplicated += 1;
        } else {
            self.lost += n - self.next;
            self.next = n + 1;
        }
    }
}

#[test]
fn a_hundred_cuts_with_messages_in_flight_lose_and_repeat_nothing() {
    const CUTS: u64 = 100;
    let started = Instant::now();
    let (_e, lb) = fallback(&[]);
    let addr = lb.http();
    let mut s = stream(addr);
    let o = expect_open(&mut s);
    let t = o.token.clone();
    let mut tally = Tally {
        last_id: format!("{t}.0"),
        ..Tally::default()
    };
    let mut sent = 0u64;
    // Posted before a cut and not read before it.
    let mut in_flight = 0u64;
    let post = |sent: &mut u64, cut: u64| {
        let r = sse::post_text(addr, &t, format!("m{sent}").as_bytes());
        assert_eq!(r.status, 204, "cut {cut}, message {sent}: {}", r.text());
        *sent += 1;
    };
    for cut in 0..CUTS {
        assert!(
            started.elapsed() < Duration::from_secs(50),
            "only {cut} cuts in {:?}; {tally:?}",
            started.elapsed()
        );
        // Four posted, some read, the rest in flight when the stream drops.
        for _ in 0..4 {
            post(&mut sent, cut);
        }
        for _ in 0..cut % 4 {
            match s.next(Duration::from_secs(5)) {
                Next::Event(ev) => tally.take(ev),
                other => panic!("cut {cut}: {other:?} before the cut; {tally:?}"),
            }
        }
        in_flight += sent - tally.next;
        drop(s);
        for _ in 0..3 {
            post(&mut sent, cut);
        }
        s = resume(addr, &tally.last_id).unwrap_or_else(|r| {
            panic!(
                "cut {cut}: resume after {} answered {} {}",
                tally.last_id,
                r.status,
                r.text()
            )
        });
        let deadline = Instant::now() + Duration::from_secs(3);
        while tally.next < sent {
            match s.next(deadline.saturating_duration_since(Instant::now())) {
                Next::Event(ev) => tally.take(ev),
                Next::Timeout => {
                    // Whatever has not come by now is lost.
                    tally.lost += sent - tally.next;
                    tally.next = sent;
                }
                Next::Eof => panic!("cut {cut}: the resumed stream ended; {tally:?}"),
            }
        }
    }
    // Nothing more trails behind.
    while let Next::Event(ev) = s.next(Duration::from_millis(300)) {
        tally.take(ev);
    }
    let took = started.elapsed();
    eprintln!(
        "resume: {CUTS} cuts, {sent} messages ({in_flight} in flight at a cut): {} lost, {} duplicated, {} id gaps, {} open events on resume, {took:?}",
        tally.lost, tally.duplicated, tally.id_gaps, tally.opens
    );
    assert_eq!(
        (tally.lost, tally.duplicated, tally.id_gaps, tally.opens),
        (0, 0, 0, 0),
        "lost, duplicated, id gaps, opens: {tally:?}"
    );
    assert_eq!(tally.next, sent);
    assert!(took < Duration::from_secs(45), "{CUTS} cuts took {took:?}");
}

#[test]
fn past_the_resume_timeout_the_token_is_gone_and_the_backend_session_closed() {
    let (_e, lb) = fallback(&[
        "--fallback-resume-timeout",
        "1s",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let (addr, admin) = (lb.http(), lb.addr("admin"));
    let mut es = events(admin);
    let mut s = stream(addr);
    let o = expect_open(&mut s);
    let id = o.conn_id.as_str();
    admin_event(&mut es, "session_open", id);
    assert_status(&sse::post_text(addr, &o.token, b"one"), 204, "POST");
    let ev = s.event();
    assert_eq!(ev.data, "one");
    drop(s);
    let dropped = Instant::now();
    assert!(until_listed(admin, Duration::from_millis(400), |l| l
        .iter()
        .any(|x| x == id))
    .is_some());
    let gone = until_listed(admin, Duration::from_secs(6), |l| {
        !l.iter().any(|x| x == id)
    });
    let waited = dropped.elapsed();
    assert!(
        gone.is_some(),
        "{id} still listed {waited:?} after the drop"
    );
    assert!(
        waited >= Duration::from_millis(800),
        "the session went after {waited:?}, before the 1 s resume timeout"
    );
    let closed = admin_event(&mut es, "session_closed", id);
    assert_eq!(closed["code"], 1001, "{closed}");
    match resume(addr, ev.id.as_deref().unwrap_or_default()) {
        Ok(s) => panic!("resumed past the timeout: {:?}", s.head),
        Err(r) => assert_status(&r, 404, "resume past the timeout"),
    }
    assert_status(
        &sse::post_text(addr, &o.token, b"x"),
        404,
        "POST past the timeout",
    );
    // The balancer goes on: fresh sessions open on every worker.
    for _ in 0..4 {
        let mut s = stream(addr);
        expect_open(&mut s);
    }
}

#[test]
fn the_buffer_bounds_what_a_detached_session_keeps_and_what_a_resume_finds() {
    let (_e, lb) = fallback(&["--fallback-buffer", "4k", "--admin-listen", "127.0.0.1:0"]);
    let (addr, admin) = (lb.http(), lb.addr("admin"));
    let mut es = events(admin);
    let chunk = vec![b'x'; 1000];

    // Past the buffer with no stream: the session closes with 1001, and a
    // resume gets what was kept, in order and whole, then that close.
    let mut s = stream(addr);
    let o = expect_open(&mut s);
    let (t, id) = (o.token.as_str(), o.conn_id.as_str());
    admin_event(&mut es, "session_open", id);
    assert_status(&sse::post_text(addr, t, b"first"), 204, "POST");
    assert_eq!(s.event().seq(), Some(1));
    drop(s);
    // 12 KB of echoes for a 4 KiB buffer: once it overflows the session is
    // closed, so later posts may find it gone.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(sse::post_text(addr, t, &chunk).status);
    }
    let accepted = statuses.iter().take_while(|&&s| s == 204).count();
    assert!(
        accepted >= 3 && statuses[accepted..].iter().all(|&s| s == 404),
        "statuses: {statuses:?}"
    );
    let closed = admin_event(&mut es, "session_closed", id);
    assert_eq!(closed["code"], 1001, "{closed}");
    let mut r = resume(addr, &format!("{t}.1"))
        .unwrap_or_else(|r| panic!("resume answered {} {}", r.status, r.text()));
    let mut replayed = 0;
    let code = loop {
        let ev = r.event();
        if ev.event.as_deref() == Some("close") {
            assert_eq!(ev.token(), Some(t), "{ev:?}");
            if let Err(extra) = r.ends_within(Duration::from_secs(5)) {
                panic!("the stream went on after close: {extra:?}");
            }
            break ev.json()["code"].clone();
        }
        replayed += 1;
        assert_eq!(ev.seq(), Some(1 + replayed), "no gap in the replay: {ev:?}");
        assert_eq!(ev.data.as_bytes(), &chunk[..], "{:?}", ev.id);
    };
    assert_eq!(code, 1001);
    assert!(
        replayed <= accepted as u64,
        "{replayed} replayed, {accepted} posted"
    );
    eprintln!("buffer: {accepted} of 12 posts taken, {replayed} replayed, then close 1001");
    assert!(until_listed(admin, Duration::from_secs(5), |l| !l
        .iter()
        .any(|x| x == id))
    .is_some());

    // A resume from events the buffer no longer holds (sent ones are let
    // go past 4 KiB): told with a close 1001, and the session ends.
    let mut s = stream(addr);
    let o = expect_open(&mut s);
    let (t, id) = (o.token.as_str(), o.conn_id.as_str());
    admin_event(&mut es, "session_open", id);
    for n in 1..=10 {
        assert_status(&sse::post_text(addr, t, &chunk), 204, "POST");
        assert_eq!(s.event().seq(), Some(n));
    }
    drop(s);
    let mut r = resume(addr, &format!("{t}.1"))
        .unwrap_or_else(|r| panic!("resume answered {} {}", r.status, r.text()));
    assert_eq!(expect_close(&mut r, t).0, 1001);
    let closed = admin_event(&mut es, "session_closed", id);
    assert_eq!(closed["code"], 1001, "{closed}");
    assert!(until_listed(admin, Duration::from_secs(5), |l| !l
        .iter()
        .any(|x| x == id))
    .is_some());
    assert_status(&sse::post_text(addr, t, b"x"), 404, "POST after the gap");
}

#[test]
fn the_access_log_never_holds_a_whole_token() {
    let dir = std::env::temp_dir().join(format!("wslb-sse-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("access.log");
    let (_e, lb) = fallback(&["--access-log", path.to_str().expect("utf-8 path")]);
    let addr = lb.http();
    let mut s = stream(addr);
    let o = expect_open(&mut s);
    let t = o.token.as_str();
    assert_status(&sse::post_text(addr, t, b"logged"), 204, "POST");
    assert_eq!(s.event().data, "logged");
    drop(s);
    let mut r = resume(addr, &format!("{t}.1"))
        .unwrap_or_else(|r| panic!("resume answered {} {}", r.status, r.text()));
    assert_status(&sse::delete(addr, t), 204, "DELETE");
    expect_close(&mut r, t);
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let sse_lines: Vec<&str> = text.lines().filter(|l| l.contains("/_lb/sse/")).collect();
        let both = sse_lines.iter().any(|l| l.contains("POST"))
            && sse_lines.iter().any(|l| l.contains("DELETE"));
        if both || Instant::now() > deadline {
            assert!(both, "no POST and DELETE lines for /_lb/sse/ in:\n{text}");
            break text;
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    // The session's own line comes at its end: give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    let text = std::fs::read_to_string(&path).unwrap_or(text);
    assert!(!text.contains(t), "the token {t} is in the log:\n{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
