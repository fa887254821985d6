//! The inspect relay when all goes well: the upgrade relayed with the right
//! accept key, messages both ways (large, fragmented, with control frames
//! between fragments), and the close handshake started by either side.

use std::sync::atomic::Ordering::Relaxed;

use super::ws_end::upgrade_with;
use super::{ended, no_pings, run, upgrade, Backend, Lb};
use crate::proto::ws::{accept_key, write_frame, OpCode};
use crate::proxy::conns::{ConnCommand, ConnKind};

#[test]
fn the_upgrade_is_relayed_and_the_session_holds_the_backend() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], no_pings);
        let s = upgrade(&lb, &b).await;
        assert_eq!(s.request.path, "/chat");
        assert_eq!(s.request.header("origin").as_deref(), Some("http://a"));
        assert_eq!(s.request.header("upgrade").as_deref(), Some("websocket"));
        let key = s.request.header("sec-websocket-key").expect("a key");
        assert_eq!(
            s.response.header("sec-websocket-accept"),
            Some(accept_key(key.as_bytes()))
        );
        assert_eq!(s.response.status, 101);
        // One live session, counted on its backend until it ends.
        let stats = lb.stats(&b.url);
        assert_eq!(stats.active.load(Relaxed), 1);
        // The connection table knows it as a WebSocket (the filter sees
        // every live connection; nothing is sent).
        let sessions = std::cell::Cell::new(0);
        lb.env.conns.broadcast(ConnCommand::Drain, |h| {
            sessions.set(sessions.get() + u32::from(h.kind() == ConnKind::WebSocket));
            false
        });
        assert_eq!((lb.env.conns.len(), sessions.get()), (1, 1));
        drop(s.client);
        drop(s.backend);
        ended(s.task).await;
        assert_eq!(stats.active.load(Relaxed), 0);
        assert_eq!(stats.failures_total.load(Relaxed), 0);
    });
}

#[test]
fn messages_go_both_ways_unchanged() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], no_pings);
        let mut s = upgrade(&lb, &b).await;
        s.client.send(OpCode::Text, "hello wörld".as_bytes()).await;
        let m = s.backend.recv().await;
        assert_eq!(
            (m.opcode, m.payload.as_slice()),
            (OpCode::Text, "hello wörld".as_bytes())
        );
        s.backend.send(OpCode::Binary, &[0, 1, 2, 255]).await;
        let m = s.client.recv().await;
        assert_eq!(
            (m.opcode, m.payload.as_slice()),
            (OpCode::Binary, &[0, 1, 2, 255][..])
        );
        // Larger than one relay read, each way.
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        s.client.send(OpCode::Binary, &big).await;
        let m = s.backend.recv().await;
        assert!(m.payload == big, "the client's large message changed");
        s.backend.send(OpCode::Binary, &big).await;
        let m = s.client.recv().await;
        assert!(m.payload == big, "the backend's large message changed");
        // A client ping reaches the backend, whose pong reaches the client.
        s.client.send(OpCode::Ping, b"are you there").await;
        let m = s.backend.recv().await;
        assert_eq!(
            (m.opcode, m.payload.as_slice()),
            (OpCode::Ping, &b"are you there"[..])
        );
        s.backend.send(OpCode::Pong, b"are you there").await;
        let m = s.client.recv().await;
        assert_eq!(
            (m.opcode, m.payload.as_slice()),
            (OpCode::Pong, &b"are you there"[..])
        );
    });
}

#[test]
fn a_fragmented_message_with_a_ping_between_fragments_is_relayed() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], no_pings);
        let mut s = upgrade(&lb, &b).await;
        s.client.frame(false, OpCode::Text, b"hel").await;
        s.client.frame(true, OpCode::Ping, b"mid").await;
        s.client.frame(false, OpCode::Continuation, b"lo ").await;
        s.client
            .frame(true, OpCode::Continuation, "wörld".as_bytes())
            .await;
        let ping = s.backend.recv().await;
        assert_eq!(
            (ping.opcode, ping.payload.as_slice()),
            (OpCode::Ping, &b"mid"[..])
        );
        let m = s.backend.recv().await;
        assert_eq!(
            (m.opcode, m.payload.as_slice()),
            (OpCode::Text, "hello wörld".as_bytes())
        );
        // And the other way, all fragments in one write.
        let mut frames = s.backend.frame_bytes(false, OpCode::Binary, &[1; 10]);
        frames.extend(s.backend.frame_bytes(false, OpCode::Continuation, &[2; 20]));
        frames.extend(s.backend.frame_bytes(true, OpCode::Continuation, &[3; 30]));
        s.backend.conn.send(&frames).await;
        let m = s.client.recv().await;
        assert_eq!(m.opcode, OpCode::Binary);
        assert_eq!(m.payload, [[1; 10].as_slice(), &[2; 20], &[3; 30]].concat());
    });
}

#[test]
fn a_close_from_the_client_is_answered_by_the_backend_and_ends_the_session() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], no_pings);
        let mut s = upgrade(&lb, &b).await;
        s.client.close(1000, "done").await;
        assert_eq!(s.backend.recv_close().await, (1000, "done".to_string()));
        s.backend.close(1000, "done too").await;
        assert_eq!(s.client.recv_close().await, (1000, "done too".to_string()));
        // The balancer ends both connections once the handshake is done.
        s.all_closed().await;
        assert_eq!(lb.stats(&b.url).active.load(Relaxed), 0);
    });
}

#[test]
fn a_close_from_the_backend_is_answered_by_the_client_and_ends_the_session() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], no_pings);
        let mut s = upgrade(&lb, &b).await;
        s.backend.send(OpCode::Text, b"last words").await;
        s.backend.close(4000, "app shutting down").await;
        let m = s.client.recv().await;
        assert_eq!(m.payload, b"last words");
        assert_eq!(
            s.client.recv_close().await,
            (4000, "app shutting down".to_string())
        );
        s.client.close(4000, "").await;
        assert_eq!(s.backend.recv_close().await, (4000, String::new()));
        s.backend.closed().await;
        s.client.closed().await;
        ended(s.task).await;
    });
}

#[test]
fn frames_sent_right_behind_the_handshake_are_relayed_after_it() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], no_pings);
        // The client's first frame rides with its upgrade request, the
        // backend's with its 101.
        let mut up = Vec::new();
        write_frame(
            &mut up,
            true,
            OpCode::Text,
            Some([9, 8, 7, 6]),
            b"eager client",
        );
        let mut down = Vec::new();
        write_frame(&mut down, true, OpCode::Text, None, b"eager backend");
        let mut s = upgrade_with(&lb, &b, &up, &down).await;
        let m = s.backend.recv().await;
        assert_eq!(
            (m.opcode, m.payload.as_slice()),
            (OpCode::Text, &b"eager client"[..])
        );
        let m = s.client.recv().await;
        assert_eq!(
            (m.opcode, m.payload.as_slice()),
            (OpCode::Text, &b"eager backend"[..])
        );
    });
}

#[test]
fn an_idle_session_gives_its_read_buffers_back_to_the_worker() {
    for tunnel in [false, true] {
        run(async move {
            let b = Backend::bind();
            let lb = Lb::new(&[&b.url], |cfg| {
                no_pings(cfg);
                if tunnel {
                    cfg.ws_mode = crate::config::WsMode::Tunnel;
                }
            });
            let mut s = upgrade(&lb, &b).await;
            assert_eq!(lb.env.reads.free_len(), 0, "nothing lent yet");
            let big = vec![7u8; 50_000];
            s.client.send(OpCode::Binary, &big).await;
            assert!(s.backend.recv().await.payload == big);
            s.backend.send(OpCode::Text, b"back").await;
            assert_eq!(s.client.recv().await.payload, b"back");
            // Both directions wait again holding nothing: what they were
            // lent is free for the worker's other sessions.
            monoio::time::sleep(std::time::Duration::from_millis(20)).await;
            let free = lb.env.reads.free_len();
            assert!((1..=2).contains(&free), "tunnel {tunnel}: {free} free");
            s.client.send(OpCode::Text, b"again").await;
            assert_eq!(s.backend.recv().await.payload, b"again");
            drop(s.client);
            drop(s.backend);
            ended(s.task).await;
        });
    }
}
