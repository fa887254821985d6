//! HTTP exchanges that go well: a request relayed and the backend
//! connection kept for the next one, pipelined requests answered in order,
//! bodies (chunked and large) relayed byte-exact, interim 1xx responses.

use std::sync::atomic::Ordering::Relaxed;

use super::{ended, ok_response, run, Backend, Lb};
use crate::proto::http::{Method, CONTINUE_100};

#[test]
fn a_get_is_relayed_and_the_backend_connection_serves_the_next_request() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], |_| {});
        let (mut c, task) = lb.connect().await;
        c.send(b"GET /one?x=1 HTTP/1.1\r\nHost: app.test\r\nUser-Agent: t\r\n\r\n")
            .await;
        let mut bc = b.accept().await;
        let req = bc.request().await;
        assert_eq!((req.method, req.path.as_str()), (Method::Get, "/one?x=1"));
        assert_eq!(req.header("host").as_deref(), Some("app.test"));
        assert_eq!(req.header("user-agent").as_deref(), Some("t"));
        assert_eq!(req.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
        bc.send(&ok_response(200, b"first", true)).await;
        let r = c.response().await;
        assert_eq!((r.status, r.body.as_slice()), (200, &b"first"[..]));

        // The next request on the client connection comes over the same
        // backend connection (no new accept: the read below would time out).
        c.send(b"GET /two HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
        let req = bc.request().await;
        assert_eq!(req.path, "/two");
        bc.send(&ok_response(200, b"second", true)).await;
        let r = c.response().await;
        assert_eq!((r.status, r.body.as_slice()), (200, &b"second"[..]));
        assert_eq!(r.header("connection"), None, "{}", r.head);

        drop(c);
        ended(task).await;
        assert!(lb.env.conns.is_empty());
        assert_eq!(
            lb.env.idle.len(),
            1,
            "the backend connection was not parked"
        );
        let stats = lb.stats(&b.url);
        assert_eq!(stats.requests_total.load(Relaxed), 2);
        assert_eq!(stats.active.load(Relaxed), 0);
        assert_eq!(stats.failures_total.load(Relaxed), 0);
    });
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], |_| {});
        let (mut c, _task) = lb.connect().await;
        c.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let mut bc = b.accept().await;
        let req = bc.request().await;
        assert_eq!(req.path, "/a");
        assert!(
            bc.buf.is_empty(),
            "the second request went before the first answer"
        );
        bc.send(&ok_response(200, b"answer a", true)).await;
        let req = bc.request().await;
        assert_eq!(req.path, "/b");
        bc.send(&ok_response(201, b"answer b", true)).await;
        let first = c.response().await;
        let second = c.response().await;
        assert_eq!(
            (first.status, first.body.as_slice()),
            (200, &b"answer a"[..])
        );
        assert_eq!(
            (second.status, second.body.as_slice()),
            (201, &b"answer b"[..])
        );
    });
}

#[test]
fn chunked_bodies_are_relayed_byte_exact_both_ways() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], |_| {});
        let (mut c, _task) = lb.connect().await;
        let chunks: &[&[u8]] = &[
            b"5;name=value\r\nhello\r\n",
            b"6\r\n world\r\n",
            b"0\r\nX-Trailer: t\r\n\r\n",
        ];
        c.send(b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await;
        c.send(chunks[0]).await;
        let mut bc = b.accept().await;
        let head = bc.request_head(false).await;
        assert_eq!(head.header("transfer-encoding").as_deref(), Some("chunked"));
        // The rest of the body comes while the backend is reading it.
        c.send(&[chunks[1], chunks[2]].concat()).await;
        let body = bc.exact(chunks.concat().len()).await;
        assert_eq!(body, chunks.concat(), "the request body changed");

        let down: &[&[u8]] = &[b"3\r\nabc\r\n", b"A\r\n0123456789\r\n", b"0\r\n\r\n"];
        bc.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await;
        for piece in down {
            bc.send(piece).await;
        }
        let r = c.response().await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("transfer-encoding").as_deref(), Some("chunked"));
        assert_eq!(r.body, down.concat(), "the response body changed");

        // The connection is still good for another request.
        c.send(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(bc.request().await.path, "/next");
        bc.send(&ok_response(204, b"", true)).await;
        assert_eq!(c.response().await.status, 204);
    });
}

#[test]
fn a_large_response_body_arrives_whole() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], |_| {});
        let (mut c, _task) = lb.connect().await;
        c.send(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut bc = b.accept().await;
        bc.request().await;
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let resp = ok_response(200, &body, true);
        // In uneven pieces, so the relay sees partial reads.
        for piece in resp.chunks(70_001) {
            bc.send(piece).await;
        }
        let r = c.response().await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), body.len());
        assert!(r.body == body, "the body changed on the way");
    });
}

#[test]
fn an_interim_response_comes_before_the_final_one() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], |_| {});
        let (mut c, _task) = lb.connect().await;
        c.send(b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut bc = b.accept().await;
        bc.request().await;
        bc.send(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n")
            .await;
        let early = c.response().await;
        assert_eq!(early.status, 103);
        assert_eq!(
            early.header("link").as_deref(),
            Some("</s.css>; rel=preload")
        );
        bc.send(&ok_response(200, b"page", true)).await;
        let fin = c.response().await;
        assert_eq!((fin.status, fin.body.as_slice()), (200, &b"page"[..]));
    });
}

#[test]
fn expect_continue_waits_for_the_backend_100_then_sends_the_body() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], |_| {});
        let (mut c, _task) = lb.connect().await;
        c.send(b"PUT /f HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            .await;
        let mut bc = b.accept().await;
        let head = bc.request_head(false).await;
        assert_eq!(head.header("expect").as_deref(), Some("100-continue"));
        bc.send(CONTINUE_100).await;
        let cont = c.response().await;
        assert_eq!(cont.status, 100);
        c.send(b"hello").await;
        assert_eq!(bc.exact(5).await, b"hello");
        bc.send(&ok_response(201, b"stored", true)).await;
        let r = c.response().await;
        assert_eq!((r.status, r.body.as_slice()), (201, &b"stored"[..]));
        // The body went whole before the answer: both connections stay.
        assert_eq!(r.header("connection"), None, "{}", r.head);
        c.send(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(bc.request().await.path, "/next");
        bc.send(&ok_response(200, b"again", true)).await;
        assert_eq!(c.response().await.body, b"again");
    });
}

#[test]
fn a_client_asking_to_close_gets_its_answer_and_then_the_close() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], |_| {});
        let (mut c, task) = lb.connect().await;
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let mut bc = b.accept().await;
        let req = bc.request().await;
        // Hop-by-hop: the client's Connection field is not forwarded.
        assert_eq!(req.header("connection"), None, "{}", req.head);
        bc.send(&ok_response(200, b"bye", true)).await;
        let r = c.response().await;
        assert_eq!(r.body, b"bye");
        assert_eq!(r.header("connection").as_deref(), Some("close"));
        c.closed().await;
        ended(task).await;
    });
}
