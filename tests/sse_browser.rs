//! The browser side of the SSE fallback in headless Chromium: a page of the
//! balancer's origin loads `/_lb/client.js` and drives `WslbSocket`.
//!
//! - The same echo exchange three times: with WebSocket available
//!   (transport `websocket`), with `window.WebSocket` removed (transport
//!   `sse`: event stream in, POSTs out, DELETE to close), and with a
//!   WebSocket that never opens (the open timeout falls back to `sse`).
//!   Echoes must equal what was sent, multi-line text and binary included,
//!   and the close must be clean.
//! - The event stream drops mid-session (a relay in front of the balancer
//!   cuts every connection): EventSource resumes it with Last-Event-ID and
//!   every echo arrives once, in order, those of messages sent while the
//!   stream was down included.
//! - The stream drops and stays away past `--fallback-resume-timeout`: the
//!   balancer ends the session (and keeps serving), and the page's next
//!   send (a POST answered 404) or EventSource's next try ends the socket:
//!   close 1006 with an error event (the resume refused), or the session's
//!   own close event (1001) when the resume still finds it.
//! - A send over `--max-message-size` (a POST answered 413) ends the
//!   socket with 1009 and an error, and the client closes the session.
//! - The admin API reaches a fallback session by its connection id: a
//!   message sent to it arrives, and a close with a code ends it with that
//!   code.
//!
//! The page's JavaScript is tests/sse_browser/exchange.js.

mod common;
#[path = "sse_browser/page.rs"]
mod page;
#[path = "sse_browser/relay.rs"]
mod relay;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};

use common::cdp::Browser;
use common::client::get;
use common::proc::{echo, serve};
use page::{
    admin_post, expected_echoes, header_value, listed, messages, payload_bytes, prepare,
    STALLED_WEBSOCKET,
};
use relay::Relay;

/// [`prepare`]s a page of the balancer's origin and runs one whole
/// exchange on `ws://LB/echo`; returns what the page reported.
fn run(page: &mut Browser, lb: SocketAddr, setup: &str, opts: Value) -> Value {
    prepare(page, lb, setup);
    let call = format!(
        "window.__exchange({}, {}, {})",
        Value::from(format!("ws://{lb}/echo")),
        Value::from(messages()),
        opts
    );
    assert_eq!(page.eval(&call), true);
    page.wait_for(
        "window.__done === true",
        Duration::from_secs(40),
        "the exchange to finish",
    );
    let result = page.eval("window.__result");
    assert!(
        result.get("failure").is_none(),
        "the exchange failed: {}\nlog: {}\npage errors: {:?}",
        result["failure"],
        result["log"],
        page.errors()
    );
    result
}

/// What every exchange must show, whichever transport.
fn check_common(result: &Value, lb: SocketAddr, kind: &str, close_code: u16) {
    let sent = messages();
    assert_eq!(result["constants"], json!([0, 1, 2, 3, 0, 1, 2, 3]));
    assert_eq!(result["initialState"], 0, "{result}");
    assert_eq!(result["url"], format!("ws://{lb}/echo"));
    assert_eq!(result["openState"], 1, "{result}");
    assert_eq!(
        result["listenerOpens"], 1,
        "one open event for listeners: {result}"
    );
    assert_eq!(result["binaryType"], kind);
    assert_eq!(
        result["echoes"],
        Value::from(expected_echoes(&sent, kind)),
        "echoes equal what was sent (log: {})",
        result["log"]
    );
    assert_eq!(result["closingState"], 2, "{result}");
    assert_eq!(result["finalState"], 3, "{result}");
    assert_eq!(result["close"]["code"], close_code, "{result}");
    assert_eq!(result["close"]["wasClean"], true, "{result}");
    assert_eq!(result["errors"], 0, "no error events: {result}");
}

/// What an exchange over the fallback must show besides.
fn check_sse(result: &Value) {
    assert_eq!(result["transport"], "sse", "{result}");
    // Every byte sent waits in the POST queue until its 204.
    assert_eq!(
        result["bufferedAfterSend"],
        payload_bytes(&messages()),
        "{result}"
    );
    let id = result["connectionId"].as_str().unwrap_or("");
    assert!(!id.is_empty(), "the open event names the session: {result}");
}

#[test]
fn websocket_then_sse_fallback_in_chromium() {
    let backend = echo("e1");
    let balancer = serve(
        &[&backend],
        &["--fallback", "sse", "--fallback-retry", "1s"],
    );
    let lb = balancer.http();

    let script = get(lb, "/_lb/client.js");
    assert_eq!(script.status, 200, "{}", script.text());
    let ctype = script.header("content-type").unwrap_or("");
    assert!(
        ctype.starts_with("application/javascript"),
        "client.js content type: {ctype}"
    );
    assert!(script.text().contains("WslbSocket"));

    let mut page = Browser::launch(800, 600);

    // (a) WebSocket available: a plain WebSocket session underneath.
    let a = run(
        &mut page,
        lb,
        "",
        json!({"binaryType": "arraybuffer", "closeCode": 1000}),
    );
    assert_eq!(a["transport"], "websocket", "{a}");
    check_common(&a, lb, "arraybuffer", 1000);

    // (b) No WebSocket in the page: the event stream and POSTs; close()
    // is a DELETE and the stream's close event reports 1000.
    let b = run(
        &mut page,
        lb,
        "window.WebSocket = undefined; true",
        json!({}),
    );
    check_sse(&b);
    check_common(&b, lb, "blob", 1000);

    // (c) A WebSocket that never opens: after the 300 ms timeout the
    // attempt is dropped and the fallback carries the session.
    let c = run(
        &mut page,
        lb,
        STALLED_WEBSOCKET,
        json!({"binaryType": "arraybuffer", "socket": {"timeout": 300}}),
    );
    check_sse(&c);
    check_common(&c, lb, "arraybuffer", 1000);
    assert_eq!(
        page.eval("[window.__stalled, window.__stalledClosed]"),
        json!([1, true])
    );

    let errors = page.errors();
    assert!(errors.is_empty(), "the page logged errors: {errors:?}");
}

#[test]
fn sse_stream_resumes_after_a_drop() {
    let backend = echo("e1");
    let balancer = serve(
        &[&backend],
        &["--fallback", "sse", "--fallback-retry", "1s"],
    );
    let relay = Relay::start(balancer.http());
    let origin = relay.addr;
    let mut page = Browser::launch(800, 600);
    prepare(&mut page, origin, "window.WebSocket = undefined; true");
    let url = Value::from(format!("ws://{origin}/echo"));
    let opened = page.eval(&format!(
        "__session.open({url}, {{binaryType: 'arraybuffer'}})"
    ));
    assert_eq!(opened["transport"], "sse", "{opened}");
    assert_eq!(opened["readyState"], 1, "{opened}");

    let all = messages();
    let (before, after) = all.split_at(3);
    page.eval(&format!("__session.send({})", Value::from(before)));
    let echoes = page.eval("__session.echoes(3)");
    assert_eq!(echoes, Value::from(expected_echoes(before, "arraybuffer")));

    // The stream (and every other connection) drops; the rest is sent
    // while EventSource waits its retry time to come back.
    relay.cut();
    page.eval(&format!("__session.send({})", Value::from(after)));
    let echoes = page.eval(&format!("__session.echoes({})", all.len()));
    let state = page.eval("__session.state()");
    assert_eq!(
        echoes,
        Value::from(expected_echoes(&all, "arraybuffer")),
        "each echo once, in order, across the drop (state: {state})"
    );
    assert_eq!(state["readyState"], 1, "{state}");
    assert_eq!(state["errors"], 0, "{state}");

    // The browser came back with the id of the last event it had: the
    // third message of the session whose URL the POSTs went to.
    let lines: Vec<String> = relay
        .sent()
        .iter()
        .flat_map(|c| c.split("\r\n").map(String::from).collect::<Vec<_>>())
        .collect();
    let token = lines
        .iter()
        .find_map(|l| l.strip_prefix("POST /_lb/sse/"))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a POST to the session URL")
        .to_string();
    let resumes: Vec<String> = lines
        .iter()
        .filter_map(|l| header_value(l, "last-event-id"))
        .collect();
    assert_eq!(resumes, vec![format!("{token}.3")]);

    let closed = page.eval("__session.close()");
    assert_eq!(closed["close"]["code"], 1000, "{closed}");
    assert_eq!(closed["close"]["wasClean"], true, "{closed}");
    assert_eq!(closed["errors"], 0, "{closed}");
    let errors = page.errors();
    let unexpected: Vec<&String> = errors
        .iter()
        // The browser's own note of the dropped stream.
        .filter(|e| !e.contains("ERR_"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "the page logged errors: {unexpected:?}"
    );
}

#[test]
fn a_session_lost_past_the_resume_timeout_ends_the_socket() {
    let backend = echo("e1");
    // One worker: a worker lost on the way takes the process with it.
    let mut balancer = serve(
        &[&backend],
        &[
            "--workers",
            "1",
            "--fallback",
            "sse",
            "--fallback-retry",
            "3s",
            "--fallback-resume-timeout",
            "1s",
        ],
    );
    let relay = Relay::start(balancer.http());
    let origin = relay.addr;
    let mut page = Browser::launch(800, 600);
    prepare(&mut page, origin, "window.WebSocket = undefined; true");
    let url = Value::from(format!("ws://{origin}/echo"));
    let opened = page.eval(&format!("__session.open({url}, {{}})"));
    assert_eq!(opened["transport"], "sse", "{opened}");
    page.eval("__session.send([{t: 'text', v: 'one'}])");
    assert_eq!(
        page.eval("__session.echoes(1)"),
        json!([{"t": "text", "v": "one"}])
    );

    relay.cut();
    // Past the resume timeout, before EventSource tries again.
    std::thread::sleep(Duration::from_millis(1800));
    let state = page.eval("__session.state()");
    assert_eq!(
        state["readyState"], 1,
        "still open as far as it knows: {state}"
    );
    page.eval("__session.send([{t: 'text', v: 'lost'}])");
    let closed = page.eval("__session.closed()");
    assert_eq!(closed["readyState"], 3, "{closed}");
    let how = (
        closed["close"]["code"].as_u64(),
        closed["close"]["wasClean"].as_bool(),
        closed["errors"].as_u64(),
    );
    assert!(
        how == (Some(1006), Some(false), Some(1)) || how == (Some(1001), Some(true), Some(0)),
        "lost (1006 and an error) or closed by the balancer (1001): {closed}"
    );

    // The balancer lived through it and still serves.
    assert_eq!(
        balancer.wait_exit(Duration::from_millis(100)),
        None,
        "the balancer exited when the session expired"
    );
    assert_eq!(get(balancer.http(), "/").status, 200);
}

#[test]
fn admin_api_reaches_a_fallback_session() {
    let backend = echo("e1");
    let balancer = serve(
        &[&backend],
        &["--fallback", "sse", "--admin-listen", "127.0.0.1:0"],
    );
    let (lb, admin) = (balancer.http(), balancer.addr("admin"));
    let mut page = Browser::launch(800, 600);
    prepare(&mut page, lb, "window.WebSocket = undefined; true");
    let opened = page.eval(&format!(
        "__session.open({}, {{}})",
        Value::from(format!("ws://{lb}/echo"))
    ));
    assert_eq!(opened["transport"], "sse", "{opened}");
    let id = opened["connectionId"].as_str().expect("connectionId");

    let (status, answer) = admin_post(
        admin,
        "/api/send",
        &json!({"id": id, "text": "from the hub"}),
    );
    assert_eq!(status, 200, "{answer}");
    let got = page.eval("__session.echoes(1)");
    assert_eq!(got, json!([{"t": "text", "v": "from the hub"}]));

    let (status, answer) = admin_post(
        admin,
        "/api/close",
        &json!({"id": id, "code": 4001, "reason": "bye"}),
    );
    assert_eq!(status, 200, "{answer}");
    let closed = page.eval("__session.closed()");
    assert_eq!(
        closed["close"],
        json!({"code": 4001, "reason": "bye", "wasClean": true})
    );
    assert_eq!(closed["readyState"], 3, "{closed}");
    assert_eq!(closed["errors"], 0, "{closed}");
    let errors = page.errors();
    assert!(errors.is_empty(), "the page logged errors: {errors:?}");
}

#[test]
fn an_oversized_send_closes_1009() {
    let backend = echo("e1");
    let balancer = serve(
        &[&backend],
        &[
            "--fallback",
            "sse",
            "--max-message-size",
            "1k",
            "--admin-listen",
            "127.0.0.1:0",
        ],
    );
    let (lb, admin) = (balancer.http(), balancer.addr("admin"));
    let mut page = Browser::launch(800, 600);
    prepare(&mut page, lb, "window.WebSocket = undefined; true");
    let opened = page.eval(&format!(
        "__session.open({}, {{}})",
        Value::from(format!("ws://{lb}/echo"))
    ));
    assert_eq!(opened["transport"], "sse", "{opened}");
    let id = opened["connectionId"]
        .as_str()
        .expect("connectionId")
        .to_string();
    assert_eq!(listed(admin), vec![id.clone()]);

    page.eval("__session.send([{t: 'text', v: 'x'.repeat(2000)}])");
    let closed = page.eval("__session.closed()");
    assert_eq!(
        closed["close"],
        json!({"code": 1009, "reason": "", "wasClean": false})
    );
    assert_eq!(closed["errors"], 1, "{closed}");
    // The client's DELETE ended the backend session.
    let gone = common::sockets::within(Duration::from_secs(5), || listed(admin).is_empty());
    assert!(gone.is_some(), "still listed: {:?}", listed(admin));
}
