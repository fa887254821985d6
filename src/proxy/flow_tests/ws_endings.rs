//! The inspect relay's own endings: pings to an idle client (answered or
//! not), messages over the size limit (1009), unmasked client frames
//! (1002), a drain (1001), and a side that vanishes (1012 or 1001).

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::{ended, no_pings, run, upgrade, Backend, Lb};
use crate::config::ServeConfig;
use crate::proto::ws::OpCode;
use crate::proxy::conns::{ConnCommand, ConnKind};

fn quick_pings(cfg: &mut ServeConfig) {
    cfg.ws_ping_interval = Some(Duration::from_millis(60));
    cfg.ws_pong_timeout = Duration::from_millis(200);
}

#[test]
fn an_idle_client_that_answers_pings_keeps_its_session() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], quick_pings);
        let mut s = upgrade(&lb, &b).await;
        let start = Instant::now();
        let mut seen = Vec::new();
        // Three pings, each answered: several pong timeouts go by.
        while seen.len() < 3 {
            let m = s.client.recv().await;
            assert_eq!(m.opcode, OpCode::Ping, "{m:?}");
            assert!(!seen.contains(&m.payload), "the same ping twice");
            s.client.send(OpCode::Pong, &m.payload).await;
            seen.push(m.payload);
        }
        assert!(start.elapsed() >= Duration::from_millis(3 * 60));
        // Still relaying, and the pongs were the balancer's, not forwarded.
        s.client.send(OpCode::Text, b"still here").await;
        let m = s.backend.recv().await;
        assert_eq!(
            (m.opcode, m.payload.as_slice()),
            (OpCode::Text, &b"still here"[..])
        );
        s.backend.send(OpCode::Text, b"good").await;
        let m = s.client.recv().await;
        assert_eq!(
            (m.opcode, m.payload.as_slice()),
            (OpCode::Text, &b"good"[..])
        );
    });
}

#[test]
fn an_unanswered_ping_ends_the_session_with_1001_after_the_pong_timeout() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], quick_pings);
        let mut s = upgrade(&lb, &b).await;
        let ping = s.client.recv().await;
        assert_eq!(ping.opcode, OpCode::Ping);
        let pinged = Instant::now();
        // No pong.
        let (code, _) = s.client.recv_close().await;
        let waited = pinged.elapsed();
        assert_eq!(code, 1001);
        assert!(waited >= Duration::from_millis(150), "after {waited:?}");
        assert!(waited < Duration::from_millis(1000), "after {waited:?}");
        assert_eq!(s.backend.recv_close().await.0, 1001);
        // Both answer the close, so the session ends without waiting out
        // the relay's grace for a side that does not.
        s.client.close(1001, "").await;
        s.backend.close(1001, "").await;
        s.all_closed().await;
        assert_eq!(lb.stats(&b.url).active.load(Relaxed), 0);
    });
}

#[test]
fn a_client_message_over_the_limit_gets_1009_and_the_backend_1001() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], |cfg| {
            no_pings(cfg);
            cfg.max_message_size = 1024;
        });
        let mut s = upgrade(&lb, &b).await;
        s.client.send(OpCode::Binary, &[7; 1024]).await;
        assert_eq!(s.backend.recv().await.payload, [7; 1024], "at the limit");
        s.client.send(OpCode::Binary, &[7; 2000]).await;
        // The backend is closed first; its reply brings the client its code.
        assert_eq!(s.backend.recv_close().await.0, 1001);
        s.backend.close(1001, "").await;
        assert_eq!(s.client.recv_close().await.0, 1009);
        s.all_closed().await;
    });
}

#[test]
fn a_backend_message_over_the_limit_gets_the_backend_1009_and_the_client_1001() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], |cfg| {
            no_pings(cfg);
            cfg.max_message_size = 1024;
        });
        let mut s = upgrade(&lb, &b).await;
        // Over the limit across fragments, not in one frame.
        s.backend.frame(false, OpCode::Text, &[b'a'; 600]).await;
        s.backend
            .frame(true, OpCode::Continuation, &[b'b'; 600])
            .await;
        assert_eq!(s.client.recv_close().await.0, 1001);
        s.client.close(1001, "").await;
        assert_eq!(s.backend.recv_close().await.0, 1009);
        s.all_closed().await;
    });
}

#[test]
fn an_unmasked_client_frame_is_a_protocol_error() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], no_pings);
        let mut s = upgrade(&lb, &b).await;
        // A frame as a server writes it: no mask.
        let unmasked = s.backend.frame_bytes(true, OpCode::Text, b"sneaky");
        s.client.conn.send(&unmasked).await;
        assert_eq!(s.backend.recv_close().await.0, 1001);
        s.backend.close(1001, "").await;
        assert_eq!(s.client.recv_close().await.0, 1002);
        s.client.closed().await;
        ended(s.task).await;
    });
}

#[test]
fn a_drain_lets_sessions_run_until_the_close_command_sends_1001() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], no_pings);
        let mut s = upgrade(&lb, &b).await;
        // The worker's drain, as it does it: the event, then Drain to all.
        lb.env.draining.fire();
        lb.env.conns.broadcast(ConnCommand::Drain, |_| true);
        s.client.send(OpCode::Text, b"during the drain").await;
        assert_eq!(s.backend.recv().await.payload, b"during the drain");
        s.backend.send(OpCode::Text, b"still served").await;
        assert_eq!(s.client.recv().await.payload, b"still served");
        // At the drain timeout, the worker closes what is left.
        lb.env.conns.broadcast(ConnCommand::Close(1001), |h| {
            matches!(h.kind(), ConnKind::WebSocket | ConnKind::Http)
        });
        assert_eq!(s.client.recv_close().await.0, 1001);
        assert_eq!(s.backend.recv_close().await.0, 1001);
        s.client.close(1001, "").await;
        s.backend.close(1001, "").await;
        s.all_closed().await;
        assert!(lb.env.conns.is_empty());
    });
}

#[test]
fn a_backend_that_vanishes_gets_its_client_1012() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], no_pings);
        let mut s = upgrade(&lb, &b).await;
        s.backend.send(OpCode::Text, b"before").await;
        drop(s.backend);
        assert_eq!(s.client.recv().await.payload, b"before");
        assert_eq!(s.client.recv_close().await.0, 1012);
        s.client.close(1000, "").await;
        s.client.closed().await;
        ended(s.task).await;
    });
}

#[test]
fn a_client_that_vanishes_gets_its_backend_1001() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], no_pings);
        let mut s = upgrade(&lb, &b).await;
        s.client.send(OpCode::Text, b"before").await;
        drop(s.client);
        assert_eq!(s.backend.recv().await.payload, b"before");
        assert_eq!(s.backend.recv_close().await.0, 1001);
        s.backend.close(1000, "").await;
        s.backend.closed().await;
        ended(s.task).await;
        assert_eq!(lb.stats(&b.url).failures_total.load(Relaxed), 0);
    });
}
