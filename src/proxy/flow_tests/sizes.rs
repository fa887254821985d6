//! What an idle WebSocket session's tasks weigh: the connection task's
//! future (kept for the connection's whole life) and the relay futures
//! boxed beside it (kept for the session's), for a plain client.

use std::rc::Rc;

use monoio::net::TcpStream;

use super::{no_pings, run, Backend, Lb};
use crate::proxy::backend::BackendConn;
use crate::proxy::session::WsSession;
use crate::proxy::{serve_client, tunnel, ws_relay, ClientConn, ListenerKind};

#[test]
fn an_idle_sessions_futures_stay_small() {
    run(async {
        let b = Backend::bind();
        let lb = Lb::new(&[&b.url], no_pings);
        let addr = lb.front.local_addr().expect("front address");
        let _c1 = TcpStream::connect(addr).await.expect("connect");
        let (server, peer) = lb.front.accept().await.expect("accept");
        let task = serve_client(lb.env.clone(), server, peer, ListenerKind::Plain);
        let task_size = std::mem::size_of_val(&task);
        drop(task);
        let _c2 = TcpStream::connect(addr).await.expect("connect");
        let (server, peer) = lb.front.accept().await.expect("accept");
        let entry = lb.env.conns.insert();
        let handle = entry.handle.clone();
        let mut client = ClientConn::new(server, peer, ListenerKind::Plain, handle, 512, None);
        let backend_addr = b.url.trim_start_matches("http://").parse().expect("addr");
        let session = Rc::new(WsSession::new(
            1,
            peer,
            std::sync::Arc::from("b"),
            "/".into(),
            None,
            false,
        ));
        let conn = BackendConn::plain_for_test(
            TcpStream::connect(backend_addr).await.expect("connect"),
            backend_addr,
        );
        let inspect = ws_relay::relay(&lb.env, &mut client, conn, false, &session, None);
        let inspect_size = std::mem::size_of_val(&inspect);
        drop(inspect);
        let conn = BackendConn::plain_for_test(
            TcpStream::connect(backend_addr).await.expect("connect"),
            backend_addr,
        );
        let tunnel = tunnel::relay(&lb.env, &mut client, conn, &session);
        let tunnel_size = std::mem::size_of_val(&tunnel);
        drop(tunnel);
        eprintln!(
            "connection task {task_size} B, inspect relay {inspect_size} B, tunnel relay {tunnel_size} B, \
             session {} B, client {} B",
            std::mem::size_of::<WsSession>(),
            std::mem::size_of_val(&client),
        );
        // Bounds for this (debug) build, a little above what it measured
        // (560, 3,168 and 1,280 B; a release build's are smaller): a
        // change that grows them has to say why. The connection task holds
        // no timer (its shutdown's are boxed).
        assert!(task_size <= 640, "connection task {task_size} B");
        assert!(inspect_size <= 3328, "inspect relay {inspect_size} B");
        assert!(tunnel_size <= 1408, "tunnel relay {tunnel_size} B");
    });
}

#[test]
#[allow(unreachable_code, clippy::diverging_sub_expression)]
fn the_request_loop_fits_its_allocation_class() {
    fn layout_of<T>(_: impl FnOnce() -> T) -> usize {
        std::mem::size_of::<T>()
    }
    // Boxed for every connection's HTTP life (keep-alive ones included):
    // 5,120 B is one of the allocator's size classes, and 8 bytes more
    // cost a 6,144-byte block. (The fallback once grew it to 5,376 B:
    // +0.8 KiB per session in the idle-memory A/B.)
    let n = layout_of(|| crate::proxy::http_flow::run::<TcpStream>(todo!(), todo!()));
    assert!(n <= 5120, "the request loop's future is {n} B");
}
