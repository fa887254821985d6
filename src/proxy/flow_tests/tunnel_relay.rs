//! The tunnel relay (`ws_mode = Tunnel`): after the 101, bytes both ways
//! with nothing parsed; a close from either side reaches the other and
//! ends the session; a close command ends it without a close frame.

use std::sync::atomic::Ordering::Relaxed;

use super::{ended, run, upgrade, Backend, Lb};
use crate::config::{ServeConfig, WsMode};
use crate::proto::ws::OpCode;
use crate::proxy::conns::{ConnCommand, ConnKind};

fn tunnel(cfg: &mut ServeConfig) {
    cfg.ws_mode = WsMode::Tunnel;
}

#[test]
fn bytes_go_both_ways_verbatim() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], tunnel);
        let mut s = upgrade(&lb, &b).await;
        // An unmasked client frame, which the inspect relay would refuse,
        // goes through as it is: nothing is parsed.
        let unmasked = s.backend.frame_bytes(true, OpCode::Text, b"raw");
        s.client.conn.send(&unmasked).await;
        assert_eq!(s.backend.conn.exact(unmasked.len()).await, unmasked);
        let blob: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
        s.backend.conn.send(&blob).await;
        assert!(s.client.conn.exact(blob.len()).await == blob, "changed");
        s.client.conn.send(&blob).await;
        assert!(s.backend.conn.exact(blob.len()).await == blob, "changed");
        assert_eq!(lb.stats(&b.url).active.load(Relaxed), 1);
    });
}

#[test]
fn a_client_close_reaches_the_backend_and_the_rest_still_comes_back() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], tunnel);
        let mut s = upgrade(&lb, &b).await;
        s.client.conn.send(b"last from the client").await;
        s.client.conn.shutdown().await;
        // The backend gets the bytes, then the end of the stream.
        let got = s.backend.conn.rest_until_closed().await;
        assert_eq!(got, b"last from the client");
        // Its answer still reaches the half-closed client.
        s.backend.conn.send(b"last from the backend").await;
        drop(s.backend);
        assert_eq!(
            s.client.conn.rest_until_closed().await,
            b"last from the backend"
        );
        ended(s.task).await;
        assert_eq!(lb.stats(&b.url).active.load(Relaxed), 0);
    });
}

#[test]
fn a_backend_close_reaches_the_client_and_ends_the_session() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], tunnel);
        let mut s = upgrade(&lb, &b).await;
        s.backend.conn.send(b"bye").await;
        drop(s.backend);
        assert_eq!(s.client.conn.rest_until_closed().await, b"bye");
        drop(s.client);
        ended(s.task).await;
        assert!(lb.env.conns.is_empty());
    });
}

#[test]
fn a_close_command_ends_a_tunnel_without_a_close_frame() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], tunnel);
        let mut s = upgrade(&lb, &b).await;
        lb.env.draining.fire();
        lb.env.conns.broadcast(ConnCommand::Drain, |_| true);
        // A drain alone lets the session run.
        s.client.conn.send(b"still").await;
        assert_eq!(s.backend.conn.exact(5).await, b"still");
        lb.env.conns.broadcast(ConnCommand::Close(1001), |h| {
            h.kind() == ConnKind::WebSocket
        });
        s.all_closed().await;
    });
}
