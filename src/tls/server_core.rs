//! The sans-I/O half of the TLS stream for accepted clients: a rustls
//! unbuffered server connection plus only what must survive between reads.
//! Ciphertext is decrypted in place in a worker-wide scratch buffer; a
//! connection keeps a partial record only while one is partly received,
//! plaintext only while the reader's buffer was too small for a record, and
//! outgoing ciphertext only until the next write sends it. At rest it owns
//! no buffer.

use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;
use std::sync::Arc;

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, UnbufferedStatus};
use rustls::ServerConfig;

use super::server_records::{encode_into, encrypt_into, put, queue_close_notify, Then};

/// Largest TLS record on the wire: a 5-byte header, 2^14 bytes of
/// plaintext and at most 2048 bytes of expansion (RFC 8446 5.2).
pub(crate) const MAX_RECORD: usize = 5 + 16 * 1024 + 2048;

/// Bytes offered to one `recv` beyond what the reader asked for: a whole
/// record fits, so a small reader still makes progress on big records.
const RECV_WINDOW: usize = MAX_RECORD;

/// Worker-wide scratch: the retained partial record is copied to its front
/// and the socket read lands after it. Never held across an await.
const SCRATCH_LEN: usize = 2 * MAX_RECORD + 4096;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH_LEN].into_boxed_slice());
}

/// What a TLS read produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// This many plaintext bytes were copied to the reader.
    Data(usize),
    /// Nothing for the reader yet (a partial record, or only records that
    /// carry no application data).
    Nothing,
    /// The client sent close_notify: the end of its data.
    Closed,
}

/// A rustls unbuffered server connection and the little state a connection
/// keeps between socket reads and writes.
pub(crate) struct TlsCore {
    conn: UnbufferedServerConnection,
    /// Received bytes rustls has not consumed: a partly received record
    /// (empty, with no capacity, at rest).
    partial: Vec<u8>,
    /// Decrypted bytes the last reader had no room for; `plain[plain_at..]`
    /// is still to deliver.
    plain: Vec<u8>,
    plain_at: usize,
    /// Ciphertext rustls produced on its own (handshake flights, tickets,
    /// key updates, alerts): sent before the next application data.
    outgoing: Vec<u8>,
    /// close_notify received.
    peer_closed: bool,
    /// A fatal TLS error: every later read or write fails with it.
    failed: Option<rustls::Error>,
}

impl TlsCore {
    /// A fresh server connection for `config` (SNI certificate choice,
    /// ALPN, tickets and the session cache all come from it).
    pub(crate) fn new(config: Arc<ServerConfig>) -> Result<Self, rustls::Error> {
        Ok(Self {
            conn: UnbufferedServerConnection::new(config)?,
            partial: Vec::new(),
            plain: Vec::new(),
            plain_at: 0,
            outgoing: Vec::new(),
            peer_closed: false,
            failed: None,
        })
    }

    /// Whether the handshake is still under way.
    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The negotiated ALPN protocol, if any.
    pub(crate) fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// Whether a read would return at once without touching the socket
    /// (plaintext waiting, the client's close_notify seen, or an error).
    pub(crate) fn read_is_ready(&self) -> bool {
        self.plain_at < self.plain.len() || self.peer_closed || self.failed.is_some()
    }

    /// Bytes held by this connection right now (for tests of the
    /// at-rest promise).
    #[cfg(test)]
    pub(crate) fn held_bytes(&self) -> usize {
        self.partial.capacity() + self.plain.capacity() + self.outgoing.capacity()
    }

    /// Takes the ciphertext rustls queued on its own.
    pub(crate) fn take_outgoing(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.outgoing)
    }

    /// Reads without waiting: first plaintext already decrypted, then
    /// whatever `fill` puts after the partial record (`fill` reads the
    /// socket, or a test's bytes, into the slice it is given and returns
    /// how many; `Ok(0)` is the end of the stream, `WouldBlock` nothing
    /// yet). Decrypts in place in the worker's scratch buffer and copies
    /// application data to `dst`; what does not fit is kept for the next
    /// read.
    pub(crate) fn read_with(
        &mut self,
        dst: &mut [MaybeUninit<u8>],
        fill: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<Received> {
        if self.plain_at < self.plain.len() {
            return Ok(Received::Data(self.take_plain(dst)));
        }
        if self.peer_closed {
            return Ok(Received::Closed);
        }
        if let Some(e) = &self.failed {
            return Err(tls_io_error(e.clone()));
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let kept = self.partial.len();
            scratch[..kept].copy_from_slice(&self.partial);
            let room = (dst.len() + RECV_WINDOW).min(scratch.len() - kept);
            let got = fill(&mut scratch[kept..kept + room])?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed connection without sending TLS close_notify",
                ));
            }
            self.process(&mut scratch[..kept + got], dst)
        })
    }

    /// Runs rustls over `incoming` (the partial record followed by new
    /// bytes) until it needs more; keeps what it did not consume.
    fn process(
        &mut self,
        incoming: &mut [u8],
        dst: &mut [MaybeUninit<u8>],
    ) -> io::Result<Received> {
        let mut copied = 0;
        let consumed = match self.run(incoming, dst, &mut copied, Then::Nothing) {
            Ok(consumed) => consumed,
            Err(e) => return Err(self.fail(e)),
        };
        self.keep_partial(&incoming[consumed..]);
        if copied > 0 {
            Ok(Received::Data(copied))
        } else if self.plain_at < self.plain.len() {
            Ok(Received::Data(self.take_plain(dst)))
        } else if self.peer_closed {
            Ok(Received::Closed)
        } else {
            Ok(Received::Nothing)
        }
    }

    /// Drives rustls over `incoming` until it has nothing more to do with
    /// it: application data goes to `dst` (then to `plain`), ciphertext it
    /// wants sent goes to `outgoing`; then, once rustls allows application
    /// data, `then` is done (into `outgoing` too).
    /// Returns how many bytes of `incoming` were consumed.
    fn run(
        &mut self,
        incoming: &mut [u8],
        dst: &mut [MaybeUninit<u8>],
        copied: &mut usize,
        mut then: Then<'_>,
    ) -> Result<usize, rustls::Error> {
        let mut consumed = 0;
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.conn.process_tls_records(&mut incoming[consumed..]);
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    self.queue_alert();
                    return Err(e);
                }
            };
            let mut done = false;
            match state {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record?;
                        discard += record.discard;
                        let n = put(dst, *copied, record.payload);
                        *copied += n;
                        if n < record.payload.len() {
                            if self.plain_at == self.plain.len() {
                                self.plain.clear();
                                self.plain_at = 0;
                            }
                            self.plain.extend_from_slice(&record.payload[n..]);
                        }
                    }
                }
                ConnectionState::ReadEarlyData(mut early) => {
                    // Early data is not enabled; should a configuration
                    // turn it on, it is application data like any other.
                    while let Some(record) = early.next_record() {
                        let record = record?;
                        discard += record.discard;
                        let n = put(dst, *copied, record.payload);
                        *copied += n;
                        self.plain.extend_from_slice(&record.payload[n..]);
                    }
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    encode_into(&mut encode, &mut self.outgoing)
                }
                ConnectionState::TransmitTlsData(transmit) => {
                    // `outgoing` goes out before anything encrypted later.
                    transmit.done();
                }
                ConnectionState::PeerClosed => self.peer_closed = true,
                ConnectionState::Closed => {
                    self.peer_closed = true;
                    done = true;
                }
                ConnectionState::WriteTraffic(mut traffic) => {
                    match std::mem::replace(&mut then, Then::Nothing) {
                        Then::Nothing => {}
                        Then::Encrypt(data) => {
                            encrypt_into(&mut traffic, data, &mut self.outgoing)?
                        }
                        Then::CloseNotify => queue_close_notify(&mut traffic, &mut self.outgoing)?,
                    }
                    done = true;
                }
                ConnectionState::BlockedHandshake => done = true,
                _ => done = true,
            }
            consumed += discard;
            if done {
                break;
            }
        }
        if !matches!(then, Then::Nothing) {
            // The connection can no longer carry application data.
            return Err(rustls::Error::General(
                "tls connection is closed for writing".into(),
            ));
        }
        Ok(consumed)
    }

    /// Processes what was kept from earlier reads (nothing new arrives):
    /// during the handshake, after a read, before a write.
    pub(crate) fn advance(&mut self) -> Result<(), rustls::Error> {
        self.with_partial(Then::Nothing).map(|_| ())
    }

    /// Encrypts `data` (after whatever rustls queued) into `outgoing`.
    pub(crate) fn encrypt(&mut self, data: &[u8]) -> Result<(), rustls::Error> {
        self.with_partial(Then::Encrypt(data)).map(|_| ())
    }

    /// Queues close_notify after whatever rustls queued.
    pub(crate) fn close_notify(&mut self) -> Result<(), rustls::Error> {
        self.with_partial(Then::CloseNotify).map(|_| ())
    }

    /// Runs rustls over the kept partial record alone.
    fn with_partial(&mut self, then: Then<'_>) -> Result<usize, rustls::Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut partial = std::mem::take(&mut self.partial);
        let mut copied = 0;
        let result = self.run(&mut partial, &mut [], &mut copied, then);
        match result {
            Ok(consumed) => {
                partial.drain(..consumed);
                self.partial = partial;
                if self.partial.is_empty() {
                    self.partial = Vec::new();
                }
                Ok(consumed)
            }
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Keeps `rest` (a partly received record) for the next read, reusing
    /// the buffer it had; frees it when nothing is left.
    fn keep_partial(&mut self, rest: &[u8]) {
        if rest.is_empty() {
            self.partial = Vec::new();
        } else {
            self.partial.clear();
            self.partial.extend_from_slice(rest);
        }
    }

    /// Copies pending plaintext to `dst`; frees it once delivered.
    fn take_plain(&mut self, dst: &mut [MaybeUninit<u8>]) -> usize {
        let n = put(dst, 0, &self.plain[self.plain_at..]);
        self.plain_at += n;
        if self.plain_at == self.plain.len() {
            self.plain = Vec::new();
            self.plain_at = 0;
        }
        n
    }

    /// Records a fatal error (rustls has queued its alert in `outgoing`).
    fn fail(&mut self, e: rustls::Error) -> io::Error {
        self.partial = Vec::new();
        self.failed = Some(e.clone());
        tls_io_error(e)
    }

    /// After an error rustls queues an alert: move it to `outgoing` so
    /// that a best-effort flush can tell the client why.
    fn queue_alert(&mut self) {
        for _ in 0..4 {
            let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut []);
            match state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(&mut encode, &mut self.outgoing)
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
                _ => break,
            }
        }
    }
}

/// A TLS failure as the `io::Error` the stream's readers and writers see.
pub(crate) fn tls_io_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}
