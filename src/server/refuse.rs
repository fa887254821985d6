//! Connections refused at accept because their address is at
//! `--max-connections-per-ip`: a 429 on plain listeners, written without
//! reading the request and bounded in time and in number per worker.

use std::cell::Cell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use monoio::io::AsyncWriteRent;
use monoio::net::TcpStream;

use crate::proto::http::error_response;
use crate::proxy::ListenerKind;
use crate::rt::io::{drain_briefly, write_static, ReadBuf, MIN_READ};
use crate::rt::throttle::Throttle;

/// A worker's state for refusals: the answers under way and the throttle
/// of its warnings.
pub(crate) struct Refusals {
    answering: Cell<usize>,
    log: Throttle,
}

impl Refusals {
    pub(crate) fn new() -> Self {
        Refusals {
            answering: Cell::new(0),
            log: Throttle::new(1000),
        }
    }
}

impl Default for Refusals {
    fn default() -> Self {
        Self::new()
    }
}

/// A client whose address already has `limit` connections open: on a plain
/// listener a 429 without reading the request, on TLS a plain close (a 429
/// would need a handshake first, which is the cost being refused). Returns
/// whether a 429 went out.
pub(super) async fn refuse_over_ip_limit(
    refusals: &Refusals,
    refused_total: &AtomicU64,
    worker: usize,
    mut stream: TcpStream,
    ip: IpAddr,
    limit: usize,
    kind: ListenerKind,
) -> bool {
    refused_total.fetch_add(1, Ordering::Relaxed);
    if let Some(held) = refusals.log.allow() {
        tracing::warn!(
            worker,
            %ip,
            limit,
            held,
            "client address at --max-connections-per-ip: connection refused"
        );
    }
    // Answering takes up to twice REFUSAL_GRACE: past MAX_REFUSING such
    // answers at once on this worker, refused connections are just closed.
    let answering = &refusals.answering;
    if kind == ListenerKind::Plain && answering.get() < MAX_REFUSING {
        answering.set(answering.get() + 1);
        let _answering = RefusingGuard(answering);
        let answered = monoio::time::timeout(
            REFUSAL_GRACE,
            write_static(&mut stream, error_response(429)),
        )
        .await;
        if matches!(answered, Ok(Ok(()))) {
            let _ = stream.shutdown().await;
            let mut buf = ReadBuf::with_capacity(MIN_READ);
            drain_briefly(&mut stream, &mut buf, 16 * 1024, REFUSAL_GRACE).await;
            return true;
        }
    }
    false
}

/// How long a refused connection may take to be answered, and then to be
/// drained before it is closed.
const REFUSAL_GRACE: Duration = Duration::from_millis(250);
/// Refused connections being answered at once, per worker.
const MAX_REFUSING: usize = 64;

/// Counts one refused connection being answered, until dropped.
struct RefusingGuard<'a>(&'a Cell<usize>);

impl Drop for RefusingGuard<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}
