//! The HTTP-side and pool hooks, driven through the library in-process
//! (`wslb::Balancer::builder()...start()` on port 0) in front of real echo
//! backends on loopback: handshake refusal, pinning and added headers,
//! request and response header edits, the pick hand-out, backend events,
//! and a balancer without hooks behaving as before.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::admin::{control, register, request};
use common::client::{HttpConn, Response};
use common::proc::{echo, Proc};
use common::ws_client::WsConn;
use wslb::{BackendEvent, Balancer, Binding, Decision, HeaderEdits, Hooks, Request};

/// What the hooks saw, shared with the test.
#[derive(Default)]
struct Seen {
    events: Mutex<Vec<String>>,
    responses: Mutex<Vec<(String, String, u16)>>,
}

impl Seen {
    fn events(&self) -> Vec<String> {
        self.events.lock().expect("events").clone()
    }

    fn push(&self, kind: &str, b: &BackendEvent) {
        let line = format!("{kind} {} {} {}", b.id, b.url, b.registered);
        self.events.lock().expect("events").push(line);
    }
}

struct TestHooks(Arc<Seen>);

impl Hooks for TestHooks {
    fn on_handshake(&self, req: &Request<'_>) -> Decision {
        match req.path() {
            "/deny" => return Decision::refuse(403, "go away\r\nX-Injected: 1"),
            "/odd-status" => return Decision::refuse(200, "not a refusal status"),
            _ => {}
        }
        let mut d = Decision::accept();
        let pin = req
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("pin=")));
        if let Some(id) = pin {
            d = d.pin(id);
        }
        d.header("X-User", "bob")
            .header("Content-Length", "5")
            .header("Host", "evil.example")
            .header("Sec-WebSocket-Protocol", "x")
            .header("X-Bad", "a\r\nX-Injected: 1")
            .header("Bad Name", "v")
    }

    fn on_http_request(&self, req: &Request<'_>, edits: &mut HeaderEdits) {
        let add = |n: &str, v: &str| (n.to_string(), v.to_string());
        edits.add.push(add(
            "X-From-Hook",
            &format!("{} {}", req.method, req.path()),
        ));
        edits.add.push(add("Transfer-Encoding", "chunked"));
        edits.add.push(add("X-Bad", "a\nX-Injected: 1"));
        edits.remove.push("X-Secret".into());
        edits.remove.push("Host".into());
    }

    fn on_http_response(&self, req: &Request<'_>, status: u16, edits: &mut HeaderEdits) {
        let seen = (req.method.to_string(), req.target.to_string(), status);
        self.0.responses.lock().expect("responses").push(seen);
        edits.add.push(("X-Resp-Hook".into(), status.to_string()));
        edits.remove.push("X-Backend".into());
        edits.remove.push("Content-Length".into());
    }

    fn on_pick(&self, req: &Request<'_>, binding: Binding) -> Binding {
        let url = match req.query() {
            Some(q) if q.contains("garbage") => "ws://a\r\nSet-Cookie: x=1".to_string(),
            Some(q) if q.contains("alt") => {
                format!("ws://picked.example:7000/{}", binding.id.len())
            }
            _ => binding.url.clone(),
        };
        Binding { url, ..binding }
    }

    fn on_backend_up(&self, b: &BackendEvent) {
        self.0.push("up", b);
    }

    fn on_backend_ready(&self, b: &BackendEvent) {
        self.0.push("ready", b);
    }

    fn on_backend_down(&self, b: &BackendEvent) {
        self.0.push("down", b);
    }
}

const REGISTER_TOKEN: &str = "reg-token";

/// A balancer in front of `backends`, with the test hooks when `hooks`.
fn balancer(backends: &[&Proc], hooks: Option<Arc<Seen>>) -> Balancer {
    let mut b = Balancer::builder()
        .listen("127.0.0.1:0")
        .workers(2)
        .register_token(REGISTER_TOKEN)
        .admin("127.0.0.1:0".parse().expect("addr"), None)
        .configure(|c| {
            c.pin = false;
            c.heartbeat_timeout = Duration::from_millis(800);
        });
    for p in backends {
        b = b.backend(&url_of(p));
    }
    if let Some(seen) = hooks {
        b = b.hooks(TestHooks(seen));
    }
    b.start().expect("balancer starts")
}

fn url_of(p: &Proc) -> String {
    format!("http://{}", p.http())
}

fn addr(lb: &Balancer) -> SocketAddr {
    lb.local_addr().expect("serving address")
}

/// The echo backend's first message on a `/headers` session: its name, then
/// the upgrade head it received.
fn session_hello(lb: &Balancer, target: &str) -> (String, String) {
    let mut ws = WsConn::try_connect(addr(lb), target, &[])
        .unwrap_or_else(|r| panic!("{target}: refused {r:?}"));
    let text = String::from_utf8_lossy(&ws.recv_msg().payload).into_owned();
    ws.echo_text("still a session");
    let (name, head) = text.split_once('\n').expect("name line");
    (name.to_string(), head.to_string())
}

/// The refusal of an upgrade to `target`.
fn refusal(lb: &Balancer, target: &str) -> common::ws_client::Refused {
    match WsConn::try_connect(addr(lb), target, &[]) {
        Ok(_) => panic!("{target}: the session opened"),
        Err(r) => r,
    }
}

fn get(lb: &Balancer, target: &str, extra: &str) -> (Response, HttpConn) {
    let mut c = HttpConn::connect(addr(lb));
    c.send(format!("GET {target} HTTP/1.1\r\nHost: test\r\n{extra}\r\n").as_bytes());
    let r = c.read_response(false).expect("response");
    (r, c)
}

#[test]
fn a_refused_handshake_gets_its_status_and_a_clean_reason() {
    let one = echo("one");
    let lb = balancer(&[&one], Some(Arc::default()));
    let refused = refusal(&lb, "/deny");
    assert_eq!(refused.status, 403, "{}", refused.head);
    assert!(
        refused.head.contains("Connection: close"),
        "{}",
        refused.head
    );
    assert!(!refused.head.contains("X-Injected"), "{}", refused.head);
    assert_eq!(
        String::from_utf8_lossy(&refused.rest),
        "go awayX-Injected: 1\n"
    );
    // A status outside 400..=599 is answered 403.
    let odd = refusal(&lb, "/odd-status");
    assert_eq!(odd.status, 403, "{}", odd.head);
    // Other paths are accepted.
    assert_eq!(session_hello(&lb, "/headers").0, "one");
}

#[test]
fn a_pinned_session_goes_to_that_backend_and_an_unknown_pin_gets_503() {
    let (one, two) = (echo("one"), echo("two"));
    let lb = balancer(&[&one, &two], Some(Arc::default()));
    for (target, name) in [(&two, "two"), (&one, "one")] {
        for _ in 0..6 {
            let (got, _) = session_hello(&lb, &format!("/headers?pin={}", url_of(target)));
            assert_eq!(got, name);
        }
    }
    let refused = refusal(&lb, "/headers?pin=nobody");
    assert_eq!(refused.status, 503, "{}", refused.head);
}

#[test]
fn handshake_headers_reach_the_backend_and_unsafe_ones_are_dropped() {
    let one = echo("one");
    let lb = balancer(&[&one], Some(Arc::default()));
    let (_, head) = session_hello(&lb, "/headers");
    assert!(head.contains("\r\nX-User: bob\r\n"), "{head}");
    for dropped in [
        "Content-Length",
        "evil.example",
        "X-Injected",
        "Bad Name",
        "X-Bad",
    ] {
        assert!(
            !head.contains(dropped),
            "{dropped} reached the backend: {head}"
        );
    }
    assert!(!head.contains("Sec-WebSocket-Protocol"), "{head}");
    assert!(head.contains("\r\nHost: 127.0.0.1\r\n"), "{head}");
}

#[test]
fn request_and_response_edits_are_applied_and_unsafe_ones_dropped() {
    let one = echo("one");
    let seen: Arc<Seen> = Arc::default();
    let lb = balancer(&[&one], Some(seen.clone()));
    let (r, mut c) = get(&lb, "/headers?q=1", "X-Secret: s3cret\r\nX-Kept: k\r\n");
    assert_eq!(r.status, 200);
    let head = r.text();
    assert!(head.contains("\r\nX-From-Hook: GET /headers\r\n"), "{head}");
    assert!(head.contains("\r\nX-Kept: k\r\n"), "{head}");
    assert!(
        !head.contains("s3cret"),
        "removed field reached the backend: {head}"
    );
    assert!(
        head.contains("\r\nHost: test\r\n"),
        "Host may not be removed: {head}"
    );
    assert!(!head.contains("Transfer-Encoding"), "{head}");
    assert!(!head.contains("X-Injected"), "{head}");
    // The response: a header added, one removed, framing untouched.
    assert_eq!(r.header("X-Resp-Hook"), Some("200"));
    assert_eq!(r.header("X-Backend"), None, "{:?}", r.headers);
    assert!(r.header("Content-Length").is_some(), "{:?}", r.headers);
    // The connection still frames the next response right.
    c.send(b"GET /status/404 HTTP/1.1\r\nHost: test\r\n\r\n");
    let r = c.read_response(false).expect("second response");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("X-Resp-Hook"), Some("404"));
    assert_eq!(r.text(), "status 404 from one\n");
    let responses = seen.responses.lock().expect("responses").clone();
    assert_eq!(
        responses,
        vec![
            ("GET".into(), "/headers?q=1".into(), 200),
            ("GET".into(), "/status/404".into(), 404)
        ]
    );
}

#[test]
fn pick_hands_out_the_hooks_url_and_garbage_gets_500() {
    let one = echo("one");
    let lb = balancer(&[&one], Some(Arc::default()));
    let id_len = url_of(&one).len();
    let want = format!("ws://picked.example:7000/{id_len}");
    let (r, _) = get(&lb, "/_lb/pick?alt", "");
    assert_eq!(r.status, 200);
    let json: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(json["url"], want.as_str());
    assert_eq!(json["id"], url_of(&one).as_str());
    let (r, _) = get(&lb, "/_lb/pick?alt&redirect=1", "");
    assert_eq!(r.status, 307);
    assert_eq!(r.header("Location"), Some(want.as_str()));
    for target in ["/_lb/pick?garbage", "/_lb/pick?garbage&redirect=1"] {
        let (r, _) = get(&lb, target, "");
        assert_eq!(r.status, 500, "{target}");
        assert_eq!(r.header("Set-Cookie"), None);
    }
    // Untouched by the hook: the backend's own URL.
    let (r, _) = get(&lb, "/_lb/pick", "");
    let json: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(json["url"], url_of(&one).as_str());
}

/// Waits up to 5 s for `want` to be the last event.
fn wait_event(seen: &Seen, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.events().last().map(String::as_str) != Some(want) {
        assert!(
            Instant::now() < deadline,
            "no {want:?} in {:?}",
            seen.events()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn backend_events_follow_static_and_registered_backends() {
    let (one, two) = (echo("one"), echo("two"));
    let seen: Arc<Seen> = Arc::default();
    let lb = balancer(&[&one], Some(seen.clone()));
    let s = url_of(&one);
    assert_eq!(
        seen.events(),
        [format!("up {s} {s} false"), format!("ready {s} {s} false")]
    );
    // A registered backend: joins and is ready, drains (once), resumes.
    let reg = url_of(&two);
    let mut ch = control(addr(&lb), Some(REGISTER_TOKEN)).expect("control channel");
    assert_eq!(
        register(&mut ch, "b2", two.http().port(), 1)["type"],
        "registered"
    );
    let tail = |n: usize| seen.events().split_off(seen.events().len() - n);
    assert_eq!(
        tail(2),
        [format!("up b2 {reg} true"), format!("ready b2 {reg} true")]
    );
    let drain = serde_json::json!({"type": "drain"});
    request(&mut ch, &drain);
    request(&mut ch, &drain);
    let resume = serde_json::json!({"type": "resume"});
    request(&mut ch, &resume);
    assert_eq!(
        tail(2),
        [
            format!("down b2 {reg} true"),
            format!("ready b2 {reg} true")
        ]
    );
    // Through the admin API too.
    let admin = lb.admin_addr().expect("admin");
    assert_eq!(common::admin::post(admin, "b2", "drain").status, 200);
    assert_eq!(seen.events().last(), Some(&format!("down b2 {reg} true")));
    assert_eq!(common::admin::post(admin, "b2", "resume").status, 200);
    assert_eq!(seen.events().last(), Some(&format!("ready b2 {reg} true")));
    // Deregistered.
    assert!(ch.send_text(&serde_json::json!({"type": "deregister"}).to_string()));
    wait_event(&seen, &format!("down b2 {reg} true"));
    // The channel lost while registered.
    let mut ch = control(addr(&lb), Some(REGISTER_TOKEN)).expect("control channel");
    register(&mut ch, "b3", two.http().port(), 1);
    assert_eq!(seen.events().last(), Some(&format!("ready b3 {reg} true")));
    ch.drop_tcp();
    wait_event(&seen, &format!("down b3 {reg} true"));
    // Silent past the heartbeat timeout: expired.
    let mut ch = control(addr(&lb), Some(REGISTER_TOKEN)).expect("control channel");
    register(&mut ch, "b4", two.http().port(), 1);
    wait_event(&seen, &format!("down b4 {reg} true"));
    drop(ch);
    let downs = seen
        .events()
        .iter()
        .filter(|e| e.starts_with("down"))
        .count();
    assert_eq!(downs, 5, "{:?}", seen.events());
}

#[test]
fn without_hooks_nothing_changes() {
    let (one, two) = (echo("one"), echo("two"));
    let lb = balancer(&[&one, &two], None);
    // Nothing refused, nothing added, no pin honoured.
    WsConn::try_connect(addr(&lb), "/deny", &[]).expect("accepted");
    let mut names = std::collections::HashSet::new();
    for _ in 0..12 {
        let (name, head) = session_hello(&lb, &format!("/headers?pin={}", url_of(&one)));
        assert!(!head.contains("X-User"), "{head}");
        names.insert(name);
    }
    assert_eq!(names.len(), 2, "both backends serve: {names:?}");
    let (r, _) = get(&lb, "/headers", "X-Secret: s3cret\r\n");
    assert!(r.text().contains("X-Secret: s3cret"), "{}", r.text());
    assert!(!r.text().contains("X-From-Hook"));
    assert_eq!(r.header("X-Resp-Hook"), None);
    assert!(r.header("X-Backend").is_some());
    let (r, _) = get(&lb, "/_lb/pick?garbage", "");
    assert_eq!(r.status, 200);
}
