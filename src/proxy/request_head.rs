//! Waiting for a request head on a client connection: the header timeout
//! (slowloris, and the first request's wait from the accept), the
//! keep-alive idle timeout for later ones, and drain or close commands.

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::conns::{ConnCommand, ConnHandle};
use super::env::Env;
use super::ClientConn;
use crate::proto::http::{parse_request_prepared, Limits, ParsedRequest, PreparedForward};

const HEAD_READ: usize = 8 * 1024;

/// What happened while waiting for a request head.
pub(super) enum HeadWait {
    Request(ParsedRequest),
    /// Close quietly (EOF, idle timeout, drain).
    Close,
    /// Answer this error and close.
    Refuse(u16),
}

/// Reads until a whole request head is buffered (`first`: the first
/// request on this connection).
pub(super) async fn read_head<S>(
    env: &Env,
    client: &mut ClientConn<S>,
    limits: &Limits,
    fwd: &PreparedForward,
    out: &mut Vec<u8>,
    first: bool,
) -> HeadWait
where
    S: AsyncReadRent + AsyncWriteRent,
{
    let cfg = env.cfg();
    let started = monoio::time::Instant::now();
    // A head that has begun must end within the header timeout (slowloris);
    // so must the first one on a connection, begun or not.
    let mut got_bytes = !client.buf.is_empty();
    let mut header_deadline = (got_bytes || first).then(|| started + cfg.client_header_timeout);
    loop {
        out.clear();
        match parse_request_prepared(client.buf.data(), limits, fwd, out) {
            Ok(Some(req)) => return HeadWait::Request(req),
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(peer = %client.peer, error = %e, "refused request");
                return HeadWait::Refuse(e.status());
            }
        }
        let deadline = header_deadline.unwrap_or(started + cfg.idle_timeout);
        let read = client.buf.read_from(&mut client.r, HEAD_READ);
        let outcome = monoio::select! {
            r = client.timer.bound(deadline, read) => Some(r),
            cmd = next_command(&client.handle, first) => {
                // Drain or close: an idle connection just goes.
                let _ = cmd;
                None
            },
        };
        match outcome {
            None => return HeadWait::Close,
            Some(Err(_)) => {
                // Slowloris: a head begun but not finished in time gets a
                // 408; a connection that never sent a byte just closes. The
                // cancelled read took the buffer with it, so `got_bytes` is
                // what tells.
                if got_bytes {
                    return HeadWait::Refuse(408);
                }
                return HeadWait::Close;
            }
            Some(Ok(Ok(0))) | Some(Ok(Err(_))) => return HeadWait::Close,
            Some(Ok(Ok(_))) => {
                got_bytes = true;
                if header_deadline.is_none() {
                    header_deadline =
                        Some(monoio::time::Instant::now() + cfg.client_header_timeout);
                }
            }
        }
    }
}

/// The next command that ends the wait for a head. A drain does not end
/// the wait for a connection's first request: the client connected while
/// the balancer still accepted (its request may be on its way; during an
/// upgrade the process that accepted it is the only one that can answer),
/// so that request is served, with `Connection: close`, within the header
/// timeout and the drain timeout. Idle keep-alive connections go at once.
async fn next_command(handle: &ConnHandle, first: bool) -> ConnCommand {
    loop {
        let cmd = handle.next().await;
        if !(first && cmd == ConnCommand::Drain) {
            return cmd;
        }
    }
}
