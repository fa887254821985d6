//! Loopback tests of [`TlsServerStream`] and [`accept`] against the
//! monoio-rustls client, on the io_uring and the legacy driver: split
//! halves used at once, a 1 MiB write to a slow reader, close_notify,
//! read readiness, handshake failures.

use std::future::Future;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncReadRentExt, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::net::{TcpListener, TcpStream};
use rustls::pki_types::ServerName;

use super::tests_server_core::{client_config, server_config};
use super::{accept, connector, HandshakeError, TlsServerStream};

/// Runs the test on io_uring (where the kernel has it) and on epoll.
fn on_each_driver<F: Future<Output = ()>>(test: impl Fn() -> F) {
    if let Ok(mut rt) = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
    {
        rt.block_on(test());
    }
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("legacy runtime");
    rt.block_on(test());
}

/// A listener and a task accepting one TLS client on it.
fn serve_one() -> (
    std::net::SocketAddr,
    monoio::task::JoinHandle<Result<TlsServerStream, HandshakeError>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = monoio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        accept(server_config(), tcp).await
    });
    (addr, task)
}

async fn connect(addr: std::net::SocketAddr) -> monoio_rustls::ClientTlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("a.test").expect("name");
    connector(client_config())
        .connect(name, tcp)
        .await
        .expect("client handshake")
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 241) as u8).collect()
}

#[test]
fn halves_work_at_once_and_a_slow_reader_gets_one_mib() {
    on_each_driver(|| async {
        let (addr, server) = serve_one();
        let mut client = connect(addr).await;
        let stream = server.await.expect("server handshake");
        assert_eq!(stream.alpn_protocol().as_deref(), Some(&b"http/1.1"[..]));
        let (mut r, mut w) = stream.into_split();
        // The server writes 1 MiB while its read half waits for the client.
        let writer = monoio::spawn(async move {
            let (res, _) = w.write_all(pattern(1 << 20)).await;
            res.expect("server write");
            w
        });
        let reader = monoio::spawn(async move {
            let (res, got) = r.read_exact(vec![0u8; 11]).await;
            res.expect("server read");
            (r, got)
        });
        let mut got = Vec::with_capacity(1 << 20);
        let mut sent_hello = false;
        while got.len() < 1 << 20 {
            let (res, buf) = client.read(vec![0u8; 3000]).await;
            let n = res.expect("client read");
            assert!(n > 0, "early end after {} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
            if !sent_hello && got.len() > 100_000 {
                let (res, _) = client.write_all(b"hello there".to_vec()).await;
                res.expect("client write");
                sent_hello = true;
            }
            if got.len() % 7 == 0 {
                monoio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        assert_eq!(got, pattern(1 << 20));
        let (r, hello) = reader.await;
        assert_eq!(hello, b"hello there");
        let mut w = writer.await;
        // close_notify: the client sees a clean end, not an error.
        w.shutdown().await.expect("shutdown");
        let (res, _) = client.read(vec![0u8; 16]).await;
        assert_eq!(res.expect("clean end"), 0);
        drop(r);
    });
}

#[test]
fn read_readiness_and_try_read_on_the_read_half() {
    on_each_driver(|| async {
        let (addr, server) = serve_one();
        let mut client = connect(addr).await;
        let stream = server.await.expect("server handshake");
        assert_eq!(stream.held_bytes(), 0, "nothing kept after the handshake");
        // What the read half's ReadReady (rt::ready_tls) calls.
        let r = stream;
        let mut dst = [0u8; 4];
        let e = r.try_read_now(&mut dst).expect_err("nothing yet");
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        let (res, _) = client.write_all(b"abcdefgh".to_vec()).await;
        res.expect("client write");
        let mut got = Vec::new();
        while got.len() < 8 {
            r.wait_readable().await.expect("ready");
            match r.try_read_now(&mut dst) {
                Ok(n) => got.extend_from_slice(&dst[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("try_read: {e}"),
            }
        }
        assert_eq!(got, b"abcdefgh");
        assert_eq!(r.held_bytes(), 0, "an idle session keeps no buffer");
        // The client's close_notify: ready at once from then on, and Ok(0).
        client.shutdown().await.expect("client close");
        r.wait_readable().await.expect("ready");
        let mut n = r.try_read_now(&mut dst);
        while matches!(&n, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
            r.wait_readable().await.expect("ready");
            n = r.try_read_now(&mut dst);
        }
        assert_eq!(n.expect("end"), 0);
        r.wait_readable()
            .await
            .expect("ready at once after the end");
    });
}

#[test]
fn handshake_failures_are_typed() {
    on_each_driver(|| async {
        // Plain HTTP on the TLS port: a TLS error (and an alert back).
        let (addr, server) = serve_one();
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let (res, _) = tcp
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec())
            .await;
        res.expect("write");
        let r = server.await;
        assert!(matches!(r, Err(HandshakeError::Tls(_))), "{:?}", r.err());
        let (res, buf) = tcp.read(vec![0u8; 64]).await;
        assert!(
            res.expect("alert") > 0 && buf[0] == 0x15,
            "an alert record comes back"
        );
        // A client that connects and leaves: Eof.
        let (addr, server) = serve_one();
        drop(TcpStream::connect(addr).await.expect("connect"));
        let r = server.await;
        assert!(matches!(r, Err(HandshakeError::Eof)), "{:?}", r.err());
        // A client that does not trust the certificate: its alert ends it.
        let (addr, server) = serve_one();
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let strict = super::build_client_config(None, false);
        if let Ok(strict) = strict {
            let name = ServerName::try_from("a.test").expect("name");
            assert!(connector(strict).connect(name, tcp).await.is_err());
            let r = server.await;
            assert!(r.is_err(), "the server sees the refusal");
        }
    });
}
