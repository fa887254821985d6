//! Accepting without losing a connection when accepting stops: an accept
//! in flight is cancelled and then awaited, never dropped (see
//! [`accept_unless`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use monoio::net::{TcpListener, TcpStream};

/// Accepts one connection unless `stop` resolves first. The accept is
/// cancelled then, and still awaited: a connection the kernel handed over
/// before the cancellation took hold is returned and must be served (the
/// accept future dropped instead, io_uring would complete it unseen and the
/// connection would hang open, unserved, until this process exits: the
/// listening socket may live on in a successor, which would never see it).
/// None once stopped with nothing accepted.
pub(crate) async fn accept_unless(
    listener: &TcpListener,
    stop: impl Future<Output = ()>,
) -> Option<io::Result<(TcpStream, SocketAddr)>> {
    let canceller = monoio::io::Canceller::new();
    let mut accept = std::pin::pin!(listener.cancelable_accept(canceller.handle()));
    let mut stop = std::pin::pin!(stop);
    let stopped = std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(r) = accept.as_mut().poll(cx) {
            return std::task::Poll::Ready(Err(r));
        }
        stop.as_mut().poll(cx).map(Ok)
    })
    .await;
    match stopped {
        Err(accepted) => Some(accepted),
        Ok(()) => {
            let _ = canceller.cancel();
            match accept.await {
                Ok(conn) => Some(Ok(conn)),
                Err(_) => None,
            }
        }
    }
}
