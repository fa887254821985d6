//! The access log's writer: workers hand it whole batches of lines through
//! a bounded queue and never wait on it; one thread writes them out (to
//! stderr or a file, which it reopens on request for logrotate). A batch
//! that finds the queue full is dropped and its lines counted.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam::queue::ArrayQueue;

use crate::config::{AccessLogFormat, AccessLogTarget};

/// Batches waiting for the writer at most (each up to [`BATCH_BYTES`] or so).
const QUEUE_BATCHES: usize = 64;
/// A worker hands over its lines once they reach this size.
pub(crate) const BATCH_BYTES: usize = 32 * 1024;
/// How often the writer looks at its reopen and stop marks when idle.
const TICK: Duration = Duration::from_millis(200);

/// A batch of whole lines and how many lines it holds.
struct Batch {
    bytes: Vec<u8>,
    lines: u64,
}

/// The process's access log: the queue toward its writer thread, the
/// buffers it gives back, and the count of lines dropped.
pub(crate) struct AccessLog {
    format: AccessLogFormat,
    tx: Option<SyncSender<Batch>>,
    /// Emptied buffers coming back from the writer, to be filled again.
    free: Arc<ArrayQueue<Vec<u8>>>,
    dropped: AtomicU64,
    reopen: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// The writer thread, joined (for a bounded time) at [`AccessLog::finish`].
    done: Mutex<Option<Receiver<()>>>,
}

/// The output a writer thread writes to.
enum Sink {
    Stderr,
    File(PathBuf, File),
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl AccessLog {
    /// Starts the writer for `target` (nothing for `Off`); a file that
    /// cannot be opened is an error now rather than lost lines later.
    pub(crate) fn start(
        target: &AccessLogTarget,
        format: AccessLogFormat,
    ) -> io::Result<Arc<AccessLog>> {
        let reopen = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let sink = match target {
            AccessLogTarget::Off => None,
            AccessLogTarget::Stderr => Some(Sink::Stderr),
            AccessLogTarget::File(path) => Some(Sink::File(path.clone(), open_append(path)?)),
        };
        let free = Arc::new(ArrayQueue::new(QUEUE_BATCHES));
        let mut log = AccessLog {
            format,
            tx: None,
            free: free.clone(),
            dropped: AtomicU64::new(0),
            reopen: reopen.clone(),
            stop: stop.clone(),
            done: Mutex::new(None),
        };
        let Some(sink) = sink else {
            return Ok(Arc::new(log));
        };
        let (tx, rx) = mpsc::sync_channel::<Batch>(QUEUE_BATCHES);
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("wslb-access-log".into())
            .spawn(move || {
                write_loop(sink, &rx, &reopen, &stop, |buf| {
                    let _ = free.push(buf);
                });
                let _ = done_tx.send(());
            })?;
        log.tx = Some(tx);
        log.done = Mutex::new(Some(done_rx));
        Ok(Arc::new(log))
    }

    /// Whether lines are wanted at all.
    pub(crate) fn is_on(&self) -> bool {
        self.tx.is_some()
    }

    /// The line format.
    pub(crate) fn format(&self) -> AccessLogFormat {
        self.format
    }

    /// An empty buffer to fill with lines (a recycled one when there is).
    pub(crate) fn buffer(&self) -> Vec<u8> {
        self.free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BATCH_BYTES + 1024))
    }

    /// Hands `lines` whole lines in `bytes` to the writer without waiting;
    /// when its queue is full they are dropped and counted.
    pub(crate) fn submit(&self, mut bytes: Vec<u8>, lines: u64) {
        let Some(tx) = &self.tx else { return };
        if let Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) =
            tx.try_send(Batch { bytes, lines })
        {
            self.dropped.fetch_add(b.lines, Ordering::Relaxed);
            bytes = b.bytes;
            bytes.clear();
            let _ = self.free.push(bytes);
        }
    }

    /// Lines dropped because the writer could not keep up.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Asks the writer to reopen its file (after logrotate renamed it).
    pub(crate) fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
    }

    /// Asks the writer to write what is queued and stop; waits for it at
    /// most `wait` (a blocked stderr must not hold the process).
    pub(crate) fn finish(&self, wait: Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let done = self.done.lock().ok().and_then(|mut d| d.take());
        if let Some(done) = done {
            let _ = done.recv_timeout(wait);
        }
    }
}

/// The writer thread: takes batches, coalesces what is queued into one
/// write, gives the buffers back; reopens the file when asked; returns once
/// asked to stop and the queue is empty.
fn write_loop(
    mut sink: Sink,
    rx: &Receiver<Batch>,
    reopen: &AtomicBool,
    stop: &AtomicBool,
    mut recycle: impl FnMut(Vec<u8>),
) {
    let mut out: Vec<u8> = Vec::with_capacity(4 * BATCH_BYTES);
    loop {
        if reopen.swap(false, Ordering::Relaxed) {
            if let Sink::File(path, file) = &mut sink {
                match open_append(path) {
                    Ok(f) => *file = f,
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot reopen the access log; writing to the old file")
                    }
                }
            }
        }
        let first = match rx.recv_timeout(TICK) {
            Ok(b) => b,
            Err(RecvTimeoutError::Timeout) if stop.load(Ordering::Relaxed) => return,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        out.clear();
        let mut take = |mut b: Batch, out: &mut Vec<u8>| {
            out.extend_from_slice(&b.bytes);
            b.bytes.clear();
            recycle(b.bytes);
        };
        take(first, &mut out);
        while out.len() < 4 * BATCH_BYTES {
            match rx.try_recv() {
                Ok(b) => take(b, &mut out),
                Err(_) => break,
            }
        }
        let res = match &mut sink {
            Sink::Stderr => io::stderr().lock().write_all(&out),
            Sink::File(_, f) => f.write_all(&out),
        };
        if let Err(e) = res {
            // Reported on the main log, which may be the same stderr:
            // rarely, so a broken destination does not flood it.
            static REPORTED: AtomicBool = AtomicBool::new(false);
            if !REPORTED.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %e, "cannot write the access log");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_takes_nothing_and_drops_nothing() {
        let log = AccessLog::start(&AccessLogTarget::Off, AccessLogFormat::Text).unwrap();
        assert!(!log.is_on());
        log.submit(b"x\n".to_vec(), 1);
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn a_file_gets_the_lines_and_reopens_after_a_rename() {
        let dir = std::env::temp_dir().join(format!("wslb-al-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("access.log");
        let target = AccessLogTarget::File(path.clone());
        let log = AccessLog::start(&target, AccessLogFormat::Json).unwrap();
        assert!(log.is_on());
        let mut b = log.buffer();
        b.extend_from_slice(b"one\n");
        log.submit(b, 1);
        let wait_for = |p: &Path, want: &str| {
            for _ in 0..200 {
                if std::fs::read_to_string(p).is_ok_and(|s| s == want) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            panic!("{} never held {want:?}", p.display());
        };
        wait_for(&path, "one\n");
        let rotated = dir.join("access.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen();
        std::thread::sleep(3 * TICK);
        log.submit(b"two\n".to_vec(), 1);
        wait_for(&path, "two\n");
        wait_for(&rotated, "one\n");
        log.finish(Duration::from_secs(2));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
