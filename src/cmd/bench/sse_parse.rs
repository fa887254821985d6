//! An incremental `text/event-stream` parser for the load generator, after
//! the HTML event-stream rules: lines end in CR LF, LF or CR (a CR LF may be
//! split across reads); a blank line dispatches the event; `data` lines are
//! joined with LF; lines starting with `:` are comments; a field without a
//! colon has an empty value and one space after the colon is dropped; an
//! event with no `data` line is not dispatched; the last `id` persists; a
//! leading byte order mark is skipped.

use thiserror::Error;

/// UTF-8 byte order mark, skipped at the very start of a stream.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Bytes that do not fit the parser's limits.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SseError {
    /// One line, or one event's data, grew past the limit.
    #[error("event stream line or event longer than {0} bytes")]
    TooLong(usize),
}

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event` field, or `message` when there was none.
    pub kind: Vec<u8>,
    /// The last event id seen on the stream (it persists across events).
    pub id: Option<Vec<u8>>,
    /// The `data` lines joined with LF.
    pub data: Vec<u8>,
}

/// Parser state between reads.
#[derive(Debug)]
pub struct SseParser {
    /// The current line's bytes so far (only when a read ended inside it).
    line: Vec<u8>,
    /// The previous byte was a CR: an LF right after it ends nothing.
    after_cr: bool,
    /// A line has ended (a BOM can only start the first one).
    first_done: bool,
    /// Most bytes in one line or one event's data.
    max: usize,
    kind: Vec<u8>,
    data: Vec<u8>,
    /// At least one `data` field in the current event.
    has_data: bool,
    last_id: Option<Vec<u8>>,
    retry: Option<u64>,
}

impl SseParser {
    /// A parser that refuses lines or events longer than `max` bytes.
    pub fn new(max: usize) -> SseParser {
        SseParser {
            line: Vec::new(),
            after_cr: false,
            first_done: false,
            max,
            kind: Vec::new(),
            data: Vec::new(),
            has_data: false,
            last_id: None,
            retry: None,
        }
    }

    /// The last `retry` value (milliseconds), if any.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// Parse from `buf` until one event is dispatched or the bytes run out.
    /// Returns the bytes consumed and the event, if one was completed; feed
    /// the rest again to get the next one.
    pub fn feed(&mut self, buf: &[u8]) -> Result<(usize, Option<Event>), SseError> {
        let mut pos = 0;
        while pos < buf.len() {
            if std::mem::take(&mut self.after_cr) && buf[pos] == b'\n' {
                pos += 1;
                continue;
            }
            let rest = &buf[pos..];
            let Some(i) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                if self.line.len() + rest.len() > self.max {
                    return Err(SseError::TooLong(self.max));
                }
                self.line.extend_from_slice(rest);
                return Ok((buf.len(), None));
            };
            self.after_cr = rest[i] == b'\r';
            pos += i + 1;
            let ev = if self.line.is_empty() {
                self.line_done(&rest[..i])?
            } else {
                if self.line.len() + i > self.max {
                    return Err(SseError::TooLong(self.max));
                }
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&rest[..i]);
                let ev = self.line_done(&line);
                line.clear();
                self.line = line;
                ev?
            };
            if ev.is_some() {
                return Ok((pos, ev));
            }
        }
        Ok((pos, None))
    }

    /// One complete line (without its end).
    fn line_done(&mut self, line: &[u8]) -> Result<Option<Event>, SseError> {
        // A BOM holds no CR or LF, so it always lands at the first line's start.
        let line = match std::mem::replace(&mut self.first_done, true) {
            false => line.strip_prefix(BOM).unwrap_or(line),
            true => line,
        };
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => {
                self.kind.clear();
                self.kind.extend_from_slice(value);
            }
            b"data" => {
                if self.data.len() + value.len() + 1 > self.max {
                    return Err(SseError::TooLong(self.max));
                }
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
                self.has_data = true;
            }
            b"id" if !value.contains(&0) => self.last_id = Some(value.to_vec()),
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
            }
            _ => {}
        }
        Ok(None)
    }

    /// The blank line: hand out the event if it carried data.
    fn dispatch(&mut self) -> Option<Event> {
        let kind = std::mem::take(&mut self.kind);
        if !self.has_data {
            return None;
        }
        self.has_data = false;
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the LF after the last data line
        Some(Event {
            kind: if kind.is_empty() {
                b"message".to_vec()
            } else {
                kind
            },
            id: self.last_id.clone(),
            data,
        })
    }
}

#[cfg(test)]
#[path = "sse_parse_tests.rs"]
mod tests;
