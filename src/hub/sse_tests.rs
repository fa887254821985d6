//! Tests of the fallback sessions' shared state: what a resume gets, what
//! the buffer keeps, and who is woken.

use super::*;
use std::task::{Context, Waker};

fn cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

fn shared(buffer: usize) -> SseShared {
    SseShared::new(SseToken(7), buffer)
}

fn push(s: &SseShared, text: &str) -> Pushed {
    s.push(false, |id, out| {
        out.extend_from_slice(format!("{id}:{text};").as_bytes())
    })
}

fn read(s: &SseShared, generation: u64, cursor: u64) -> (String, StreamStep) {
    let mut out = Vec::new();
    let step = s.next_events(generation, cursor, &mut out, 1 << 20, &mut cx());
    (String::from_utf8(out).unwrap(), step)
}

#[test]
fn tokens_are_32_hex_digits_and_logs_see_only_the_start() {
    let t = SseToken::random().unwrap();
    let text = t.to_string();
    assert_eq!(text.len(), 32);
    assert_eq!(SseToken::parse(&text), Some(t));
    assert_ne!(SseToken::random().unwrap(), t);
    assert!(!t.short().contains(&text[8..]));
    assert!(format!("{t:?}").len() < 24);
    for bad in [
        "",
        "ABCDEF0123456789abcdef0123456789",
        &text[..31],
        "+1234567890abcdef1234567890abcde",
    ] {
        assert_eq!(SseToken::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn a_stream_gets_events_in_order_then_the_close_ends_it() {
    let s = shared(1024);
    push(&s, "a");
    push(&s, "b");
    let (text, step) = read(&s, 1, 0);
    assert_eq!(text, "1:a;2:b;");
    assert_eq!(step, StreamStep::Events { upto: 2 });
    s.wrote(1, 2);
    assert_eq!(read(&s, 1, 2).1, StreamStep::Pending);
    s.push(true, |id, out| {
        out.extend_from_slice(format!("{id}:close;").as_bytes())
    });
    assert_eq!(push(&s, "late"), Pushed::Kept, "nothing after the close");
    assert_eq!(
        read(&s, 1, 2),
        ("3:close;".into(), StreamStep::Events { upto: 3 })
    );
    s.wrote(1, 3);
    assert!(s.delivered_all());
    assert_eq!(read(&s, 1, 3).1, StreamStep::Finished);
    // A resume after the close reached the client has nothing to get; one
    // from before it gets the close again.
    assert_eq!(s.attach(3), Err(AttachError::Over));
    let g = s.attach(2).unwrap();
    assert_eq!(read(&s, g, 2).0, "3:close;");
}

#[test]
fn a_resume_gets_exactly_what_followed_its_last_event() {
    let s = shared(1024);
    for t in ["a", "b", "c", "d"] {
        push(&s, t);
    }
    // The first stream wrote everything, then dropped; the client had
    // seen up to 2.
    s.wrote(1, 4);
    s.detach(1);
    let g = s.attach(2).unwrap();
    assert_eq!(read(&s, g, 2).0, "3:c;4:d;");
    assert_eq!(read(&s, 1, 2).1, StreamStep::Superseded);
    assert_eq!(s.attach(5), Err(AttachError::Gap), "an id never sent");
}

#[test]
fn sent_events_make_room_but_unsent_ones_overflow_a_detached_session() {
    let s = shared(40);
    for i in 0..5 {
        assert_eq!(push(&s, &format!("{i:05}")), Pushed::Kept);
    }
    s.wrote(1, 5);
    // Sent events are dropped oldest first to make room.
    for i in 5..9 {
        assert_eq!(push(&s, &format!("{i:05}")), Pushed::Kept);
    }
    assert_eq!(
        s.attach(0),
        Err(AttachError::Gap),
        "the first ones are gone"
    );
    s.detach(s.attach(9).unwrap());
    let mut last = Pushed::Kept;
    for i in 10..20 {
        last = push(&s, &format!("{i:05}"));
        if last != Pushed::Kept {
            break;
        }
    }
    assert_eq!(last, Pushed::Overflow);
}

#[test]
fn a_slow_attached_stream_holds_the_owner_back_until_it_catches_up() {
    let s = shared(20);
    let g = s.attach(0).unwrap();
    push(&s, "0123456789");
    assert_eq!(push(&s, "0123456789"), Pushed::Full);
    assert!(!s.poll_room(&mut cx()));
    let (_, step) = read(&s, g, 0);
    assert_eq!(step, StreamStep::Events { upto: 2 });
    s.wrote(g, 2);
    assert!(s.poll_room(&mut cx()));
}

#[test]
fn posts_queue_in_order_and_stop_at_the_end() {
    let s = shared(64);
    s.post(Outgoing::Text(b"a".to_vec()), 4).unwrap();
    s.post(Outgoing::Binary(b"bcd".to_vec()), 4).unwrap();
    assert_eq!(
        s.post(Outgoing::Text(b"e".to_vec()), 4),
        Err(PostError::Busy)
    );
    assert_eq!(
        s.poll_outgoing(&mut cx()),
        Some(Outgoing::Text(b"a".to_vec()))
    );
    assert_eq!(
        s.poll_outgoing(&mut cx()),
        Some(Outgoing::Binary(b"bcd".to_vec()))
    );
    assert_eq!(s.poll_outgoing(&mut cx()), None);
    // One message larger than the limit still goes when nothing waits.
    s.post(Outgoing::Text(vec![b'x'; 9]), 4).unwrap();
    s.post(Outgoing::Close(1000), 4).unwrap();
    assert!(!s.is_open());
    assert_eq!(
        s.post(Outgoing::Text(b"f".to_vec()), 4),
        Err(PostError::Gone)
    );
}

#[test]
fn the_table_finds_sessions_by_token() {
    let table = SseTable::default();
    let s = Arc::new(shared(10));
    table.insert(s.clone());
    assert!(table.get(&SseToken(7)).is_some());
    assert!(table.get(&SseToken(8)).is_none());
    table.remove(&SseToken(7));
    assert!(table.is_empty());
}
