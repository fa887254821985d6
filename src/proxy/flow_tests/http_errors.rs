//! HTTP exchanges that go wrong: an early answer before a large body, a
//! backend that stalls (504) or closes (502, retried when safe), backends
//! refused or missing (502, 503), a pooled connection the backend closed,
//! a client too slow with its head (408), and a drain reaching idle and
//! busy keep-alive connections.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::{dead_backend_url, ended, ok_response, run, Backend, Lb};
use crate::pool::clock::now_ms;
use crate::proxy::conns::ConnCommand;

#[test]
fn an_early_answer_before_a_large_body_reaches_the_client_whole_and_is_no_failure() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], |_| {});
        let (mut c, task) = lb.connect().await;
        let mut first =
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n".to_vec();
        first.extend_from_slice(&[b'x'; 64 * 1024]);
        c.send(&first).await;
        let mut bc = b.accept().await;
        let head = bc.request_head(false).await;
        assert_eq!(head.header("content-length").as_deref(), Some("1048576"));
        // It answers without reading the body, and closes with the body
        // unread (a reset toward the balancer).
        bc.send(&ok_response(413, b"too large, sorry", false)).await;
        drop(bc);
        let r = c.response().await;
        assert_eq!(r.status, 413);
        assert_eq!(r.body, b"too large, sorry");
        c.closed().await;
        drop(c);
        ended(task).await;
        let stats = lb.stats(&b.url);
        assert_eq!(stats.failures_total.load(Relaxed), 0);
        assert_eq!(stats.consecutive_failures.load(Relaxed), 0);
        assert_eq!(stats.ejected_until_ms.load(Relaxed), 0);
        assert_eq!(lb.available(), 1);
    });
}

/// RFC 9112 section 9.6: the close that follows is announced in the head.
#[test]
fn an_early_answer_before_the_body_ended_announces_the_close() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], |_| {});
        let (mut c, _task) = lb.connect().await;
        let mut first =
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".to_vec();
        first.extend_from_slice(&[b'x'; 1000]);
        c.send(&first).await;
        let mut bc = b.accept().await;
        bc.request_head(false).await;
        bc.send(&ok_response(413, b"no", false)).await;
        let r = c.response().await;
        assert_eq!(r.status, 413);
        c.closed().await;
        assert_eq!(
            r.header("connection").as_deref(),
            Some("close"),
            "{}",
            r.head
        );
    });
}

/// A final status instead of 100 Continue: the client may never send the
/// body, so the connection closes after the answer, and the head says so.
#[test]
fn a_final_answer_to_expect_continue_before_the_body_announces_the_close() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], |_| {});
        let (mut c, task) = lb.connect().await;
        c.send(b"PUT /f HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            .await;
        let mut bc = b.accept().await;
        bc.request_head(false).await;
        bc.send(&ok_response(401, b"who?", true)).await;
        let r = c.response().await;
        assert_eq!((r.status, r.body.as_slice()), (401, &b"who?"[..]));
        assert_eq!(
            r.header("connection").as_deref(),
            Some("close"),
            "{}",
            r.head
        );
        c.closed().await;
        // The client closes too (as told), which ends the balancer's linger.
        drop(c);
        ended(task).await;
        assert!(bc.rest_until_closed().await.is_empty());
        assert_eq!(lb.stats(&b.url).failures_total.load(Relaxed), 0);
    });
}

#[test]
fn a_backend_that_stalls_past_the_backend_timeout_gets_the_client_504() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], |cfg| {
            cfg.backend_timeout = Duration::from_millis(200);
        });
        let (mut c, task) = lb.connect().await;
        let start = Instant::now();
        c.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut bc = b.accept().await;
        bc.request().await;
        // The backend holds the connection and never answers.
        let r = c.response().await;
        let took = start.elapsed();
        assert_eq!(r.status, 504, "{}", r.head);
        assert_eq!(r.header("connection").as_deref(), Some("close"));
        assert!(took >= Duration::from_millis(200), "took {took:?}");
        assert!(took < Duration::from_millis(1500), "took {took:?}");
        c.closed().await;
        ended(task).await;
        // The balancer dropped its side of the backend connection.
        assert!(bc.rest_until_closed().await.is_empty());
    });
}

#[test]
fn a_post_whose_backend_closes_unanswered_gets_502_and_is_not_retried() {
    run(async {
        let (a, b) = (Backend::bind(), Backend::bind());
        let lb = Lb::new(&[&a.url, &b.url], |_| {});
        let (mut c, task) = lb.connect().await;
        c.send(b"POST /pay HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nx=1")
            .await;
        let (mut bc, failing) = monoio::select! {
            bc = a.accept() => (bc, &a),
            bc = b.accept() => (bc, &b),
        };
        assert_eq!(bc.request().await.body, b"x=1");
        drop(bc);
        let r = c.response().await;
        assert_eq!(r.status, 502, "{}", r.head);
        c.closed().await;
        ended(task).await;
        let tries: u64 = [&a, &b]
            .iter()
            .map(|x| lb.stats(&x.url).requests_total.load(Relaxed))
            .sum();
        assert_eq!(tries, 1, "a POST was sent twice");
        let stats = lb.stats(&failing.url);
        assert_eq!(stats.failures_total.load(Relaxed), 1);
        assert!(stats.ejected_until_ms.load(Relaxed) > now_ms());
    });
}

#[test]
fn a_get_whose_backend_closes_unanswered_is_retried_on_another_backend() {
    run(async {
        let (a, b) = (Backend::bind(), Backend::bind());
        let lb = Lb::new(&[&a.url, &b.url], |_| {});
        let (mut c, _task) = lb.connect().await;
        c.send(b"GET /item HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let (mut bc, failing, other) = monoio::select! {
            bc = a.accept() => (bc, &a, &b),
            bc = b.accept() => (bc, &b, &a),
        };
        assert_eq!(bc.request().await.path, "/item");
        drop(bc);
        let mut oc = other.accept().await;
        assert_eq!(oc.request().await.path, "/item");
        oc.send(&ok_response(200, b"from the other", true)).await;
        let r = c.response().await;
        assert_eq!((r.status, r.body.as_slice()), (200, &b"from the other"[..]));
        let bad = lb.stats(&failing.url);
        assert_eq!(bad.failures_total.load(Relaxed), 1);
        assert!(bad.ejected_until_ms.load(Relaxed) > now_ms());
        assert_eq!(lb.stats(&other.url).failures_total.load(Relaxed), 0);
        assert_eq!(lb.available(), 1, "the failing backend is still picked");
    });
}

#[test]
fn a_refused_backend_gets_502_and_is_ejected_then_503() {
    run(async {
        let dead = dead_backend_url();
        let lb = Lb::new(&[&dead], |_| {});
        let (mut c, _task) = lb.connect().await;
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let r = c.response().await;
        assert_eq!(r.status, 502, "{}", r.head);
        c.closed().await;
        assert_eq!(lb.available(), 0, "a refusing backend was not ejected");
        // While it is out, nothing is tried: 503.
        let (mut c, _task) = lb.connect().await;
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let r = c.response().await;
        assert_eq!(r.status, 503, "{}", r.head);
        c.closed().await;
        assert_eq!(lb.stats(&dead).failures_total.load(Relaxed), 1);
    });
}

#[test]
fn a_client_stalling_mid_head_gets_408_and_the_close() {
    run(async {
        let lb = Lb::new(&[], |cfg| {
            cfg.client_header_timeout = Duration::from_millis(200);
        });
        let (mut c, task) = lb.connect().await;
        let start = Instant::now();
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n").await;
        let r = c.response().await;
        let took = start.elapsed();
        assert_eq!(r.status, 408, "{}", r.head);
        assert_eq!(r.header("connection").as_deref(), Some("close"));
        assert!(took >= Duration::from_millis(200), "took {took:?}");
        assert!(took < Duration::from_millis(1500), "took {took:?}");
        c.closed().await;
        ended(task).await;
    });
}

#[test]
fn a_client_that_sends_nothing_is_closed_without_an_answer() {
    run(async {
        let lb = Lb::new(&[], |cfg| {
            cfg.client_header_timeout = Duration::from_millis(150);
        });
        let (mut c, task) = lb.connect().await;
        let start = Instant::now();
        c.closed().await;
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(150), "took {took:?}");
        assert!(took < Duration::from_millis(1500), "took {took:?}");
        ended(task).await;
    });
}

#[test]
fn a_drain_closes_an_idle_connection_and_lets_a_busy_one_finish() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], |_| {});
        // Idle: kept alive after a first request. (A connection that has
        // not sent its first request yet is served, not closed: it may
        // have been accepted just as a successor took over.)
        let (mut idle, idle_task) = lb.connect().await;
        idle.send(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut bc = b.accept().await;
        bc.request().await;
        bc.send(&ok_response(200, b"first", true)).await;
        assert_eq!(idle.response().await.body, b"first");
        let (mut busy, busy_task) = lb.connect().await;
        busy.send(b"GET /work HTTP/1.1\r\nHost: x\r\n\r\n").await;
        // The kept-alive backend connection carries it.
        assert_eq!(bc.request().await.path, "/work");
        // The worker's drain, as it does it.
        lb.env.draining.fire();
        lb.env.conns.broadcast(ConnCommand::Drain, |_| true);
        idle.closed().await;
        ended(idle_task).await;
        bc.send(&ok_response(200, b"done", true)).await;
        let r = busy.response().await;
        assert_eq!((r.status, r.body.as_slice()), (200, &b"done"[..]));
        assert_eq!(r.header("connection").as_deref(), Some("close"));
        busy.closed().await;
        ended(busy_task).await;
        assert!(lb.env.conns.is_empty());
    });
}

#[test]
fn a_pooled_connection_the_backend_closed_is_replaced_without_blame() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], |_| {});
        let (mut c, _task) = lb.connect().await;
        c.send(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut first = b.accept().await;
        first.request().await;
        first.send(&ok_response(200, b"one", true)).await;
        assert_eq!(c.response().await.body, b"one");
        // The backend lets its kept-alive connection go.
        drop(first);
        c.send(b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut fresh = b.accept().await;
        assert_eq!(fresh.request().await.path, "/2");
        fresh.send(&ok_response(200, b"two", true)).await;
        let r = c.response().await;
        assert_eq!((r.status, r.body.as_slice()), (200, &b"two"[..]));
        let stats = lb.stats(&b.url);
        assert_eq!(stats.failures_total.load(Relaxed), 0);
        assert_eq!(lb.available(), 1);
    });
}
