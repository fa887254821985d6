//! Tests of the in-memory pipe: bytes in order both ways, the end of the
//! stream, a broken pipe, a full buffer that holds the writer, readiness.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;

use monoio::buf::VecBuf;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};

use super::*;

fn run<F: Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(f)
}

async fn read_some<R: AsyncReadRent>(r: &mut R) -> Vec<u8> {
    let (res, buf) = r.read(Vec::with_capacity(CAPACITY * 2)).await;
    res.expect("read");
    buf
}

#[test]
fn bytes_go_both_ways_in_order_and_end_with_the_writer() {
    run(async {
        let (mut a, mut b) = mem_pipe();
        let (res, _) = a.write(b"hello ".to_vec()).await;
        assert_eq!(res.unwrap(), 6);
        let (res, _) = a
            .writev(VecBuf::from(vec![
                b"wor".to_vec(),
                Vec::new(),
                b"ld".to_vec(),
            ]))
            .await;
        assert_eq!(res.unwrap(), 5);
        assert_eq!(read_some(&mut b).await, b"hello world");
        b.write_all(b"back".to_vec()).await.0.unwrap();
        assert_eq!(read_some(&mut a).await, b"back");
        a.write_all(b"last".to_vec()).await.0.unwrap();
        a.shutdown().await.unwrap();
        assert_eq!(
            read_some(&mut b).await,
            b"last",
            "what was written before the end"
        );
        assert_eq!(read_some(&mut b).await, b"", "then the end");
        assert!(
            a.write(b"x".to_vec()).await.0.is_err(),
            "no write after shutdown"
        );
        drop(b);
        assert_eq!(
            a.write(b"x".to_vec()).await.0.unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
    });
}

#[test]
fn a_full_pipe_holds_the_writer_until_the_reader_takes() {
    run(async {
        let (a, b) = mem_pipe();
        let (_ar, mut aw) = a.into_split();
        let (mut br, _bw) = b.into_split();
        let big = vec![7u8; CAPACITY * 3 + 5];
        let mut write = pin!(aw.write_all(big.clone()));
        // The write fills the buffer and waits.
        let stalled = poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx).is_pending())).await;
        assert!(stalled);
        let mut got = Vec::new();
        let mut written = false;
        while got.len() < big.len() {
            if !written {
                written = poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx).is_ready())).await;
            }
            got.extend(read_some(&mut br).await);
        }
        assert_eq!(got, big);
    });
}

#[test]
fn readiness_reports_bytes_and_the_end_without_taking_them() {
    run(async {
        let (a, mut b) = mem_pipe();
        let (mut ar, _aw) = a.into_split();
        let mut buf = [0u8; 8];
        assert_eq!(
            ar.try_read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        b.write_all(b"abc".to_vec()).await.0.unwrap();
        ar.read_ready().await.unwrap();
        assert_eq!(ar.try_read(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"abc");
        drop(b);
        ar.read_ready().await.unwrap();
        assert_eq!(ar.try_read(&mut buf).unwrap(), 0, "the end of the stream");
    });
}
