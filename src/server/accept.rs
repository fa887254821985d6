//! Accepting without losing a connection when accepting stops: an accept
//! in flight is cancelled and then awaited, never dropped (see
//! [`Acceptor::accept_unless`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::Poll;

use monoio::io::Canceller;
use monoio::net::{TcpListener, TcpStream};

/// A listener with the canceller its accepts share (one per listener, not
/// one per accept: nothing is allocated per connection).
pub(crate) struct Acceptor {
    listener: TcpListener,
    canceller: Canceller,
}

impl Acceptor {
    pub(crate) fn new(listener: TcpListener) -> Self {
        Acceptor {
            listener,
            canceller: Canceller::new(),
        }
    }

    /// Accepts one connection unless `stop` resolves first. The accept is
    /// cancelled then, and still awaited: a connection the kernel handed
    /// over before the cancellation took hold is returned and must be
    /// served. (Dropped instead, the accept would complete in io_uring
    /// unseen, and the connection would hang open, unserved, until this
    /// process exits, while the listening socket lives on in a successor
    /// that never sees it.) None once stopped with nothing accepted.
    pub(crate) async fn accept_unless(
        &mut self,
        stop: impl Future<Output = ()>,
    ) -> Option<io::Result<(TcpStream, SocketAddr)>> {
        let mut accept = pin!(self.listener.cancelable_accept(self.canceller.handle()));
        let mut stop = pin!(stop);
        let stopped = std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = accept.as_mut().poll(cx) {
                return Poll::Ready(Err(r));
            }
            stop.as_mut().poll(cx).map(Ok)
        })
        .await;
        match stopped {
            Err(accepted) => Some(accepted),
            Ok(()) => {
                self.canceller = std::mem::take(&mut self.canceller).cancel();
                accept.await.ok().map(Ok)
            }
        }
    }
}
