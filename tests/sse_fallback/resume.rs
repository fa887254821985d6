//! Resuming a dropped stream: a replay of what was missed that ends the
//! older stream, a hundred cuts with messages in flight (none lost or
//! repeated), the resume timeout, and the buffer's bounds.

use std::time::{Duration, Instant};

use super::common::sse::{self, expect_open, Next};
use super::support::{
    admin_event, assert_status, events, expect_close, fallback, resume, stream, until_listed,
};

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
    /// Messages whose text came back different.
    corrupt: u64,
}

/// Test message `n`: `m<n>`, every fifth one padded to 64 KiB (so that a
/// cut often falls inside an event).
fn message(n: u64) -> String {
    if n % 5 == 2 {
        format!("m{n} {}", "x".repeat(64 * 1024))
    } else {
        format!("m{n}")
    }
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
            .split(' ')
            .next()
            .and_then(|m| m.strip_prefix('m'))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a test message: {:?}", ev.id));
        if ev.data != message(n) {
            self.corrupt += 1;
        }
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
    // Cuts that fell inside an event the reader had begun.
    let mut partial_cuts = 0u64;
    let post = |sent: &mut u64, cut: u64| {
        let r = sse::post_text(addr, &t, message(*sent).as_bytes());
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
        partial_cuts += u64::from(s.holds_partial());
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
        "resume: {CUTS} cuts, {sent} messages ({in_flight} in flight at a cut, {partial_cuts} cuts inside an event): {} lost, {} duplicated, {} id gaps, {} open events on resume, {} corrupt, {took:?}",
        tally.lost, tally.duplicated, tally.id_gaps, tally.opens, tally.corrupt
    );
    assert_eq!(
        (
            tally.lost,
            tally.duplicated,
            tally.id_gaps,
            tally.opens,
            tally.corrupt
        ),
        (0, 0, 0, 0, 0),
        "lost, duplicated, id gaps, opens, corrupt: {tally:?}"
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
