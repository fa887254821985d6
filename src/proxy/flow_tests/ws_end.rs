//! The flow tests' WebSocket ends: frames written with the crate's frame
//! and close writers (masked from the client), whole messages read back
//! with `MessageReader`, and the upgrade through the flow checked on both
//! sides with the handshake helpers.

use monoio::task::JoinHandle;

use super::conn::{fields, Conn, Req, Resp};
use super::{Backend, Lb};
use crate::config::ServeConfig;
use crate::proto::ws::{
    accept_key, check_client_request, check_server_response, generate_client_key,
    parse_close_payload, write_client_request, write_close_frame, write_frame,
    write_server_response, FrameLimits, Message, MessageReader, OpCode, ScannerConfig,
};

/// One end of a WebSocket session: frames out (masked from the client),
/// whole messages in.
pub struct WsEnd {
    pub conn: Conn,
    reader: MessageReader,
    client: bool,
}

impl WsEnd {
    pub fn new(conn: Conn, client: bool) -> WsEnd {
        // A client reads unmasked frames, a backend masked ones.
        let limits = if client {
            FrameLimits::client(1 << 20)
        } else {
            FrameLimits::server(1 << 20)
        };
        WsEnd {
            conn,
            reader: MessageReader::new(ScannerConfig {
                limits,
                max_message: 0,
                validate_utf8: true,
            }),
            client,
        }
    }

    fn key(&self) -> Option<[u8; 4]> {
        self.client.then(|| fastrand::u32(..).to_be_bytes())
    }

    /// One frame as this side sends it.
    pub fn frame_bytes(&self, fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame(&mut out, fin, op, self.key(), payload);
        out
    }

    pub async fn frame(&mut self, fin: bool, op: OpCode, payload: &[u8]) {
        let bytes = self.frame_bytes(fin, op, payload);
        self.conn.send(&bytes).await;
    }

    pub async fn send(&mut self, op: OpCode, payload: &[u8]) {
        self.frame(true, op, payload).await;
    }

    pub async fn close(&mut self, code: u16, reason: &str) {
        let mut out = Vec::new();
        write_close_frame(&mut out, code, reason, self.key());
        self.conn.send(&out).await;
    }

    /// The next whole message or control frame.
    pub async fn recv(&mut self) -> Message {
        for _ in 0..10_000 {
            if !self.conn.buf.is_empty() {
                let (n, m) = self
                    .reader
                    .feed(&self.conn.buf)
                    .unwrap_or_else(|e| panic!("{}: bad frames: {e}", self.conn.name));
                self.conn.buf.drain(..n);
                if let Some(m) = m {
                    return m;
                }
                if !self.conn.buf.is_empty() {
                    continue;
                }
            }
            if self.conn.read_more().await == 0 {
                panic!("{}: closed while waiting for a message", self.conn.name);
            }
        }
        panic!("{}: no whole message", self.conn.name);
    }

    /// The next frame must be a close: its code and reason.
    pub async fn recv_close(&mut self) -> (u16, String) {
        let m = self.recv().await;
        assert_eq!(m.opcode, OpCode::Close, "{}: {m:?}", self.conn.name);
        let (code, reason) = parse_close_payload(&m.payload)
            .expect("a valid close payload")
            .expect("a close code");
        (code, reason.to_string())
    }

    /// The peer closes without another byte.
    pub async fn closed(&mut self) {
        self.conn.closed().await;
    }
}

/// An upgraded session through the flow: both ends and the connection task.
pub struct Session {
    pub client: WsEnd,
    pub backend: WsEnd,
    pub task: JoinHandle<()>,
    /// What the backend received as the upgrade request.
    pub request: Req,
    /// What the client received as the 101.
    pub response: Resp,
}

impl Session {
    /// Both sockets closed and the connection task ended.
    pub async fn all_closed(mut self) {
        self.client.closed().await;
        self.backend.closed().await;
        super::ended(self.task).await;
    }
}

/// Opens a WebSocket session: the client's upgrade goes through the flow,
/// the backend checks it and accepts, the client checks the 101.
pub async fn upgrade(lb: &Lb, backend: &Backend) -> Session {
    upgrade_with(lb, backend, &[], &[]).await
}

/// The same, with `client_early` sent in the same write as the upgrade
/// request and `backend_early` in the same write as the 101.
pub async fn upgrade_with(
    lb: &Lb,
    backend: &Backend,
    client_early: &[u8],
    backend_early: &[u8],
) -> Session {
    let (mut client, task) = lb.connect().await;
    let key = generate_client_key();
    let mut req = Vec::new();
    write_client_request(
        &mut req,
        "lb.test",
        "/chat",
        &key,
        &[("Origin", "http://a")],
    );
    req.extend_from_slice(client_early);
    client.send(&req).await;
    let mut b = backend.accept().await;
    let request = b.request().await;
    assert!(
        b.buf.is_empty(),
        "bytes behind the upgrade went before the 101"
    );
    let got = fields(&request.head);
    let headers: Vec<httparse::Header<'_>> = got
        .iter()
        .map(|(name, value)| httparse::Header { name, value })
        .collect();
    let hs = check_client_request("GET", 1, &headers).expect("a valid upgrade reached the backend");
    assert_eq!(hs.key, key.as_bytes(), "the key was changed on the way");
    let mut resp = Vec::new();
    write_server_response(&mut resp, &accept_key(hs.key), None, None);
    resp.extend_from_slice(backend_early);
    b.send(&resp).await;
    let response = client.response().await;
    let got = fields(&response.head);
    let headers: Vec<httparse::Header<'_>> = got
        .iter()
        .map(|(name, value)| httparse::Header { name, value })
        .collect();
    check_server_response(response.status, &headers, &key).expect("a valid 101 to the client");
    Session {
        client: WsEnd::new(client, true),
        backend: WsEnd::new(b, false),
        task,
        request,
        response,
    }
}

/// The configuration tweak of a session whose pings stay out of the way.
pub fn no_pings(cfg: &mut ServeConfig) {
    cfg.ws_ping_interval = None;
}
