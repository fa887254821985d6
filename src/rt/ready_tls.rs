//! Read readiness for the read half of an accepted client's TLS stream:
//! wait on the socket holding no buffer, then decrypt what is there into
//! the relay's buffer (see `tls::TlsServerStream`).

use std::io;

use monoio::io::OwnedReadHalf;

use super::ready::ReadReady;
use crate::tls::TlsServerStream;

impl ReadReady for OwnedReadHalf<TlsServerStream> {
    fn has_readiness(&self) -> bool {
        true
    }

    async fn read_ready(&mut self) -> io::Result<()> {
        // SAFETY: a shared reference into the split stream. Its read side
        // needs only `&self` (state in a RefCell never held across an
        // await, the socket used through `&self`), the write half never
        // moves it, and the worker is a single thread.
        let stream = unsafe { &*self.0.get() };
        stream.wait_readable().await
    }

    fn try_read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        // SAFETY: as in `read_ready`.
        let stream = unsafe { &*self.0.get() };
        stream.try_read_now(dst)
    }
}

#[cfg(test)]
mod tests {
    use monoio::io::{AsyncWriteRentExt, Splitable};
    use rustls::pki_types::ServerName;

    use super::ReadReady;
    use crate::tls::tests_server_core::{client_config, server_config};

    #[test]
    fn the_read_half_waits_then_reads_without_a_lent_buffer() {
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let server = monoio::spawn(async move {
                let (tcp, _) = listener.accept().await.expect("accept");
                crate::tls::accept(server_config(), tcp).await
            });
            let tcp = monoio::net::TcpStream::connect(addr)
                .await
                .expect("connect");
            let name = ServerName::try_from("a.test").expect("name");
            let mut client = crate::tls::connector(client_config())
                .connect(name, tcp)
                .await
                .expect("client handshake");
            let stream = server.await.expect("server handshake");
            let (mut r, _w) = stream.into_split();
            assert!(r.has_readiness());
            let mut dst = [0u8; 3];
            let e = r.try_read(&mut dst).expect_err("nothing yet");
            assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
            let (res, _) = client.write_all(b"ping".to_vec()).await;
            res.expect("client write");
            let mut got = Vec::new();
            while got.len() < 4 {
                r.read_ready().await.expect("ready");
                match r.try_read(&mut dst) {
                    Ok(n) => got.extend_from_slice(&dst[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("try_read: {e}"),
                }
            }
            assert_eq!(got, b"ping");
        });
    }
}
