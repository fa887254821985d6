//! WebSocket client pieces for the load generator: the opening handshake over
//! a `Conn`, reading the next data message (answering pings on the way),
//! sending one masked frame, and the closing handshake.

use wslb::proto::ws::frame::{FrameLimits, OpCode};
use wslb::proto::ws::handshake::{
    check_server_response, generate_client_key, write_client_request,
};
use wslb::proto::ws::message::{Message, MessageReader};
use wslb::proto::ws::scanner::ScannerConfig;
use wslb::proto::ws::{close::write_close_frame, frame::write_frame};

use super::conn::{Conn, Failure};
use super::runner::LocalStop;
use super::stats::ErrorKind;
use super::url::Target;

/// Most response headers read from the upgrade response.
const MAX_HEADERS: usize = 32;

/// A message reader for the client side, sized for echoes of `size` bytes.
pub fn reader(size: usize) -> MessageReader {
    let max = (size as u64).max(1 << 20);
    MessageReader::new(ScannerConfig {
        limits: FrameLimits {
            max_payload: max,
            rsv_allowed: 0,
            expect_masked: Some(false),
        },
        max_message: max,
        validate_utf8: true,
    })
}

fn mask() -> [u8; 4] {
    fastrand::u32(..).to_ne_bytes()
}

/// Send the upgrade request and wait for a valid 101.
pub async fn handshake(
    conn: &mut Conn,
    target: &Target,
    stop: &LocalStop,
    slot: usize,
) -> Result<(), Failure> {
    let key = generate_client_key();
    conn.wbuf.clear();
    write_client_request(&mut conn.wbuf, &target.host, &target.path, &key, &[]);
    send(conn, stop, slot).await?;
    loop {
        let done = {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(conn.pending()) {
                Err(_) => return Err(Failure::Error(ErrorKind::Handshake)),
                Ok(httparse::Status::Partial) => None,
                Ok(httparse::Status::Complete(n)) => {
                    let status = resp.code.unwrap_or(0);
                    check_server_response(status, resp.headers, &key)
                        .map_err(|_| Failure::Error(ErrorKind::Handshake))?;
                    Some(n)
                }
            }
        };
        if let Some(n) = done {
            conn.consume(n);
            return Ok(());
        }
        fill(conn, stop, slot).await?;
    }
}

/// Write all of `conn.wbuf`.
pub async fn send(conn: &mut Conn, stop: &LocalStop, slot: usize) -> Result<(), Failure> {
    match stop.or_stop(slot, conn.send()).await {
        None => Err(Failure::Stopped),
        Some(Err(_)) => Err(Failure::Error(ErrorKind::Write)),
        Some(Ok(())) => Ok(()),
    }
}

/// Read more bytes; EOF is an error (`Closed`).
async fn fill(conn: &mut Conn, stop: &LocalStop, slot: usize) -> Result<(), Failure> {
    match stop.or_stop(slot, conn.fill()).await {
        None => Err(Failure::Stopped),
        Some(Err(_)) => Err(Failure::Error(ErrorKind::Read)),
        Some(Ok(0)) => Err(Failure::Error(ErrorKind::Closed)),
        Some(Ok(_)) => Ok(()),
    }
}

/// Send one masked message of `payload`.
pub async fn send_message(
    conn: &mut Conn,
    opcode: OpCode,
    payload: &[u8],
    stop: &LocalStop,
    slot: usize,
) -> Result<(), Failure> {
    conn.wbuf.clear();
    write_frame(&mut conn.wbuf, true, opcode, Some(mask()), payload);
    send(conn, stop, slot).await
}

/// Wait for the next data or close message, answering pings and skipping pongs.
pub async fn next_message(
    conn: &mut Conn,
    reader: &mut MessageReader,
    stop: &LocalStop,
    slot: usize,
) -> Result<Message, Failure> {
    loop {
        if !conn.pending().is_empty() {
            let (n, msg) = reader
                .feed(conn.pending())
                .map_err(|_| Failure::Error(ErrorKind::Protocol))?;
            conn.consume(n);
            match msg {
                Some(m) if m.opcode == OpCode::Ping => {
                    send_message(conn, OpCode::Pong, &m.payload, stop, slot).await?;
                    continue;
                }
                Some(m) if m.opcode == OpCode::Pong => continue,
                Some(m) => return Ok(m),
                None if !conn.pending().is_empty() => continue,
                None => {}
            }
        }
        fill(conn, stop, slot).await?;
    }
}

/// Closing handshake: send Close 1000, wait for the peer's Close and then for
/// its TCP close (the server closes first, so TIME_WAIT lands on its side).
pub async fn close(
    conn: &mut Conn,
    reader: &mut MessageReader,
    stop: &LocalStop,
    slot: usize,
) -> Result<(), Failure> {
    conn.wbuf.clear();
    write_close_frame(&mut conn.wbuf, 1000, "", Some(mask()));
    send(conn, stop, slot).await?;
    loop {
        let m = next_message(conn, reader, stop, slot).await?;
        if m.opcode == OpCode::Close {
            break;
        }
    }
    // Wait (briefly) for the server's FIN; any result ends the session.
    let eof = monoio::time::timeout(std::time::Duration::from_secs(1), async {
        loop {
            match conn.fill().await {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let n = conn.pending().len();
                    conn.consume(n);
                }
            }
        }
    });
    let _ = stop.or_stop(slot, eof).await;
    Ok(())
}
