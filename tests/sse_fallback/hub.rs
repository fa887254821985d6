//! The fallback session as the message hub and the access log see it:
//! listed, published and sent to, pinged and closed by the admin API, with
//! its open and close on the events stream; its token never logged whole.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::common::sse::{self, expect_open};
use super::support::{
    admin_event, admin_post, assert_status, events, expect_close, fallback, listed, resume, stream,
    until_listed,
};

#[test]
fn the_hub_lists_publishes_sends_and_closes_an_sse_session() {
    let (_e, lb) = fallback(&["--admin-listen", "127.0.0.1:0"]);
    let (addr, admin) = (lb.http(), lb.addr("admin"));
    let mut es = events(admin);
    let mut s = stream(addr);
    let o = expect_open(&mut s);
    let id = o.conn_id.as_str();
    let opened = admin_event(&mut es, "session_open", id);
    assert_eq!(opened["path"], "/chat", "{opened}");
    assert!(
        until_listed(admin, Duration::from_secs(5), |l| l.iter().any(|x| x == id)).is_some(),
        "{id} not in /api/connections: {:?}",
        listed(admin)
    );

    let counts = |v: &Value| {
        let n = |k: &str| v[k].as_u64().unwrap_or(u64::MAX);
        (n("matched"), n("delivered"), n("skipped"), n("dropped"))
    };
    let (st, v) = admin_post(admin, "/api/publish", &json!({"text": "to all"}));
    assert_eq!((st, counts(&v)), (200, (1, 1, 0, 0)), "publish: {v}");
    let ev = s.event();
    assert_eq!(
        (ev.event.as_deref(), ev.data.as_str()),
        (None, "to all"),
        "{ev:?}"
    );
    let (st, v) = admin_post(admin, "/api/publish", &json!({"binary": "AAEC"}));
    assert_eq!((st, counts(&v)), (200, (1, 1, 0, 0)), "publish binary: {v}");
    let ev = s.event();
    assert_eq!(
        (ev.event.as_deref(), ev.data.as_str()),
        (Some("binary"), "AAEC")
    );
    let (st, v) = admin_post(admin, "/api/send", &json!({"id": id, "text": "just you"}));
    assert_eq!((st, counts(&v)), (200, (1, 1, 0, 0)), "send: {v}");
    let ev = s.event();
    assert_eq!(ev.data, "just you");
    assert_eq!(ev.seq(), Some(3), "hub messages count in the ids: {ev:?}");
    // The client still talks to the backend in between.
    assert_status(&sse::post_text(addr, &o.token, b"mine"), 204, "POST");
    assert_eq!(s.event().data, "mine");
    // A ping is answered on the client's behalf, and makes no event.
    let ping = json!({"include": [id], "timeout_ms": 2000});
    let (st, v) = admin_post(admin, "/api/ping", &ping);
    assert_eq!((st, counts(&v)), (200, (1, 1, 0, 0)), "ping: {v}");
    assert_eq!(v["pongs"], 1, "{v}");
    assert_eq!(s.event_or_none(), None, "a ping made an event");

    let close = json!({"id": id, "code": 4001, "reason": "bye"});
    let (st, v) = admin_post(admin, "/api/close", &close);
    assert_eq!((st, counts(&v)), (200, (1, 1, 0, 0)), "close: {v}");
    assert_eq!(expect_close(&mut s, &o.token), (4001, "bye".to_string()));
    let closed = admin_event(&mut es, "session_closed", id);
    assert_eq!(closed["code"], 4001, "{closed}");
    assert!(
        until_listed(admin, Duration::from_secs(5), |l| !l
            .iter()
            .any(|x| x == id))
        .is_some(),
        "{id} still listed after its close"
    );
    assert_status(
        &sse::post_text(addr, &o.token, b"x"),
        404,
        "POST after close",
    );
}

#[test]
fn the_access_log_never_holds_a_whole_token() {
    let dir = std::env::temp_dir().join(format!("wslb-sse-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("access.log");
    let (_e, lb) = fallback(&["--access-log", path.to_str().expect("utf-8 path")]);
    let addr = lb.http();
    let mut s = stream(addr);
    let o = expect_open(&mut s);
    let t = o.token.as_str();
    assert_status(&sse::post_text(addr, t, b"logged"), 204, "POST");
    assert_eq!(s.event().data, "logged");
    drop(s);
    let mut r = resume(addr, &format!("{t}.1"))
        .unwrap_or_else(|r| panic!("resume answered {} {}", r.status, r.text()));
    assert_status(&sse::delete(addr, t), 204, "DELETE");
    expect_close(&mut r, t);
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let sse_lines: Vec<&str> = text.lines().filter(|l| l.contains("/_lb/sse/")).collect();
        let both = sse_lines.iter().any(|l| l.contains("POST"))
            && sse_lines.iter().any(|l| l.contains("DELETE"));
        if both || Instant::now() > deadline {
            assert!(both, "no POST and DELETE lines for /_lb/sse/ in:\n{text}");
            break text;
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    // The session's own line comes at its end: give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    let text = std::fs::read_to_string(&path).unwrap_or(text);
    assert!(!text.contains(t), "the token {t} is in the log:\n{text}");
    // What it shows is the first 8 digits.
    let short = format!("/_lb/sse/{}", &t[..8]);
    assert!(text.contains(&short), "no {short} in the log:\n{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
