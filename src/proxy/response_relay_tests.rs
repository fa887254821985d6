//! The response relay's unit tests: backend read timeouts, 101 checks.

use super::*;

fn switching(upgrade: bool) -> ParsedResponse {
    ParsedResponse {
        head_len: 0,
        status: 101,
        minor_version: 1,
        body: BodyKind::Empty,
        backend_keep_alive: false,
        client_keep_alive: false,
        informational: false,
        upgrade,
    }
}

/// A reader whose one read completes with `b"x"` at `ready`; counts the
/// reads issued (a re-issued read would lose bytes with io_uring).
struct Slow {
    ready: Instant,
    reads: usize,
}

impl monoio::io::AsyncReadRent for Slow {
    async fn read<T: monoio::buf::IoBufMut>(&mut self, mut buf: T) -> monoio::BufResult<usize, T> {
        self.reads += 1;
        monoio::time::sleep_until(self.ready).await;
        // SAFETY: IoBufMut guarantees `write_ptr` is valid for
        // `bytes_total` (at least 1 here) bytes; one is written and
        // marked initialised.
        unsafe {
            *buf.write_ptr() = b'x';
            buf.set_init(1);
        }
        (Ok(1), buf)
    }

    async fn readv<T: monoio::buf::IoVecBufMut>(&mut self, buf: T) -> monoio::BufResult<usize, T> {
        (Ok(0), buf)
    }
}

/// Runs one `read_backend` with `timeout` while `steps` (after each
/// delay) set the backend's due time: `Some(true)` to now, `Some(false)`
/// to none. Returns the result, the reads issued and the time taken.
fn read_with(
    data_after: Duration,
    timeout: Duration,
    initial: bool,
    steps: &[(Duration, bool)],
) -> (Result<usize, ExchangeError>, usize, Duration) {
    super::super::test_io::run(async {
        let t0 = Instant::now();
        let mut r = Slow {
            ready: t0 + data_after,
            reads: 0,
        };
        let mut buf = ReadBuf::with_capacity(64);
        let started = Cell::new(false);
        let due = Cell::new(initial.then_some(t0));
        let timer = crate::rt::deadline::Deadline::new();
        let progress = Progress {
            started: &started,
            backend_due: &due,
            request: &Cell::new(RequestState::Sending),
            timer: &timer,
        };
        let steps = async {
            for &(after, set) in steps {
                monoio::time::sleep_until(t0 + after).await;
                due.set(set.then(Instant::now));
            }
            std::future::pending::<()>().await
        };
        // As in `exchange`: the request side first, then the response.
        let res = {
            let mut steps = pin!(steps);
            let mut read = pin!(read_backend(&mut r, &mut buf, timeout, &progress));
            poll_fn(|cx| {
                let _ = steps.as_mut().poll(cx);
                read.as_mut().poll(cx)
            })
            .await
        };
        (res, r.reads, t0.elapsed())
    })
}

#[test]
fn the_backend_timeout_waits_for_the_request_side() {
    let ms = Duration::from_millis;
    // Due from the start: a plain timeout.
    let (res, reads, took) = read_with(ms(400), ms(100), true, &[]);
    assert!(matches!(res, Err(ExchangeError::Timeout { .. })), "{res:?}");
    assert_eq!(reads, 1);
    assert!(took < ms(300), "{took:?}");
    // The body streams (no due time) well past the timeout, then is
    // sent whole: the timeout runs from there.
    let (res, reads, took) = read_with(ms(2000), ms(100), false, &[(ms(300), true)]);
    assert!(matches!(res, Err(ExchangeError::Timeout { .. })), "{res:?}");
    assert_eq!(reads, 1);
    assert!(took >= ms(400) && took < ms(1500), "{took:?}");
    // Each body write re-arms it; the one read sees the answer.
    let steps = [(ms(80), true), (ms(160), true), (ms(240), true)];
    let (res, reads, _) = read_with(ms(300), ms(100), true, &steps);
    assert_eq!(res, Ok(1));
    assert_eq!(reads, 1, "the read was re-issued");
}

#[test]
fn a_switch_must_answer_an_upgrade_with_the_right_key() {
    let good = b"HTTP/1.1 101 S\r\nUpgrade: websocket\r\nSec-WebSocket-Accept:  abc= \r\n\r\n";
    assert_eq!(check_switch(good, &switching(true), Some("abc=")), Ok(()));
    assert!(check_switch(good, &switching(true), Some("xyz=")).is_err());
    assert!(check_switch(good, &switching(true), None).is_err());
    assert!(check_switch(good, &switching(false), Some("abc=")).is_err());
    let twice =
        b"HTTP/1.1 101 S\r\nSec-WebSocket-Accept: abc=\r\nSec-WebSocket-Accept: abc=\r\n\r\n";
    assert!(check_switch(twice, &switching(true), Some("abc=")).is_err());
    let none = b"HTTP/1.1 101 S\r\nUpgrade: websocket\r\n\r\n";
    assert!(check_switch(none, &switching(true), Some("abc=")).is_err());
}
