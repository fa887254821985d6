//! The control channel end to end: backends register over `/_lb/register`
//! and get traffic, tokens are enforced, malformed messages are refused with
//! the rest of the pool intact, channels that close or go silent leave the
//! pool, drain keeps old connections, counters survive re-registration, and
//! `/_lb/pick` hands out bindings.

mod common;

use std::time::Duration;

use common::admin::{backend, backends, control, post, register, request, wait_for};
use common::client::{get, HttpConn};
use common::proc::{echo, Proc};
use common::ws_client::WsConn;

const TOKEN: &str = "t0ken";

fn balancer(extra: &[&str]) -> Proc {
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--no-pin",
        "--algorithm",
        "round-robin",
    ];
    args.extend_from_slice(extra);
    Proc::start(&args)
}

#[test]
fn registered_backends_receive_traffic_and_leave_when_their_channel_closes() {
    let a = echo("reg-a");
    let b = echo("reg-b");
    let lb = balancer(&["--register-token", TOKEN]);
    let admin = lb.addr("admin");
    assert!(backends(admin).is_empty());

    let mut ca = control(lb.http(), Some(TOKEN)).expect("upgrade");
    let reply = register(&mut ca, "a", a.http().port(), 1);
    assert_eq!(reply["type"], "registered", "{reply}");
    assert_eq!(
        reply["bindings"][0],
        format!("http://127.0.0.1:{}", a.http().port())
    );
    assert!(reply["heartbeat_interval_ms"].as_u64().unwrap() > 0);
    let mut cb = control(lb.http(), Some(TOKEN)).expect("upgrade");
    assert_eq!(
        register(&mut cb, "b", b.http().port(), 1)["type"],
        "registered"
    );

    let listed = backends(admin);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed
        .iter()
        .all(|b| b["source"] == "registered" && b["state"] == "up"));

    let mut names = std::collections::HashSet::new();
    for _ in 0..10 {
        let r = get(lb.http(), "/");
        assert_eq!(r.status, 200);
        names.insert(r.text().trim().to_string());
    }
    assert_eq!(names.len(), 2, "both registered backends serve: {names:?}");

    // A clean close of b's channel removes b at once.
    assert!(cb.send_close(1000, "bye"));
    wait_for(admin, Duration::from_secs(3), "b to leave", |l| {
        l.len() == 1 && l[0]["id"] == "a"
    });
    for _ in 0..6 {
        assert_eq!(get(lb.http(), "/").text().trim(), "reg-a");
    }
    // So does a dropped TCP connection (a killed backend process).
    ca.drop_tcp();
    wait_for(admin, Duration::from_secs(3), "a to leave", |l| {
        l.is_empty()
    });
    assert_eq!(get(lb.http(), "/").status, 503);
}

#[test]
fn tokens_are_enforced_before_the_upgrade() {
    let lb = balancer(&["--register-token", TOKEN]);
    let wrong = control(lb.http(), Some("nope"))
        .err()
        .expect("wrong token refused");
    assert_eq!(wrong.status, 401);
    let missing = control(lb.http(), None)
        .err()
        .expect("missing token refused");
    assert_eq!(missing.status, 401);
    assert!(control(lb.http(), Some(TOKEN)).is_ok());

    // Without a configured token: refused on serving listeners, allowed on a
    // loopback control listener.
    let open = balancer(&["--control-listen", "127.0.0.1:0"]);
    assert_eq!(
        control(open.http(), None).err().expect("refused").status,
        403
    );
    let e = echo("ctl");
    let mut ch = control(open.addr("control"), None).expect("loopback control listener");
    assert_eq!(
        register(&mut ch, "c", e.http().port(), 1)["type"],
        "registered"
    );
    assert_eq!(get(open.http(), "/").text().trim(), "ctl");
    // The control listener serves nothing but the channel.
    assert_eq!(get(open.addr("control"), "/").status, 404);
}

#[test]
fn malformed_messages_are_refused_and_the_pool_is_untouched() {
    let e = echo("keep");
    let lb = balancer(&["--register-token", TOKEN]);
    let admin = lb.addr("admin");
    let mut good = control(lb.http(), Some(TOKEN)).unwrap();
    assert_eq!(
        register(&mut good, "good", e.http().port(), 3)["type"],
        "registered"
    );

    let cases: Vec<String> = vec![
        "this is not json".into(),
        r#"{"type":"launch_missiles"}"#.into(),
        r#"{"no_type":1}"#.into(),
        r#"{"type":"register","v":1,"id":"x","bindings":[],"weight":1}"#.into(),
        r#"{"type":"register","v":1,"id":"x","bindings":[":1"],"weight":0}"#.into(),
        r#"{"type":"register","v":9,"id":"x","bindings":[":1"]}"#.into(),
        r#"{"type":"heartbeat","load":1}"#.into(),
        format!(
            r#"{{"type":"register","v":1,"id":"{}","bindings":[":1"]}}"#,
            "x".repeat(70_000)
        ),
    ];
    for case in &cases {
        let mut ch = control(lb.http(), Some(TOKEN)).unwrap();
        assert!(ch.send_text(case));
        let mut got_error = false;
        let close = loop {
            match ch.recv() {
                common::ws_client::Event::Msg(m)
                    if m.opcode == wslb::proto::ws::frame::OpCode::Text =>
                {
                    let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                    assert_eq!(v["type"], "error", "{v}");
                    assert!(!v["message"].as_str().unwrap_or("").is_empty());
                    got_error = true;
                }
                common::ws_client::Event::Msg(m)
                    if m.opcode == wslb::proto::ws::frame::OpCode::Close =>
                {
                    break wslb::proto::ws::close::parse_close_payload(&m.payload)
                        .unwrap()
                        .map(|c| c.0);
                }
                other => panic!("case {:.60}: unexpected {other:?}", case),
            }
        };
        let oversize = case.len() > 65_536;
        assert_eq!(
            close,
            Some(if oversize { 1009 } else { 1008 }),
            "case {:.60}",
            case
        );
        assert!(
            got_error || oversize,
            "case {:.60} got an error message",
            case
        );
        let list = backends(admin);
        assert_eq!(list.len(), 1, "pool intact after {:.60}: {list:?}", case);
        assert_eq!(list[0]["id"], "good");
        assert_eq!(list[0]["weight"], 3);
    }
    assert_eq!(get(lb.http(), "/").text().trim(), "keep");
    // A refused message on a registered channel closes it, and its
    // registration leaves with it (tests/hardening_registry.rs has more).
    assert!(good.send_text("{broken"));
    let _ = good.recv_close();
    wait_for(admin, Duration::from_secs(3), "good to leave", |l| {
        l.is_empty()
    });
}

#[test]
fn a_silent_backend_leaves_within_the_heartbeat_timeout() {
    let e = echo("silent");
    let lb = balancer(&["--register-token", TOKEN, "--heartbeat-timeout", "600ms"]);
    let admin = lb.addr("admin");
    let mut ch = control(lb.http(), Some(TOKEN)).unwrap();
    assert_eq!(
        register(&mut ch, "s", e.http().port(), 1)["type"],
        "registered"
    );
    // Heartbeats keep it in past several timeouts.
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(200));
        assert!(ch.send_text(r#"{"type":"heartbeat","load":7}"#));
    }
    let entry = backend(admin, "s").expect("still registered while heartbeating");
    assert_eq!(entry["reported_load"], 7);
    // Silence: gone within the timeout (plus the sweep's resolution).
    let start = std::time::Instant::now();
    wait_for(
        admin,
        Duration::from_secs(3),
        "the silent backend to leave",
        |l| l.is_empty(),
    );
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "left after {:?}",
        start.elapsed()
    );
}

#[test]
fn drain_stops_new_connections_but_keeps_old_ones() {
    let a = echo("drain-a");
    let b = echo("drain-b");
    let lb = balancer(&["--register-token", TOKEN]);
    let admin = lb.addr("admin");
    let mut ca = control(lb.http(), Some(TOKEN)).unwrap();
    register(&mut ca, "a", a.http().port(), 1);
    let mut cb = control(lb.http(), Some(TOKEN)).unwrap();
    register(&mut cb, "b", b.http().port(), 1);

    // Open sessions (WebSocket) and keep-alive HTTP connections to both.
    let mut sessions: Vec<WsConn<std::net::TcpStream>> =
        (0..4).map(|_| WsConn::connect(lb.http())).collect();
    for s in &mut sessions {
        s.echo_text("before");
    }
    // The backend asks to drain itself.
    let ack = request(&mut ca, &serde_json::json!({"type": "drain"}));
    assert_eq!(ack["type"], "drain");
    assert_eq!(backend(admin, "a").unwrap()["state"], "draining");
    for _ in 0..8 {
        assert_eq!(get(lb.http(), "/").text().trim(), "drain-b");
    }
    for s in &mut sessions {
        s.echo_text("still here");
    }
    // Resume, then the admin API drains b and tells its channel.
    assert_eq!(
        request(&mut ca, &serde_json::json!({"type": "resume"}))["type"],
        "resume"
    );
    let r = post(admin, "b", "drain");
    assert_eq!(r.status, 200, "{}", r.text());
    let notice = cb.recv_msg();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&notice.payload).unwrap()["type"],
        "drain"
    );
    for _ in 0..8 {
        assert_eq!(get(lb.http(), "/").text().trim(), "drain-a");
    }
    assert_eq!(post(admin, "b", "resume").status, 200);
    assert_eq!(post(admin, "nobody", "drain").status, 404);
    let mut names = std::collections::HashSet::new();
    for _ in 0..8 {
        names.insert(get(lb.http(), "/").text().trim().to_string());
    }
    assert_eq!(names.len(), 2);
}

#[test]
fn counters_survive_re_registration() {
    let e = echo("again");
    let lb = balancer(&["--register-token", TOKEN]);
    let admin = lb.addr("admin");
    let mut ch = control(lb.http(), Some(TOKEN)).unwrap();
    register(&mut ch, "r", e.http().port(), 1);
    for _ in 0..5 {
        assert_eq!(get(lb.http(), "/").status, 200);
    }
    // A long-lived session holds one active count.
    let mut held = WsConn::connect(lb.http());
    held.echo_text("hold");
    let before = backend(admin, "r").unwrap();
    assert_eq!(before["requests_total"], 6);
    assert_eq!(before["active"], 1);
    let metrics = get(admin, "/metrics");
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    assert!(
        text.contains("wslb_backend_requests_total{id=\"r\"} 6"),
        "{text}"
    );
    assert!(text.contains("wslb_backend_active{id=\"r\"} 1"), "{text}");

    // The backend reconnects (new channel) and registers the same id; the old
    // channel then closes: the new registration stays, counters carry on.
    let mut again = control(lb.http(), Some(TOKEN)).unwrap();
    assert_eq!(
        register(&mut again, "r", e.http().port(), 2)["type"],
        "registered"
    );
    ch.drop_tcp();
    std::thread::sleep(Duration::from_millis(200));
    let after = backend(admin, "r").expect("still registered");
    assert_eq!(after["weight"], 2);
    assert_eq!(after["requests_total"], 6);
    assert_eq!(after["active"], 1);
    drop(held);
    assert_eq!(get(lb.http(), "/").status, 200);
    wait_for(
        admin,
        Duration::from_secs(3),
        "the session count to return",
        |l| l[0]["active"] == 0 && l[0]["requests_total"] == 7,
    );
}

#[test]
fn pick_hands_out_a_binding_and_redirects() {
    let a = echo("pick-a");
    let b = echo("pick-b");
    let lb = balancer(&["--register-token", TOKEN]);
    assert_eq!(get(lb.http(), "/_lb/pick").status, 503);
    let mut ca = control(lb.http(), Some(TOKEN)).unwrap();
    register(&mut ca, "a", a.http().port(), 1);
    let mut cb = control(lb.http(), Some(TOKEN)).unwrap();
    register(&mut cb, "b", b.http().port(), 1);

    let mut urls = std::collections::HashSet::new();
    let mut conn = HttpConn::connect(lb.http());
    for _ in 0..6 {
        let r = conn.get("/_lb/pick");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        urls.insert(v["url"].as_str().unwrap().to_string());
        assert!(v["id"] == "a" || v["id"] == "b");
    }
    let expected: std::collections::HashSet<String> = [a.http(), b.http()]
        .iter()
        .map(|x| format!("http://{x}"))
        .collect();
    assert_eq!(urls, expected);

    let r = get(lb.http(), "/_lb/pick?redirect=1");
    assert_eq!(r.status, 307);
    let location = r.header("location").unwrap().to_string();
    assert!(expected.contains(&location), "{location}");
    // Following the redirect reaches a backend directly.
    let direct: std::net::SocketAddr = location.trim_start_matches("http://").parse().unwrap();
    assert_eq!(get(direct, "/").status, 200);
    let _ = (&mut ca, &mut cb);
}
