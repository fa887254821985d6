//! In-memory and loopback TLS handshakes: SNI choice, TLS 1.2, the client
//! configuration, and `accept_with_info` over real sockets.

use super::*;

// ---- handshakes ------------------------------------------------------------

pub(super) fn insecure_client() -> Arc<rustls::ClientConfig> {
    build_client_config(None, true).expect("insecure client config")
}

pub(super) fn leaf(client: &Connection) -> Vec<u8> {
    client
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .expect("server sent a certificate")
}

/// Moves queued TLS bytes from one side to the other.
pub(super) fn transfer(from: &mut Connection, to: &mut Connection) -> Result<(), rustls::Error> {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
    }
    let mut rest = buf.as_slice();
    while !rest.is_empty() {
        to.read_tls(&mut rest)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        to.process_new_packets()?;
    }
    Ok(())
}

/// An in-memory handshake; `server_name` may be an IP (then no SNI is sent).
pub(super) fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    server_name: &str,
) -> Result<(Connection, Connection), rustls::Error> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let mut c: Connection = ClientConnection::new(client, name)?.into();
    let mut s: Connection = ServerConnection::new(server)?.into();
    for _ in 0..10 {
        transfer(&mut c, &mut s)?;
        transfer(&mut s, &mut c)?;
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok((c, s));
        }
    }
    Err(rustls::Error::General("handshake did not finish".into()))
}

#[test]
fn sni_picks_the_right_certificate_and_falls_back_to_default() {
    let dir = TempDir::new();
    let d = gen(&dir, "default", &["default.test"]);
    let a = gen(&dir, "a", &["a.test"]);
    let b = gen(&dir, "b", &["b.test"]);
    let cfg =
        build_server_config(&settings(Some(&d), &[("a.test", &a), ("B.Test", &b)])).expect("loads");
    let cases: &[(&str, &Gen)] = &[
        ("a.test", &a),
        ("b.test", &b),
        ("A.TEST", &a),
        ("other.test", &d),
        ("127.0.0.1", &d), // IP: the client sends no SNI
    ];
    for (name, want) in cases {
        let (client, server) = handshake(cfg.clone(), insecure_client(), name)
            .unwrap_or_else(|e| panic!("handshake for {name}: {e}"));
        assert_eq!(&leaf(&client), &want.der, "certificate for {name}");
        assert_eq!(client.alpn_protocol(), Some(&b"http/1.1"[..]), "{name}");
        if let Connection::Server(s) = &server {
            assert_eq!(s.server_name().is_some(), *name != "127.0.0.1");
        }
    }
}

#[test]
fn no_default_and_unknown_sni_fails_the_handshake() {
    let dir = TempDir::new();
    let a = gen(&dir, "a", &["a.test"]);
    let cfg = build_server_config(&settings(None, &[("a.test", &a)])).expect("loads");
    assert!(handshake(cfg.clone(), insecure_client(), "a.test").is_ok());
    assert!(handshake(cfg.clone(), insecure_client(), "other.test").is_err());
    assert!(handshake(cfg, insecure_client(), "127.0.0.1").is_err());
}

#[test]
fn tls12_handshake_works() {
    let dir = TempDir::new();
    let a = gen(&dir, "a", &["a.test"]);
    let cfg = build_server_config(&settings(Some(&a), &[])).expect("loads");
    let mut client = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("tls12")
        .with_root_certificates(client::root_store(&a.pair.cert).expect("roots"))
        .with_no_client_auth();
    client.alpn_protocols = alpn_protocols();
    let (c, _) = handshake(cfg, Arc::new(client), "a.test").expect("tls 1.2 handshake");
    assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
}

#[test]
fn client_config_trusts_the_ca_file_only() {
    let dir = TempDir::new();
    let a = gen(&dir, "a", &["a.test"]);
    let other = gen(&dir, "other", &["a.test"]);
    let cfg = build_server_config(&settings(Some(&a), &[])).expect("loads");
    let trusting = build_client_config(Some(&a.pair.cert), false).expect("client config");
    let (c, _) = handshake(cfg.clone(), trusting.clone(), "a.test").expect("trusted handshake");
    assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    // Wrong host name for the certificate: refused.
    assert!(handshake(cfg.clone(), trusting, "b.test").is_err());
    // Trusting another CA: refused.
    let wrong = build_client_config(Some(&other.pair.cert), false).expect("client config");
    assert!(handshake(cfg, wrong, "a.test").is_err());
}

#[test]
fn client_config_errors_name_the_file() {
    let dir = TempDir::new();
    let missing = dir.0.join("ca.pem");
    let e = build_client_config(Some(&missing), false).expect_err("missing CA file");
    assert!(
        e.to_string().contains(&missing.display().to_string()),
        "{e}"
    );
    let junk = dir.write("junk.pem", b"nothing here");
    assert!(matches!(
        build_client_config(Some(&junk), false),
        Err(TlsError::NoCertificates { .. })
    ));
}

#[test]
fn accept_with_info_reports_sni_and_alpn_over_tcp() {
    let dir = TempDir::new();
    let a = gen(&dir, "a", &["a.test"]);
    let cfg = build_server_config(&settings(Some(&a), &[])).expect("loads");
    let client_cfg = build_client_config(Some(&a.pair.cert), false).expect("client config");
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        use monoio::io::{AsyncReadRent, AsyncReadRentExt, AsyncWriteRent, AsyncWriteRentExt};
        let listener = monoio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = monoio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let acc = accept_with_info(&cfg, tcp).await.expect("handshake");
            let mut stream = acc.stream;
            let (res, buf) = stream.read_exact(vec![0u8; 5]).await;
            res.expect("read");
            let (res, _) = stream.write_all(buf).await;
            res.expect("write");
            stream.flush().await.expect("flush");
            (acc.sni, acc.alpn, acc.version)
        });
        let tcp = monoio::net::TcpStream::connect(addr)
            .await
            .expect("connect");
        let name = ServerName::try_from("A.test").expect("name");
        let mut tls = connector(client_cfg)
            .connect(name, tcp)
            .await
            .expect("client handshake");
        let (res, _) = tls.write_all(b"hello".to_vec()).await;
        res.expect("client write");
        let (res, echoed) = tls.read_exact(vec![0u8; 5]).await;
        res.expect("client read");
        assert_eq!(&echoed, b"hello");
        let (res, _) = tls.read(vec![0u8; 1]).await;
        drop(res);
        let (sni, alpn, version) = server.await;
        assert_eq!(sni.as_deref(), Some("a.test"));
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert_eq!(version, Some(rustls::ProtocolVersion::TLSv1_3));
    });
}

#[test]
fn accept_with_info_fails_cleanly_on_garbage() {
    let dir = TempDir::new();
    let a = gen(&dir, "a", &["a.test"]);
    let cfg = build_server_config(&settings(Some(&a), &[])).expect("loads");
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        use monoio::io::AsyncWriteRentExt;
        let listener = monoio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = monoio::spawn(async move {
            let mut results = Vec::new();
            for _ in 0..2 {
                let (tcp, _) = listener.accept().await.expect("accept");
                results.push(accept_with_info(&cfg, tcp).await.map(|_| ()));
            }
            results
        });
        // Plain HTTP on the TLS port: a TLS error (and an alert back).
        let mut tcp = monoio::net::TcpStream::connect(addr)
            .await
            .expect("connect");
        let (res, _) = tcp
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec())
            .await;
        res.expect("write");
        // A client that connects and leaves: Eof.
        let quitter = monoio::net::TcpStream::connect(addr)
            .await
            .expect("connect");
        drop(quitter);
        let r = server.await;
        assert!(matches!(r[0], Err(HandshakeError::Tls(_))), "{r:?}");
        assert!(matches!(r[1], Err(HandshakeError::Eof)), "{r:?}");
        drop(tcp);
    });
}

// ---- helpers ---------------------------------------------------------------

/// Splits one DER TLV: (tag, whole TLV bytes, content, rest).
fn tlv(input: &[u8]) -> (u8, &[u8], &[u8], &[u8]) {
    let tag = input[0];
    let (len, hdr) = match input[1] {
        l if l < 0x80 => (l as usize, 2),
        0x81 => (input[2] as usize, 3),
        0x82 => (((input[2] as usize) << 8) | input[3] as usize, 4),
        _ => panic!("unsupported DER length"),
    };
    (
        tag,
        &input[..hdr + len],
        &input[hdr..hdr + len],
        &input[hdr + len..],
    )
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

/// Turns ring's PKCS#8 P-256 key into an OpenSSL-style SEC1 ECPrivateKey
/// (with the curve parameters, as `openssl ec` writes it).
pub(super) fn pkcs8_p256_to_sec1(pkcs8: &[u8]) -> Vec<u8> {
    let (_, _, outer, _) = tlv(pkcs8);
    let (_, _, _version, rest) = tlv(outer);
    let (_, _, _alg, rest) = tlv(rest);
    let (tag, _, ec_private_key, _) = tlv(rest);
    assert_eq!(tag, 0x04, "PKCS#8 privateKey OCTET STRING");
    let (_, _, fields, _) = tlv(ec_private_key);
    let (_, version, _, rest) = tlv(fields);
    let (_, private, _, mut rest) = tlv(rest);
    let prime256v1 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let mut content = Vec::new();
    content.extend_from_slice(version);
    content.extend_from_slice(private);
    content.extend(der(0xa0, &prime256v1));
    while !rest.is_empty() {
        let (tag, whole, _, next) = tlv(rest);
        if tag != 0xa0 {
            content.extend_from_slice(whole);
        }
        rest = next;
    }
    der(0x30, &content)
}
