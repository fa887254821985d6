//! Read readiness: lets a relay wait until a stream has something to read
//! without lending it a buffer, then take what is there into a buffer the
//! worker shares between its connections. An idle session then owns no read
//! buffer at all. Streams that cannot do this say so, and are read the
//! usual way (a buffer lent to each pending read).

use std::io;

/// A read side that can report readiness and be read without waiting.
///
/// The relays call [`ReadReady::has_readiness`] once; when it is false they
/// never call the other two methods.
#[allow(async_fn_in_trait)]
pub(crate) trait ReadReady {
    /// Whether [`ReadReady::read_ready`] and [`ReadReady::try_read`] work
    /// on this stream (false: read it through `AsyncReadRent` as before).
    fn has_readiness(&self) -> bool {
        false
    }

    /// Waits until a read would find bytes, the end of the stream or an
    /// error, holding no buffer meanwhile. May wake spuriously: a
    /// [`ReadReady::try_read`] after it can still say `WouldBlock`.
    async fn read_ready(&mut self) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    /// Reads what can be read now into `dst`, without waiting: `Ok(0)` is
    /// the end of the stream, `Err(WouldBlock)` means nothing yet.
    fn try_read(&mut self, _dst: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}
