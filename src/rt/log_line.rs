//! A worker's side of the access log: lines are written into one reused
//! buffer (text `key=value` or JSON, every client-controlled string
//! escaped so that a line stays one line), handed to the writer in
//! batches, and stamped from a wall clock derived from the monotonic one
//! (no clock read of its own; the formatted second is cached).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::sync::Arc;

use super::access_log::{AccessLog, BATCH_BYTES};
use super::clock::now_ns;
use crate::config::AccessLogFormat;

/// One worker's access log buffer and clock.
pub(crate) struct LocalLog {
    log: Arc<AccessLog>,
    on: bool,
    json: bool,
    buf: RefCell<Vec<u8>>,
    lines: Cell<u64>,
    /// A monotonic time (`rt::clock::now_ns`) and the wall-clock Unix
    /// milliseconds it was.
    base: Cell<(u64, u64)>,
    /// The last second formatted, and its text (`YYYY-MM-DDTHH:MM:SS`).
    second: RefCell<(u64, [u8; 19])>,
}

impl LocalLog {
    /// A worker's buffer in front of `log`.
    pub(crate) fn new(log: Arc<AccessLog>) -> Self {
        LocalLog {
            on: log.is_on(),
            json: log.format() == AccessLogFormat::Json,
            buf: RefCell::new(Vec::new()),
            lines: Cell::new(0),
            base: Cell::new((now_ns(), crate::pool::clock::unix_ms())),
            second: RefCell::new((u64::MAX, [b'0'; 19])),
            log,
        }
    }

    /// Whether lines are wanted (nothing needs to be gathered otherwise).
    pub(crate) fn is_on(&self) -> bool {
        self.on
    }

    /// Writes one line of kind `kind` (plain ASCII: `http`, `ws`) stamped
    /// `at` (`rt::clock::now_ns`): `fields` adds the rest. Hands the buffer over when it is full enough.
    pub(crate) fn line(&self, at: u64, kind: &str, fields: impl FnOnce(&mut Line<'_>)) {
        if !self.on {
            return;
        }
        let mut buf = self.buf.borrow_mut();
        if buf.capacity() == 0 {
            *buf = self.log.buffer();
        }
        buf.reserve(512);
        let mut stamp = [0u8; 24];
        self.stamp(at, &mut stamp);
        if self.json {
            buf.extend_from_slice(b"{\"time\":\"");
            buf.extend_from_slice(&stamp);
            buf.extend_from_slice(b"\",\"kind\":\"");
            buf.extend_from_slice(kind.as_bytes());
            buf.push(b'"');
        } else {
            buf.extend_from_slice(&stamp);
            buf.extend_from_slice(b" kind=");
            buf.extend_from_slice(kind.as_bytes());
        }
        let mut line = Line {
            out: &mut buf,
            json: self.json,
        };
        fields(&mut line);
        if self.json {
            buf.push(b'}');
        }
        buf.push(b'\n');
        self.lines.set(self.lines.get() + 1);
        if buf.len() >= BATCH_BYTES {
            drop(buf);
            self.flush();
        }
    }

    /// Hands what is buffered to the writer.
    pub(crate) fn flush(&self) {
        let lines = self.lines.replace(0);
        if lines == 0 {
            return;
        }
        let full = std::mem::take(&mut *self.buf.borrow_mut());
        self.log.submit(full, lines);
    }

    /// Takes the wall clock again (it may have been stepped since).
    pub(crate) fn resync_clock(&self) {
        self.base.set((now_ns(), crate::pool::clock::unix_ms()));
    }

    /// `at` as `YYYY-MM-DDTHH:MM:SS.mmmZ` into `out`.
    fn stamp(&self, at: u64, out: &mut [u8; 24]) {
        let (base, base_ms) = self.base.get();
        let ms = base_ms.saturating_add(at.saturating_sub(base) / 1_000_000);
        let sec = ms / 1000;
        let mut cached = self.second.borrow_mut();
        if cached.0 != sec {
            *cached = (sec, format_second(sec));
        }
        out[..19].copy_from_slice(&cached.1);
        let frac = ms % 1000;
        out[19] = b'.';
        out[20] = b'0' + (frac / 100) as u8;
        out[21] = b'0' + (frac / 10 % 10) as u8;
        out[22] = b'0' + (frac % 10) as u8;
        out[23] = b'Z';
    }
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SS` (UTC; days to a civil date as in
/// Howard Hinnant's `civil_from_days`).
fn format_second(secs: u64) -> [u8; 19] {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = *b"0000-00-00T00:00:00";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (0..width).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year.clamp(0, 9999) as u64);
    put(5, 2, month as u64);
    put(8, 2, day as u64);
    put(11, 2, rem / 3600);
    put(14, 2, rem / 60 % 60);
    put(17, 2, rem % 60);
    out
}

/// A field's key with its separators in both formats, built by `key!`.
pub(crate) struct Key {
    /// ` NAME=`
    pub text: &'static str,
    /// `,"NAME":`
    pub json: &'static str,
}

/// The [`Key`] of a field named by a literal.
macro_rules! key {
    ($name:literal) => {
        &$crate::rt::log_line::Key {
            text: concat!(" ", $name, "="),
            json: concat!(",\"", $name, "\":"),
        }
    };
}
pub(crate) use key;

/// One line being written (after its time): fields in the log's format.
pub(crate) struct Line<'a> {
    out: &'a mut Vec<u8>,
    json: bool,
}

impl Line<'_> {
    #[inline]
    fn key(&mut self, key: &Key) {
        let k = if self.json { key.json } else { key.text };
        self.out.extend_from_slice(k.as_bytes());
    }

    /// A value known to be plain ASCII without spaces or quotes (a kind,
    /// `closed_by`, an id), unquoted in text and quoted in JSON.
    pub(crate) fn raw(&mut self, key: &Key, value: &str) {
        self.key(key);
        if self.json {
            self.out.push(b'"');
            escape_json(self.out, value.as_bytes());
            self.out.push(b'"');
        } else {
            escape_text(self.out, value.as_bytes());
        }
    }

    /// Any bytes (a path, a backend id): quoted and escaped in both formats.
    pub(crate) fn text(&mut self, key: &Key, value: &[u8]) {
        self.key(key);
        self.out.push(b'"');
        if self.json {
            escape_json(self.out, value);
        } else {
            escape_text(self.out, value);
        }
        self.out.push(b'"');
    }

    /// A string already escaped for each format (`text` for text lines,
    /// `json` for JSON ones), quoted in both.
    pub(crate) fn escaped(&mut self, key: &Key, text: &[u8], json: &[u8]) {
        self.key(key);
        self.out.push(b'"');
        self.out
            .extend_from_slice(if self.json { json } else { text });
        self.out.push(b'"');
    }

    /// A socket address already written with [`write_addr`] (unquoted in
    /// text).
    pub(crate) fn written_addr(&mut self, key: &Key, addr: &[u8]) {
        self.key(key);
        if self.json {
            self.out.push(b'"');
            self.out.extend_from_slice(addr);
            self.out.push(b'"');
        } else {
            self.out.extend_from_slice(addr);
        }
    }

    /// A socket address (unquoted in text).
    pub(crate) fn addr(&mut self, key: &Key, addr: SocketAddr) {
        self.key(key);
        if self.json {
            self.out.push(b'"');
        }
        write_addr(self.out, addr);
        if self.json {
            self.out.push(b'"');
        }
    }

    /// An unsigned number.
    pub(crate) fn num(&mut self, key: &Key, value: u64) {
        self.key(key);
        push_u64(self.out, value);
    }

    /// Microseconds as milliseconds with three decimals; `-` (text) or
    /// `null` (JSON) when there is none.
    pub(crate) fn ms(&mut self, key: &Key, micros: Option<u64>) {
        self.key(key);
        match micros {
            Some(us) => {
                push_u64(self.out, us / 1000);
                let frac = us % 1000;
                self.out.extend_from_slice(&[
                    b'.',
                    b'0' + (frac / 100) as u8,
                    b'0' + (frac / 10 % 10) as u8,
                    b'0' + (frac % 10) as u8,
                ]);
            }
            None if self.json => self.out.extend_from_slice(b"null"),
            None => self.out.push(b'-'),
        }
    }
}

/// `addr` as text (`1.2.3.4:5`, `[::1]:5`): IPv4 without the formatting
/// machinery, which costs more than the rest of a line.
pub(crate) fn write_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            let [a0, a1, a2, a3] = a.ip().octets();
            push_u64(out, u64::from(a0));
            for o in [a1, a2, a3] {
                out.push(b'.');
                push_u64(out, u64::from(o));
            }
            out.push(b':');
            push_u64(out, u64::from(a.port()));
        }
        SocketAddr::V6(_) => {
            use std::io::Write as _;
            let _ = write!(out, "{addr}");
        }
    }
}

/// Decimal digits of `v`.
fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    // A few bytes: pushed one by one, cheaper than a copy call.
    for &d in &digits[i..] {
        out.push(d);
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Text escaping: printable ASCII as is, except `"` and `\`; every other
/// byte as `\xNN`. The result is printable ASCII. Runs that need nothing
/// are copied whole.
pub(crate) fn escape_text(out: &mut Vec<u8>, value: &[u8]) {
    let mut run = 0;
    for (i, &b) in value.iter().enumerate() {
        if matches!(b, 0x20..=0x7e) && b != b'"' && b != b'\\' {
            continue;
        }
        out.extend_from_slice(&value[run..i]);
        run = i + 1;
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            _ => out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]),
        }
    }
    out.extend_from_slice(&value[run..]);
}

/// JSON string escaping: valid UTF-8 kept, `"`, `\` and control
/// characters escaped, bytes that are not UTF-8 become U+FFFD.
pub(crate) fn escape_json(out: &mut Vec<u8>, value: &[u8]) {
    for chunk in value.utf8_chunks() {
        let valid = chunk.valid().as_bytes();
        let mut run = 0;
        for (i, &b) in valid.iter().enumerate() {
            if b >= 0x20 && b != 0x7f && b != b'"' && b != b'\\' {
                continue;
            }
            out.extend_from_slice(&valid[run..i]);
            run = i + 1;
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                _ => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ]),
            }
        }
        out.extend_from_slice(&valid[run..]);
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_format_as_utc_dates() {
        assert_eq!(&format_second(0), b"1970-01-01T00:00:00");
        assert_eq!(&format_second(951_782_400), b"2000-02-29T00:00:00");
        assert_eq!(&format_second(1_796_594_177), b"2026-12-06T21:56:17");
    }

    #[test]
    fn text_escaping_leaves_printable_ascii_only() {
        let mut out = Vec::new();
        escape_text(&mut out, b"/a b\"\\\n\x1b\xff");
        assert_eq!(out, br#"/a b\"\\\x0a\x1b\xff"#);
    }

    #[test]
    fn json_escaping_parses_back() {
        let raw = b"/x\"y\\z\n\r\t\x01\x7f\xc3\xa9\xff";
        let mut out = b"\"".to_vec();
        escape_json(&mut out, raw);
        out.push(b'"');
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, "/x\"y\\z\n\r\t\u{1}\u{7f}é\u{fffd}");
        assert!(!out.iter().any(|&b| b < 0x20));
    }

    #[test]
    fn numbers_and_milliseconds() {
        let mut out = Vec::new();
        push_u64(&mut out, 0);
        out.push(b' ');
        push_u64(&mut out, u64::MAX);
        assert_eq!(out, b"0 18446744073709551615");
        let mut buf = Vec::new();
        let mut line = Line {
            out: &mut buf,
            json: false,
        };
        line.ms(key!("t"), Some(12_345));
        line.ms(key!("n"), None);
        assert_eq!(buf, b" t=12.345 n=-");
    }
}
