//! Tests of the event-stream parser: the field rules, and the same events
//! for every way a byte stream is cut into reads.

use super::*;

/// A stream with a BOM, every line ending, comments, a field without a
/// colon, an event without data, an id that persists and one with a NUL.
const STREAM: &[u8] = b"\xEF\xBB\xBFretry: 2000\r\n\
event: open\r\n\
id: T.0\r\n\
data: {\"session\":\"T\"}\r\n\
\r\n\
: keep-alive\n\
\n\
id: T.1\n\
data: first line\n\
data:second line\r\
data:  two spaces\r\
data\r\n\
\r\
event: nothing\n\
\n\
data: same id as before\n\
\n\
id: bad\0id\n\
event: binary\n\
id: T.2\n\
bogus: field\n\
data: AAEC\n\
\n\
event: close\r\n\
id: T.3\r\n\
data: {\"code\":1000,\"reason\":\"\"}\r\n\
\r\n\
data: no blank line after me";

fn ev(kind: &str, id: &str, data: &str) -> Event {
    Event {
        kind: kind.as_bytes().to_vec(),
        id: Some(id.as_bytes().to_vec()),
        data: data.as_bytes().to_vec(),
    }
}

fn expected() -> Vec<Event> {
    vec![
        ev("open", "T.0", "{\"session\":\"T\"}"),
        ev("message", "T.1", "first line\nsecond line\n two spaces\n"),
        ev("message", "T.1", "same id as before"),
        ev("binary", "T.2", "AAEC"),
        ev("close", "T.3", "{\"code\":1000,\"reason\":\"\"}"),
    ]
}

/// Feed `chunks` one after another, as reads would deliver them.
fn parse(chunks: &[&[u8]]) -> (Vec<Event>, SseParser) {
    let mut p = SseParser::new(1 << 16);
    let mut out = Vec::new();
    for chunk in chunks {
        let mut rest = *chunk;
        while !rest.is_empty() {
            let (n, e) = p.feed(rest).expect("parses");
            assert!(n > 0 || e.is_some(), "no progress");
            rest = &rest[n..];
            out.extend(e);
        }
    }
    (out, p)
}

#[test]
fn the_whole_stream_at_once() {
    let (events, p) = parse(&[STREAM]);
    assert_eq!(events, expected());
    assert_eq!(p.retry(), Some(2000));
}

#[test]
fn every_split_point_gives_the_same_events() {
    for i in 0..=STREAM.len() {
        let (events, _) = parse(&[&STREAM[..i], &STREAM[i..]]);
        assert_eq!(events, expected(), "split at {i}");
    }
}

#[test]
fn every_pair_of_split_points_gives_the_same_events() {
    for i in 0..=STREAM.len() {
        for j in i..=STREAM.len() {
            let (events, _) = parse(&[&STREAM[..i], &STREAM[i..j], &STREAM[j..]]);
            assert_eq!(events, expected(), "splits at {i} and {j}");
        }
    }
}

#[test]
fn one_byte_at_a_time() {
    let chunks: Vec<&[u8]> = STREAM.chunks(1).collect();
    let (events, _) = parse(&chunks);
    assert_eq!(events, expected());
}

#[test]
fn a_bom_only_counts_at_the_start() {
    let (events, _) = parse(&[b"data: a\n\n\xEF\xBB\xBFdata: b\n\n"]);
    assert_eq!(
        events.len(),
        1,
        "the second event's field name is not `data`"
    );
    assert_eq!(events[0].data, b"a");
    assert_eq!(events[0].id, None);
}

#[test]
fn empty_data_is_still_an_event() {
    let (events, _) = parse(&[b"data\n\ndata:\n\n"]);
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.data.is_empty()));
}

#[test]
fn bad_retry_values_are_ignored() {
    let (_, p) = parse(&[b"retry: 12a\nretry: -1\nretry:\n"]);
    assert_eq!(p.retry(), None);
    let (_, p) = parse(&[b"retry:750\nretry: x\n"]);
    assert_eq!(p.retry(), Some(750));
}

#[test]
fn long_lines_and_events_are_refused() {
    let mut p = SseParser::new(16);
    assert_eq!(
        p.feed(&[b'x'; 17]).map(|(n, _)| n),
        Err(SseError::TooLong(16))
    );
    let mut p = SseParser::new(16);
    assert!(p.feed(b"data: 0123456789\n").is_ok());
    assert_eq!(
        p.feed(b"data: 0123456789\n").map(|(n, _)| n),
        Err(SseError::TooLong(16))
    );
    let mut p = SseParser::new(16);
    assert!(p.feed(b"data: 0123").is_ok());
    assert!(p.feed(b"456789abcdef\n").is_err());
}

#[test]
fn one_event_per_call_and_the_rest_left_over() {
    let mut p = SseParser::new(1024);
    let buf = b"data: a\n\ndata: b\n\n";
    let (n, e) = p.feed(buf).expect("parses");
    assert_eq!(n, 9);
    assert_eq!(e.map(|e| e.data), Some(b"a".to_vec()));
    let (n2, e) = p.feed(&buf[n..]).expect("parses");
    assert_eq!(n + n2, buf.len());
    assert_eq!(e.map(|e| e.data), Some(b"b".to_vec()));
}
