//! Body framing tracker: given a [`BodyKind`], tells how many bytes of a
//! stream belong to the body and when it ends, without buffering it.

use super::chunked::{ChunkedScanner, Progress};
use super::{BodyKind, HttpError};

#[derive(Clone, Debug)]
enum Inner {
    Empty,
    Length(u64),
    Chunked(ChunkedScanner),
    UntilClose,
}

/// Tracks one message body as its bytes stream past.
#[derive(Clone, Debug)]
pub struct BodyTracker {
    inner: Inner,
}

impl BodyTracker {
    /// A tracker for a body delimited as `kind`.
    pub fn new(kind: BodyKind) -> Self {
        let inner = match kind {
            BodyKind::Empty | BodyKind::Length(0) => Inner::Empty,
            BodyKind::Length(n) => Inner::Length(n),
            BodyKind::Chunked => Inner::Chunked(ChunkedScanner::new()),
            BodyKind::UntilClose => Inner::UntilClose,
        };
        BodyTracker { inner }
    }

    /// Scan the next bytes: `consumed` bytes at the front of `buf` belong to
    /// the body. `Length` counts down, `Chunked` validates, `UntilClose`
    /// takes everything and is never done, `Empty` is done at once.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Progress, HttpError> {
        match &mut self.inner {
            Inner::Empty => Ok(Progress {
                consumed: 0,
                done: true,
            }),
            Inner::Length(left) => {
                let take = (*left).min(buf.len() as u64);
                *left -= take;
                let done = *left == 0;
                if done {
                    self.inner = Inner::Empty;
                }
                // take <= buf.len().
                Ok(Progress {
                    consumed: take as usize,
                    done,
                })
            }
            Inner::Chunked(s) => s.scan(buf),
            Inner::UntilClose => Ok(Progress {
                consumed: buf.len(),
                done: false,
            }),
        }
    }

    /// True once the whole body was seen.
    pub fn is_done(&self) -> bool {
        match &self.inner {
            Inner::Empty => true,
            Inner::Length(_) | Inner::UntilClose => false,
            Inner::Chunked(s) => s.is_done(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_done_at_once() {
        let mut t = BodyTracker::new(BodyKind::Empty);
        assert!(t.is_done());
        assert_eq!(
            t.scan(b"GET"),
            Ok(Progress {
                consumed: 0,
                done: true
            })
        );
        assert!(BodyTracker::new(BodyKind::Length(0)).is_done());
    }

    #[test]
    fn length_counts_down() {
        let mut t = BodyTracker::new(BodyKind::Length(5));
        assert!(!t.is_done());
        assert_eq!(
            t.scan(b"abc"),
            Ok(Progress {
                consumed: 3,
                done: false
            })
        );
        assert!(!t.is_done());
        assert_eq!(
            t.scan(b""),
            Ok(Progress {
                consumed: 0,
                done: false
            })
        );
        assert_eq!(
            t.scan(b"deXYZ"),
            Ok(Progress {
                consumed: 2,
                done: true
            })
        );
        assert!(t.is_done());
        assert_eq!(
            t.scan(b"XYZ"),
            Ok(Progress {
                consumed: 0,
                done: true
            })
        );
    }

    #[test]
    fn chunked_delegates() {
        let mut t = BodyTracker::new(BodyKind::Chunked);
        assert_eq!(
            t.scan(b"3\r\nabc\r\n"),
            Ok(Progress {
                consumed: 8,
                done: false
            })
        );
        assert_eq!(
            t.scan(b"0\r\n\r\nNEXT"),
            Ok(Progress {
                consumed: 5,
                done: true
            })
        );
        assert!(t.is_done());
        let mut bad = BodyTracker::new(BodyKind::Chunked);
        assert!(matches!(bad.scan(b"x\r\n"), Err(HttpError::BadChunk(_))));
    }

    #[test]
    fn until_close_takes_all() {
        let mut t = BodyTracker::new(BodyKind::UntilClose);
        assert_eq!(
            t.scan(b"abc"),
            Ok(Progress {
                consumed: 3,
                done: false
            })
        );
        assert!(!t.is_done());
    }
}
