//! In-memory tests of the unbuffered server core against a rustls client:
//! records split at every byte, many records in one read, small readers,
//! close_notify and EOF, garbage, and no buffer kept at rest.

use std::io::{self, Read, Write};

use std::mem::MaybeUninit;
use std::sync::Arc;

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::ClientConnection;

use super::server_core::{Received, TlsCore};

/// An ECDSA P-256 server configuration like `build_server_config`'s:
/// TLS 1.3 and 1.2, ALPN http/1.1, tickets.
pub(crate) fn server_config() -> Arc<rustls::ServerConfig> {
    server_config_for(&[&rustls::version::TLS13, &rustls::version::TLS12])
}

fn server_config_for(
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ServerConfig> {
    let ck = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).expect("rcgen");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(super::provider())
        .with_protocol_versions(versions)
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .expect("cert");
    config.alpn_protocols = super::alpn_protocols();
    config.ticketer = rustls::crypto::ring::Ticketer::new().expect("ticketer");
    Arc::new(config)
}

/// A client that trusts anything (the tests are about the records).
pub(crate) fn client_config() -> Arc<rustls::ClientConfig> {
    super::build_client_config(None, true).expect("client config")
}

fn client(config: Arc<rustls::ClientConfig>) -> ClientConnection {
    let name = ServerName::try_from("a.test").expect("name");
    ClientConnection::new(config, name).expect("client")
}

/// Everything the client has queued for the wire.
fn client_out(c: &mut ClientConnection) -> Vec<u8> {
    let mut out = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut out).expect("write_tls");
    }
    out
}

/// Gives the server's ciphertext to the client; returns the plaintext.
fn to_client(c: &mut ClientConnection, mut bytes: &[u8]) -> Result<Vec<u8>, rustls::Error> {
    let mut plain = Vec::new();
    while !bytes.is_empty() {
        c.read_tls(&mut bytes).expect("read_tls");
        c.process_new_packets()?;
        let mut chunk = [0u8; 4096];
        while let Ok(n) = c.reader().read(&mut chunk) {
            if n == 0 {
                break;
            }
            plain.extend_from_slice(&chunk[..n]);
        }
    }
    Ok(plain)
}

/// Feeds `bytes` to the core in pieces of `piece` bytes, reading with a
/// `dst_len`-byte reader, and returns the plaintext (or the first error).
/// `Closed` ends the plaintext.
fn deliver(core: &mut TlsCore, bytes: &[u8], piece: usize, dst_len: usize) -> io::Result<Vec<u8>> {
    let mut plain = Vec::new();
    let mut dst = vec![MaybeUninit::<u8>::uninit(); dst_len];
    let mut pieces = bytes.chunks(piece.max(1)).peekable();
    loop {
        let next = pieces.peek().copied();
        let mut took = false;
        let got = core.read_with(&mut dst, |room| match next {
            Some(p) => {
                room[..p.len()].copy_from_slice(p);
                took = true;
                Ok(p.len())
            }
            None => Err(io::ErrorKind::WouldBlock.into()),
        });
        if took {
            pieces.next();
        }
        match got {
            Ok(Received::Data(n)) => {
                // SAFETY (test): the core initialized the first n bytes.
                plain.extend(dst[..n].iter().map(|b| unsafe { b.assume_init() }));
            }
            Ok(Received::Closed) => return Ok(plain),
            Ok(Received::Nothing) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && next.is_none() => return Ok(plain),
            Err(e) => return Err(e),
        }
    }
}

/// A finished in-memory handshake, the client's flights fed in `piece`-byte pieces.
fn pair_with(server: Arc<rustls::ServerConfig>, piece: usize) -> (ClientConnection, TlsCore) {
    pair_of(server, client_config(), piece)
}

/// A finished in-memory handshake between these two configurations.
fn pair_of(
    server: Arc<rustls::ServerConfig>,
    client_config: Arc<rustls::ClientConfig>,
    piece: usize,
) -> (ClientConnection, TlsCore) {
    let mut c = client(client_config);
    let mut core = TlsCore::new(server).expect("core");
    for _ in 0..20 {
        let out = client_out(&mut c);
        deliver(&mut core, &out, piece, 0).expect("server side");
        core.advance().expect("advance");
        to_client(&mut c, &core.take_outgoing()).expect("client side");
        if !c.is_handshaking() && !core.is_handshaking() && !c.wants_write() {
            return (c, core);
        }
    }
    panic!("handshake did not finish");
}

fn pair() -> (ClientConnection, TlsCore) {
    pair_with(server_config(), usize::MAX)
}

/// The client's ciphertext for `messages`, one record (or more) each.
fn records(c: &mut ClientConnection, messages: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        c.writer().write_all(m).expect("client write");
        out.extend(client_out(c));
    }
    out
}

#[test]
fn handshake_fed_one_byte_at_a_time_finishes_with_alpn() {
    let (_c, core) = pair_with(server_config(), 1);
    assert_eq!(core.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(core.held_bytes(), 0, "nothing kept after the handshake");
}

#[test]
fn second_connection_resumes_with_a_ticket_on_tls13_and_tls12() {
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let server = server_config_for(versions);
        let client = client_config();
        let (first, _) = pair_of(server.clone(), client.clone(), usize::MAX);
        assert_eq!(first.handshake_kind(), Some(rustls::HandshakeKind::Full));
        let (second, core) = pair_of(server, client, usize::MAX);
        assert_eq!(
            second.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed),
            "{versions:?}"
        );
        assert_eq!(core.held_bytes(), 0);
    }
}

#[test]
fn tls12_handshake_and_data() {
    let (mut c, mut core) = pair_with(server_config_for(&[&rustls::version::TLS12]), 7);
    let wire = records(&mut c, &[b"over tls 1.2"]);
    assert_eq!(
        deliver(&mut core, &wire, 3, 5).expect("read"),
        b"over tls 1.2"
    );
}

#[test]
fn records_split_at_every_byte_boundary() {
    let messages: [&[u8]; 3] = [b"GET / HTTP/1.1\r\n", b"x", b"Host: a.test\r\n\r\n"];
    let expected: Vec<u8> = messages.concat();
    let len = {
        let (mut c, _) = pair();
        records(&mut c, &messages).len()
    };
    for cut in 0..=len {
        let (mut c, mut core) = pair();
        let wire = records(&mut c, &messages);
        let mut got = deliver(&mut core, &wire[..cut], usize::MAX, 64).expect("first part");
        got.extend(deliver(&mut core, &wire[cut..], usize::MAX, 64).expect("second part"));
        assert_eq!(got, expected, "cut at {cut}");
        assert_eq!(core.held_bytes(), 0, "cut at {cut}: nothing kept at rest");
    }
}

#[test]
fn every_piece_size_and_reader_size_gives_the_same_bytes() {
    let big: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    for (piece, dst_len) in [
        (1, 1),
        (5, 512),
        (4096, 7),
        (17_000, 512),
        (usize::MAX, 65_536),
    ] {
        let (mut c, mut core) = pair();
        let wire = records(&mut c, &[b"small", &big, b"tail"]);
        let got = deliver(&mut core, &wire, piece, dst_len).expect("read");
        assert_eq!(
            got.len(),
            5 + big.len() + 4,
            "piece {piece} reader {dst_len}"
        );
        assert_eq!(
            &got[5..5 + big.len()],
            &big[..],
            "piece {piece} reader {dst_len}"
        );
        assert_eq!(core.held_bytes(), 0);
    }
}

#[test]
fn several_records_in_one_read_come_out_in_order() {
    let (mut c, mut core) = pair();
    let msgs: Vec<Vec<u8>> = (0..50)
        .map(|i| format!("message {i};").into_bytes())
        .collect();
    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    let wire = records(&mut c, &refs);
    assert_eq!(
        deliver(&mut core, &wire, usize::MAX, 4096).expect("read"),
        msgs.concat()
    );
}

#[test]
fn close_notify_ends_the_stream_and_stays_ended() {
    let (mut c, mut core) = pair();
    let mut wire = records(&mut c, &[b"last words"]);
    c.send_close_notify();
    wire.extend(client_out(&mut c));
    assert_eq!(
        deliver(&mut core, &wire, usize::MAX, 64).expect("read"),
        b"last words"
    );
    let again = core.read_with(&mut [MaybeUninit::uninit(); 8], |_| {
        panic!("no socket read")
    });
    assert_eq!(again.expect("closed"), Received::Closed);
    // Writing back after the client's close is still allowed (half close).
    core.encrypt(b"bye").expect("encrypt after peer close");
    core.close_notify().expect("close_notify");
    let back = to_client(&mut c, &core.take_outgoing()).expect("client reads");
    assert_eq!(back, b"bye");
}

#[test]
fn eof_without_close_notify_is_an_unexpected_eof() {
    for cut in [0usize, 3] {
        let (mut c, mut core) = pair();
        let wire = records(&mut c, &[b"partial"]);
        deliver(&mut core, &wire[..cut], usize::MAX, 64).expect("part");
        let e = core
            .read_with(&mut [MaybeUninit::uninit(); 8], |_| Ok(0))
            .expect_err("eof");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "cut {cut}");
    }
}

#[test]
fn garbage_is_a_clear_error_with_an_alert_and_no_panic() {
    // Before the handshake: plain HTTP on the TLS port.
    let mut core = TlsCore::new(server_config()).expect("core");
    let e = deliver(
        &mut core,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        usize::MAX,
        64,
    )
    .expect_err("garbage refused");
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    // After the handshake: a record that does not decrypt.
    let (mut c, mut core) = pair();
    let mut wire = records(&mut c, &[b"hello"]);
    let last = wire.len() - 1;
    wire[last] ^= 0x55;
    let e = deliver(&mut core, &wire, usize::MAX, 64).expect_err("bad record");
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    let alert = core.take_outgoing();
    assert!(!alert.is_empty(), "an alert is queued for the client");
    assert!(
        to_client(&mut c, &alert).is_err(),
        "the client hears the alert"
    );
    // Every later read and write fails the same way, without panicking.
    let again = core.read_with(&mut [MaybeUninit::uninit(); 8], |_| Ok(5));
    assert_eq!(
        again.expect_err("still failed").kind(),
        io::ErrorKind::InvalidData
    );
    assert!(core.encrypt(b"x").is_err());
    // Random bytes of every length: errors or a wait, never a panic.
    for len in 0..64usize {
        let mut core = TlsCore::new(server_config()).expect("core");
        let junk: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
        let _ = deliver(&mut core, &junk, 3, 16);
    }
}

#[test]
fn encrypted_writes_reach_the_client_and_leave_nothing_behind() {
    let (mut c, mut core) = pair();
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    core.encrypt(&big).expect("encrypt");
    let out = core.take_outgoing();
    assert!(out.len() > big.len());
    let back = to_client(&mut c, &out).expect("client decrypts");
    assert_eq!(back, big);
    assert_eq!(core.held_bytes(), 0);
}
