//! Tests of the readiness reads: what an idle session holds, bytes split
//! across readiness rounds, spurious wake-ups, the end of the stream and a
//! reset while bytes are held; and [`Rounds`], a scripted readiness reader
//! the relays' tests use too.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use monoio::buf::{IoBufMut, IoVecBufMut};
use monoio::io::AsyncReadRent;
use monoio::BufResult;

use super::*;

/// One step of a [`Rounds`] script.
pub(crate) enum Step {
    /// The peer sent these bytes (handed out over as many reads as needed).
    Bytes(Vec<u8>),
    /// A wake-up with nothing to read.
    Spurious,
    /// The peer ended the stream (for good).
    Eof,
    /// The connection failed (for good).
    Fail(io::ErrorKind),
}

/// A reader with readiness that plays a script: ready while steps are left,
/// else waiting (an idle peer) until the test adds steps through `script`
/// and polls again. Counts its readiness waits.
pub(crate) struct Rounds {
    pub script: Rc<RefCell<VecDeque<Step>>>,
    pub waits: usize,
}

impl Rounds {
    pub(crate) fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Self {
            script: Rc::new(RefCell::new(steps.into_iter().collect())),
            waits: 0,
        }
    }
}

impl ReadReady for Rounds {
    fn has_readiness(&self) -> bool {
        true
    }

    async fn read_ready(&mut self) -> io::Result<()> {
        self.waits += 1;
        let script = self.script.clone();
        poll_fn(|_| {
            if script.borrow().is_empty() {
                Poll::Pending
            } else {
                Poll::Ready(Ok(()))
            }
        })
        .await
    }

    fn try_read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        let mut script = self.script.borrow_mut();
        match script.front_mut() {
            None => Err(io::ErrorKind::WouldBlock.into()),
            Some(Step::Spurious) => {
                script.pop_front();
                Err(io::ErrorKind::WouldBlock.into())
            }
            Some(Step::Bytes(b)) => {
                let n = b.len().min(dst.len());
                dst[..n].copy_from_slice(&b[..n]);
                b.drain(..n);
                if b.is_empty() {
                    script.pop_front();
                }
                Ok(n)
            }
            Some(Step::Eof) => Ok(0),
            Some(Step::Fail(kind)) => Err((*kind).into()),
        }
    }
}

/// Never used: a reader with readiness is read through it.
impl AsyncReadRent for Rounds {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        (Err(io::ErrorKind::Unsupported.into()), buf)
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        (Err(io::ErrorKind::Unsupported.into()), buf)
    }
}

/// `stream` in two readiness rounds cut at `cut`, with a spurious wake-up
/// between them (no empty step: a read of 0 bytes is the end of stream).
pub(crate) fn split_at(stream: &[u8], cut: usize) -> Vec<Step> {
    let mut steps = Vec::new();
    if cut > 0 {
        steps.push(Step::Bytes(stream[..cut].to_vec()));
    }
    steps.push(Step::Spurious);
    if cut < stream.len() {
        steps.push(Step::Bytes(stream[cut..].to_vec()));
    }
    steps
}

/// Polls `f` once (the scripted reader needs no runtime).
fn poll_once<F: Future>(f: F) -> Poll<F::Output> {
    let mut f = pin!(f);
    f.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn an_idle_reader_holds_no_buffer_and_gives_a_drained_one_back() {
    let pool = ReadPool::default();
    let mut buf = ReadBuf::with_capacity(512);
    let mut r = Rounds::new([Step::Bytes(b"hello".to_vec())]);
    let got = poll_once(read_some(&mut buf, &mut r, &pool, POOLED_READ));
    assert!(matches!(got, Poll::Ready(Ok(5))));
    assert_eq!(buf.data(), b"hello");
    assert!(buf.buf.capacity() >= 512, "lent while it holds bytes");
    buf.consume(5);
    // Nothing more to read: the wait holds no buffer.
    assert!(poll_once(read_some(&mut buf, &mut r, &pool, POOLED_READ)).is_pending());
    assert_eq!(buf.buf.capacity(), 0);
    assert_eq!(pool.free_len(), 1, "back in the worker's pool");
}

#[test]
fn bytes_held_stay_with_the_session_while_it_waits() {
    let pool = ReadPool::default();
    let mut buf = ReadBuf::with_capacity(512);
    let mut r = Rounds::new([Step::Bytes(vec![0x81, 0x85])]);
    assert!(poll_once(read_some(&mut buf, &mut r, &pool, POOLED_READ)).is_ready());
    assert!(poll_once(read_some(&mut buf, &mut r, &pool, POOLED_READ)).is_pending());
    assert_eq!(buf.data(), [0x81, 0x85], "a partial frame is kept");
    // ... in a buffer of its own size: the pooled one went back.
    assert!(buf.buf.capacity() < POOLED_READ, "{}", buf.buf.capacity());
    assert_eq!(pool.free_len(), 1);
    // The rest arrives: appended to what is held.
    r.script.borrow_mut().push_back(Step::Bytes(vec![1, 2, 3]));
    assert!(matches!(
        poll_once(read_some(&mut buf, &mut r, &pool, POOLED_READ)),
        Poll::Ready(Ok(3))
    ));
    assert_eq!(buf.data(), [0x81, 0x85, 1, 2, 3]);
}

#[test]
fn many_bytes_held_keep_the_pooled_buffer_while_the_session_waits() {
    let pool = ReadPool::default();
    let mut buf = ReadBuf::with_capacity(512);
    let held = vec![7u8; SMALL_HOLD + 1];
    let mut r = Rounds::new([Step::Bytes(held.clone())]);
    while buf.len() < held.len() {
        assert!(poll_once(read_some(&mut buf, &mut r, &pool, POOLED_READ)).is_ready());
    }
    assert!(poll_once(read_some(&mut buf, &mut r, &pool, POOLED_READ)).is_pending());
    assert_eq!(buf.data(), &held[..]);
    assert!(
        buf.buf.capacity() >= POOLED_READ,
        "no copy of a large remainder"
    );
    assert_eq!(pool.free_len(), 0);
}

#[test]
fn every_split_across_readiness_rounds_reads_the_same_bytes() {
    let stream: Vec<u8> = (0..=255u8).cycle().take(1500).collect();
    for cut in 0..=stream.len() {
        let pool = ReadPool::default();
        let mut buf = ReadBuf::with_capacity(512);
        let mut r = Rounds::new(split_at(&stream, cut));
        r.script.borrow_mut().push_back(Step::Eof);
        let mut got = Vec::new();
        loop {
            match poll_once(read_some(&mut buf, &mut r, &pool, POOLED_READ)) {
                Poll::Ready(Ok(0)) => break,
                Poll::Ready(Ok(_)) => {
                    got.extend_from_slice(buf.data());
                    buf.consume(buf.len());
                }
                other => panic!("cut {cut}: {:?}", other.map(|r| r.map_err(|e| e.kind()))),
            }
        }
        assert_eq!(got, stream, "cut {cut}");
    }
}

#[test]
fn a_reset_or_the_end_while_bytes_are_held_is_reported_and_keeps_them() {
    for (last, want) in [
        (Step::Eof, None),
        (
            Step::Fail(io::ErrorKind::ConnectionReset),
            Some(io::ErrorKind::ConnectionReset),
        ),
    ] {
        let pool = ReadPool::default();
        let mut buf = ReadBuf::with_capacity(512);
        let mut r = Rounds::new([Step::Bytes(vec![0x82, 0x7e, 0x01]), last]);
        assert!(poll_once(read_some(&mut buf, &mut r, &pool, POOLED_READ)).is_ready());
        let Poll::Ready(res) = poll_once(read_some(&mut buf, &mut r, &pool, POOLED_READ)) else {
            panic!("the ending is ready");
        };
        match want {
            None => assert_eq!(res.expect("end of stream"), 0),
            Some(kind) => assert_eq!(res.expect_err("reset").kind(), kind),
        }
        assert_eq!(buf.data(), [0x82, 0x7e, 0x01]);
    }
}

#[test]
fn a_full_read_reads_again_before_waiting() {
    let pool = ReadPool::default();
    let mut buf = ReadBuf::with_capacity(512);
    let mut r = Rounds::new([Step::Bytes(vec![7; 3000])]);
    let mut total = 0;
    while total < 3000 {
        match poll_once(read_some(&mut buf, &mut r, &pool, POOLED_READ)) {
            Poll::Ready(Ok(n)) => total += n,
            other => panic!("{:?}", other.map(|r| r.map_err(|e| e.kind()))),
        }
        buf.consume(buf.len());
    }
    assert_eq!(r.waits, 1, "one wait, then reads while they come back full");
}

#[test]
fn the_pool_keeps_only_buffers_of_its_size() {
    let pool = ReadPool::default();
    pool.give(Vec::with_capacity(100));
    pool.give(Vec::with_capacity(4 * POOLED_READ));
    assert_eq!(pool.free_len(), 0);
    let mut v = pool.take();
    v.extend_from_slice(b"old");
    pool.give(v);
    assert_eq!(pool.free_len(), 1);
    assert!(pool.take().is_empty(), "a lent buffer starts empty");
}
