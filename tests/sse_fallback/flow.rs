//! Flow: a stream that reads slowly holds the backend back and loses
//! nothing; posts from several connections at once all arrive under
//! consecutive ids, each poster's in the order it sent them; an idle stream
//! gets its keep-alive comment.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::common::client::{rss_kib, HttpConn};
use super::common::proc::serve_urls;
use super::common::sockets::small_buffer_socket;
use super::common::sse::{self, expect_open, Next};
use super::support::{assert_status, fallback, scripted_backend, stream};

#[test]
fn a_slow_reader_holds_the_backend_back_and_loses_nothing() {
    const N: usize = 20000;
    let (baddr, sessions) = scripted_backend();
    let lb = serve_urls(
        &[format!("http://{baddr}")],
        &["--fallback", "sse", "--fallback-buffer", "64k"],
    );
    let socket = small_buffer_socket(lb.http());
    let mut s = sse::open_on(socket, "/feed", None, &[])
        .unwrap_or_else(|r| panic!("no event stream: {} {}", r.status, r.text()));
    let o = expect_open(&mut s);
    let rss_before = rss_kib(lb.child.id());
    let mut b = sessions
        .recv_timeout(Duration::from_secs(5))
        .expect("the backend got a session");
    b.set_write_timeout(Duration::from_secs(30));
    let pushed = Arc::new(AtomicUsize::new(0));
    let counter = pushed.clone();
    let pusher = std::thread::spawn(move || {
        let pad = "p".repeat(1000);
        for i in 0..N {
            if !b.send_text(&format!("{i:06}-{pad}")) {
                return (i, b);
            }
            counter.fetch_add(1, Ordering::SeqCst);
        }
        (N, b)
    });
    // The reader sleeps while the backend pushes.
    std::thread::sleep(Duration::from_secs(1));
    let while_asleep = pushed.load(Ordering::SeqCst);
    let rss_asleep = rss_kib(lb.child.id());
    // 20 MB pushed; what left the backend sits in socket buffers and a
    // 64 KiB event buffer, not in the balancer's memory.
    assert!(
        while_asleep < N / 2,
        "{while_asleep} of {N} messages left the backend: not held back"
    );
    assert!(
        rss_asleep < rss_before + 10 * 1024,
        "the balancer grew from {rss_before} to {rss_asleep} KiB"
    );
    for i in 0..N {
        let ev = s.event();
        assert_eq!(ev.seq(), Some(i as u64 + 1), "event {i}");
        assert_eq!(ev.token(), Some(o.token.as_str()));
        assert!(
            ev.data.len() == 1007 && ev.data.starts_with(&format!("{i:06}-")),
            "event {i}: {:?}",
            &ev.data[..ev.data.len().min(20)]
        );
    }
    let (sent, _b) = pusher.join().expect("pusher");
    assert_eq!(sent, N, "the backend could not push everything");
    assert_eq!(s.event_or_none(), None, "nothing more");
    eprintln!(
        "slow reader: {while_asleep} of {N} 1 KB messages left the backend while the reader slept; balancer RSS {rss_before} KiB before, {rss_asleep} KiB then"
    );
}

#[test]
fn posts_from_several_connections_at_once_all_arrive_in_each_posters_order() {
    const POSTERS: usize = 4;
    const EACH: usize = 50;
    let (_e, lb) = fallback(&[]);
    let addr = lb.http();
    let mut s = stream(addr);
    let token = expect_open(&mut s).token;
    let posters: Vec<_> = (0..POSTERS)
        .map(|p| {
            let token = token.clone();
            std::thread::spawn(move || {
                // Half keep one connection, half open one per post.
                let mut kept = (p % 2 == 0).then(|| HttpConn::connect(addr));
                for i in 0..EACH {
                    let body = format!("{p}:{i}");
                    let r = match kept.as_mut() {
                        Some(c) => sse::post_text_on(c, &token, body.as_bytes()),
                        None => sse::post_text(addr, &token, body.as_bytes()),
                    };
                    assert_status(&r, 204, &body);
                }
            })
        })
        .collect();
    let mut next = [0usize; POSTERS];
    for k in 0..POSTERS * EACH {
        let ev = s.event();
        assert_eq!(ev.seq(), Some(k as u64 + 1), "{ev:?}");
        let (p, i) = ev
            .data
            .split_once(':')
            .and_then(|(p, i)| Some((p.parse::<usize>().ok()?, i.parse::<usize>().ok()?)))
            .unwrap_or_else(|| panic!("not a test message: {ev:?}"));
        assert_eq!(i, next[p], "poster {p}'s messages out of order");
        next[p] += 1;
    }
    for p in posters {
        p.join().expect("poster");
    }
    assert_eq!(next, [EACH; POSTERS]);
    assert_eq!(s.event_or_none(), None, "nothing more");
}

#[test]
fn an_idle_stream_gets_a_keep_alive_comment_after_15_s() {
    let (_e, lb) = fallback(&[]);
    let mut s = stream(lb.http());
    expect_open(&mut s);
    let opened = Instant::now();
    while s.comments == 0 && opened.elapsed() < Duration::from_secs(18) {
        match s.next(Duration::from_millis(250)) {
            Next::Timeout => {}
            other => panic!("{other:?} on an idle stream"),
        }
    }
    let after = opened.elapsed();
    assert_eq!(s.comments, 1, "no keep-alive within {after:?}");
    assert!(
        after >= Duration::from_secs(14),
        "a keep-alive after {after:?}"
    );
}
