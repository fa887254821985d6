//! Fuzz target: the chunked scanner on arbitrary bytes must never panic and
//! must give the same verdict whether the input comes whole or split in two
//! at a point taken from the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wslb::proto::http::{ChunkedScanner, HttpError, Progress};

fn split(data: &[u8], cut: usize) -> Result<Progress, HttpError> {
    let mut s = ChunkedScanner::new();
    let first = s.scan(&data[..cut])?;
    if first.done {
        return Ok(first);
    }
    let second = s.scan(&data[cut..])?;
    Ok(Progress { consumed: first.consumed + second.consumed, done: second.done })
}

fuzz_target!(|data: &[u8]| {
    let Some((&at, body)) = data.split_first() else { return };
    let whole = ChunkedScanner::new().scan(body);
    if let Ok(p) = whole {
        assert!(p.consumed <= body.len());
        assert!(p.done || p.consumed == body.len());
    }
    let cut = if body.is_empty() { 0 } else { usize::from(at) % (body.len() + 1) };
    assert_eq!(whole, split(body, cut));
});
