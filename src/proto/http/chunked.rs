//! Streaming validator for a chunked body (RFC 9112 section 7.1) that is
//! forwarded verbatim: it tells how many bytes belong to the body and when
//! it ends, and refuses every shape two parsers could read differently.

use super::HttpError;

/// Longest chunk-size line (size + extensions), CRLF excluded.
pub(crate) const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Largest trailer section (all trailer lines and the final CRLF).
pub(crate) const MAX_TRAILERS: usize = 16 * 1024;

/// How much of a buffer a scan took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Bytes at the front of the buffer that belong to the body.
    pub consumed: usize,
    /// The body ended within (or before) these bytes.
    pub done: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a chunk-size line (no digit yet).
    SizeStart,
    /// Reading hex digits.
    Size,
    /// Whitespace after the size: only more whitespace or `;` may follow.
    SizeWs,
    /// Inside chunk extensions, up to CR.
    Ext,
    /// Saw CR ending the size line; LF must follow.
    SizeLf,
    /// Inside chunk data, `remaining` bytes left.
    Data,
    /// After chunk data: CR then LF.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    /// Inside a trailer field name.
    TrailerName,
    /// Inside a trailer field value, up to CR.
    TrailerValue,
    /// Saw CR ending a trailer line; LF must follow.
    TrailerLf,
    /// Saw CR of the final empty line; LF must follow.
    FinalLf,
    Done,
}

/// Incremental chunked-body scanner. Feed it the body bytes in any pieces.
#[derive(Clone, Debug)]
pub struct ChunkedScanner {
    state: State,
    /// Chunk size being parsed, then bytes of data left.
    remaining: u64,
    /// Bytes of the current size line, or of the whole trailer section.
    line: usize,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        Self::new()
    }
}

/// An RFC 9110 token character (header names, chunk extension names).
pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Bytes allowed in extensions and trailer values: HTAB, VCHAR, SP, obs-text.
fn is_text(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl ChunkedScanner {
    /// A scanner at the start of a chunked body.
    pub fn new() -> Self {
        ChunkedScanner {
            state: State::SizeStart,
            remaining: 0,
            line: 0,
        }
    }

    /// True once the last chunk, trailers and final CRLF were seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Scan the next bytes of the body. `consumed` bytes at the front of
    /// `buf` belong to the body; once `done`, bytes after the end are not
    /// consumed. After an error the scanner must not be used again.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Progress, HttpError> {
        let mut i = 0;
        while i < buf.len() {
            if self.state == State::Done {
                break;
            }
            if self.state == State::Data {
                let avail = (buf.len() - i) as u64;
                let take = avail.min(self.remaining);
                // take <= avail, which came from a usize.
                i += take as usize;
                self.remaining -= take;
                if self.remaining == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            self.step(buf[i])?;
            i += 1;
        }
        Ok(Progress {
            consumed: i,
            done: self.state == State::Done,
        })
    }

    fn size_line_byte(&mut self) -> Result<(), HttpError> {
        self.line += 1;
        if self.line > MAX_CHUNK_LINE {
            return Err(HttpError::BadChunk("chunk-size line too long"));
        }
        Ok(())
    }

    fn trailer_byte(&mut self) -> Result<(), HttpError> {
        self.line += 1;
        if self.line > MAX_TRAILERS {
            return Err(HttpError::BadChunk("trailer section too large"));
        }
        Ok(())
    }

    fn step(&mut self, b: u8) -> Result<(), HttpError> {
        use State::*;
        match self.state {
            SizeStart | Size => {
                self.size_line_byte()?;
                if let Some(d) = hex(b) {
                    if self.remaining > u64::MAX >> 4 {
                        return Err(HttpError::BadChunk("chunk size overflow"));
                    }
                    self.remaining = (self.remaining << 4) | u64::from(d);
                    self.state = Size;
                } else if self.state == SizeStart {
                    return Err(HttpError::BadChunk("chunk size is not hex"));
                } else {
                    match b {
                        b'\r' => self.state = SizeLf,
                        b';' => self.state = Ext,
                        b' ' | b'\t' => self.state = SizeWs,
                        _ => return Err(HttpError::BadChunk("bad byte after chunk size")),
                    }
                }
            }
            SizeWs => {
                self.size_line_byte()?;
                match b {
                    b' ' | b'\t' => {}
                    b';' => self.state = Ext,
                    _ => return Err(HttpError::BadChunk("whitespace after chunk size")),
                }
            }
            Ext => {
                self.size_line_byte()?;
                if b == b'\r' {
                    self.state = SizeLf;
                } else if !is_text(b) {
                    return Err(HttpError::BadChunk("control byte in chunk extension"));
                }
            }
            SizeLf => {
                if b != b'\n' {
                    return Err(HttpError::BadChunk("CR without LF in chunk-size line"));
                }
                self.line = 0;
                self.state = if self.remaining == 0 {
                    TrailerStart
                } else {
                    Data
                };
            }
            Data => {
                // scan() consumes data in bulk; a byte here means zero left.
                self.state = DataCr;
                return self.step(b);
            }
            DataCr => {
                if b != b'\r' {
                    return Err(HttpError::BadChunk("chunk data not followed by CRLF"));
                }
                self.state = DataLf;
            }
            DataLf => {
                if b != b'\n' {
                    return Err(HttpError::BadChunk("chunk data not followed by CRLF"));
                }
                self.state = SizeStart;
            }
            TrailerStart => {
                self.trailer_byte()?;
                if b == b'\r' {
                    self.state = FinalLf;
                } else if is_tchar(b) {
                    self.state = TrailerName;
                } else {
                    return Err(HttpError::BadChunk("bad trailer line"));
                }
            }
            TrailerName => {
                self.trailer_byte()?;
                if b == b':' {
                    self.state = TrailerValue;
                } else if !is_tchar(b) {
                    return Err(HttpError::BadChunk("bad trailer field name"));
                }
            }
            TrailerValue => {
                self.trailer_byte()?;
                if b == b'\r' {
                    self.state = TrailerLf;
                } else if !is_text(b) {
                    return Err(HttpError::BadChunk("control byte in trailer value"));
                }
            }
            TrailerLf => {
                self.trailer_byte()?;
                if b != b'\n' {
                    return Err(HttpError::BadChunk("CR without LF in trailer"));
                }
                self.state = TrailerStart;
            }
            FinalLf => {
                if b != b'\n' {
                    return Err(HttpError::BadChunk("CR without LF at end of body"));
                }
                self.state = Done;
            }
            Done => {}
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "chunked_tests.rs"]
mod tests;
