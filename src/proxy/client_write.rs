//! Writes toward a client on the HTTP path, bounded like nginx's
//! `send_timeout`: one write of at most [`CHUNK`] bytes that gets nowhere
//! for the idle timeout ends the exchange, and a write cut short (timed out,
//! failed, or dropped part way) marks the writer unusable for good.

use std::time::Duration;

use monoio::buf::IoBuf;
use monoio::io::{AsyncWriteRent, AsyncWriteRentExt, OwnedWriteHalf};

use super::ClientConn;
use crate::proto::http::error_response;
use crate::rt::deadline::Deadline;
use crate::rt::io::CHUNK;

/// The client's writer on the HTTP path, with its bound and its cut mark.
pub(crate) struct ClientWriter<'a, W> {
    w: &'a mut W,
    /// Set while a write is under way and left set when it does not
    /// complete: what is on the wire may end mid-message (a TLS writer even
    /// panics when used again), so nothing may be written or shut after it.
    cut: &'a mut bool,
    /// The connection's client-side timer, moved to `idle` past each write.
    timer: &'a Deadline,
    idle: Duration,
    /// Where the bytes written are counted, if anywhere.
    sent: Option<&'a std::cell::Cell<u64>>,
}

/// A write toward the client did not complete (or the writer was cut).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cut;

impl<'a, W: AsyncWriteRent> ClientWriter<'a, W> {
    /// Bounds each write of `w` by `idle` of no progress; `cut` is the
    /// connection's mark (see `ClientConn::writer_cut`), on `timer`.
    pub(crate) fn new(
        w: &'a mut W,
        cut: &'a mut bool,
        timer: &'a Deadline,
        idle: Duration,
    ) -> Self {
        Self {
            w,
            cut,
            timer,
            idle,
            sent: None,
        }
    }

    /// Counts every byte written into `sent` from now on.
    pub(crate) fn counting(mut self, sent: &'a std::cell::Cell<u64>) -> Self {
        self.sent = Some(sent);
        self
    }

    /// `idle` from now (a year past what the clock can hold).
    fn deadline(&self) -> monoio::time::Instant {
        let now = monoio::time::Instant::now();
        now.checked_add(self.idle)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
    }

    fn count(&self, n: usize) {
        if let Some(c) = self.sent {
            c.set(c.get() + n as u64);
        }
    }

    /// Whether a write was cut short: the writer must not be used again.
    #[cfg(test)]
    pub fn is_cut(&self) -> bool {
        *self.cut
    }

    /// Writes `buf[start..end]` whole, each chunk of at most [`CHUNK`]
    /// bytes bounded by `idle` (the connection's timer, moved per chunk), and gives the buffer back (an empty one when a
    /// write timed out: it went with the abandoned write).
    pub(crate) async fn write_range(
        &mut self,
        mut buf: Vec<u8>,
        start: usize,
        end: usize,
    ) -> (Result<(), Cut>, Vec<u8>) {
        if *self.cut {
            return (Err(Cut), buf);
        }
        let mut at = start;
        while at < end {
            let to = end.min(at + CHUNK);
            *self.cut = true;
            let deadline = self.deadline();
            let write = self.w.write_all(buf.slice(at..to));
            match self.timer.bound(deadline, write).await {
                Ok((Ok(_), slice)) => buf = slice.into_inner(),
                Ok((Err(_), slice)) => return (Err(Cut), slice.into_inner()),
                Err(_) => return (Err(Cut), Vec::new()),
            }
            *self.cut = false;
            self.count(to - at);
            at = to;
        }
        (Ok(()), buf)
    }

    /// Writes the whole of `buf` and gives it back.
    pub(crate) async fn write_vec(&mut self, buf: Vec<u8>) -> (Result<(), Cut>, Vec<u8>) {
        let end = buf.len();
        self.write_range(buf, 0, end).await
    }

    /// Writes a small static answer (an error response); nothing when the
    /// writer is cut.
    pub(crate) async fn write_static(&mut self, bytes: &'static [u8]) -> Result<(), Cut> {
        if *self.cut {
            return Err(Cut);
        }
        *self.cut = true;
        let at = self.deadline();
        match self.timer.bound(at, self.w.write_all(bytes)).await {
            Ok((Ok(_), _)) => {
                *self.cut = false;
                self.count(bytes.len());
                Ok(())
            }
            _ => Err(Cut),
        }
    }
}

impl<S: AsyncWriteRent> ClientConn<S> {
    /// The client's writer, each write bounded by `idle` of no progress.
    pub(crate) fn writer(&mut self, idle: Duration) -> ClientWriter<'_, OwnedWriteHalf<S>> {
        ClientWriter::new(&mut self.w, &mut self.writer_cut, &self.timer, idle).counting(&self.sent)
    }

    /// Answers `status` (an error response, bounded by `idle`); nothing
    /// when the writer was cut.
    pub(crate) async fn answer(&mut self, status: u16, idle: Duration) {
        self.answered.set(status);
        let _ = self.writer(idle).write_static(error_response(status)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_io::{run, Broken, Sink, Stuck};
    use super::*;

    const IDLE: Duration = Duration::from_millis(50);

    #[test]
    fn a_write_that_completes_leaves_the_writer_usable() {
        run(async {
            let (mut sink, mut cut, d) = (Sink::default(), false, Deadline::new());
            let mut w = ClientWriter::new(&mut sink, &mut cut, &d, IDLE);
            let body = vec![7u8; 3 * CHUNK + 5];
            let (res, back) = w.write_range(body, 1, 3 * CHUNK + 5).await;
            assert_eq!(res, Ok(()));
            assert_eq!(back.len(), 3 * CHUNK + 5, "the buffer comes back");
            assert_eq!(w.write_static(b"x").await, Ok(()));
            assert!(!cut);
            assert_eq!(sink.0.len(), 3 * CHUNK + 5);
        });
    }

    #[test]
    fn a_write_that_gets_nowhere_for_the_idle_time_cuts_the_writer() {
        run(async {
            let (mut stuck, mut cut, d) = (Stuck, false, Deadline::new());
            let mut w = ClientWriter::new(&mut stuck, &mut cut, &d, IDLE);
            let started = std::time::Instant::now();
            let (res, _) = w.write_vec(vec![1u8; 10]).await;
            assert_eq!(res, Err(Cut));
            assert!(started.elapsed() < Duration::from_secs(2));
            assert!(w.is_cut());
            // A cut writer is never written to again.
            assert_eq!(w.write_static(b"HTTP/1.1 502").await, Err(Cut));
            assert!(cut);
        });
    }

    #[test]
    fn a_failed_or_dropped_write_cuts_the_writer() {
        run(async {
            let (mut broken, mut cut, d) = (Broken, false, Deadline::new());
            let mut w = ClientWriter::new(&mut broken, &mut cut, &d, IDLE);
            assert_eq!(w.write_static(b"x").await, Err(Cut));
            assert!(cut);

            let (mut stuck, mut cut, d) = (Stuck, false, Deadline::new());
            let mut w = ClientWriter::new(&mut stuck, &mut cut, &d, Duration::from_secs(60));
            let write = w.write_vec(vec![1u8; 10]);
            // The exchange around it ends (e.g. the request side failed)
            // while the write is under way.
            let _ = monoio::time::timeout(IDLE, write).await;
            assert!(cut);
        });
    }
}
