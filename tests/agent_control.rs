//! The agent against a fake balancer control channel: what `register`
//! carries, heartbeats with the live load, reconnects after drops and
//! restarts, refusals retried, drain/resume, pings, deregister on stop.

mod agent_fake;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agent_fake::{Answer, Event, Fake};
use wslb::agent::{spawn, AgentConfig, AgentHandle, BalancerUrl, LinkState};
use wslb::proto::ws::frame::OpCode;

const WAIT: Duration = Duration::from_secs(10);

fn config(urls: &[String]) -> AgentConfig {
    let lbs = urls
        .iter()
        .map(|u| BalancerUrl::parse(u).expect("url"))
        .collect();
    let mut cfg = AgentConfig::new(lbs, vec![":9001".into()]);
    cfg.auto_restart = Duration::from_millis(100);
    cfg.max_backoff = Duration::from_millis(400);
    cfg.connect_timeout = Duration::from_secs(3);
    cfg
}

fn start(cfg: AgentConfig) -> (AgentHandle, Arc<AtomicU32>) {
    let load = Arc::new(AtomicU32::new(0));
    (spawn(cfg, load.clone()).expect("agent starts"), load)
}

#[test]
fn registers_with_its_fields_then_heartbeats_the_live_load() {
    let fake = Fake::start("127.0.0.1:0", Some("t0k"), 100);
    let mut cfg = config(&[fake.url()]);
    cfg.token = Some("t0k".into());
    cfg.id = "api-7".into();
    cfg.weight = 5;
    cfg.bindings = vec![":9001".into(), "http://127.0.0.1:9002".into()];
    cfg.metadata = Some(serde_json::json!({"zone": "a"}));
    let (agent, load) = start(cfg);
    load.store(7, Ordering::Relaxed);

    let req = fake.wait(WAIT, |ev| {
        ev.iter().find_map(|e| match e {
            Event::Request { path, auth, .. } => Some((path.clone(), auth.clone())),
            _ => None,
        })
    });
    assert_eq!(
        req,
        Some(("/_lb/register".to_string(), Some("Bearer t0k".to_string())))
    );
    let reg = &fake.wait_messages("register", 1, WAIT)[0].1;
    assert_eq!(reg["v"], 2);
    assert_eq!(reg["id"], "api-7");
    assert_eq!(reg["weight"], 5);
    assert_eq!(
        reg["bindings"],
        serde_json::json!([":9001", "http://127.0.0.1:9002"])
    );
    assert_eq!(reg["metadata"], serde_json::json!({"zone": "a"}));

    assert!(agent.wait_registered(WAIT), "status: {:?}", agent.status());
    let st = &agent.status()[0];
    assert_eq!(st.balancer_id.as_deref(), Some("fake-lb"));
    assert_eq!(st.heartbeat_interval, Some(Duration::from_millis(100)));
    assert_eq!(st.bindings, vec!["http://127.0.0.1:9001".to_string()]);

    let beats = fake.wait_messages("heartbeat", 3, WAIT);
    assert!(beats.iter().any(|(_, m)| m["load"] == 7), "{beats:?}");
    load.store(9, Ordering::Relaxed);
    let n = beats.len();
    let beats = fake.wait_messages("heartbeat", n + 3, WAIT);
    assert_eq!(
        beats.last().map(|(_, m)| m["load"].clone()),
        Some(serde_json::json!(9))
    );
    assert!(
        beats.iter().all(|(conn, _)| *conn == 1),
        "one connection while healthy"
    );
    assert!(agent.stop(WAIT));
}

#[test]
fn reconnects_after_the_balancer_drops_the_connection() {
    let fake = Fake::start("127.0.0.1:0", None, 100);
    let (agent, _load) = start(config(&[fake.url()]));
    fake.wait_messages("register", 1, WAIT);
    assert!(agent.wait_registered(WAIT));
    fake.drop_connections();
    let regs = fake.wait_messages("register", 2, WAIT);
    assert_eq!(regs[1].0, 2, "second registration on a new connection");
    assert!(agent.wait_registered(WAIT));
    let st = &agent.status()[0];
    assert_eq!(st.registrations, 2);
    assert!(st.last_error.is_none(), "cleared on success: {st:?}");
    // And again: the watchdog keeps going.
    fake.drop_connections();
    fake.wait_messages("register", 3, WAIT);
    assert!(agent.stop(WAIT));
}

#[test]
fn reconnects_after_the_balancer_restarts_on_the_same_port() {
    let fake = Fake::start("127.0.0.1:0", None, 100);
    let addr = fake.addr;
    let (agent, _load) = start(config(&[fake.url()]));
    fake.wait_messages("register", 1, WAIT);
    fake.stop();
    // Down: attempts fail (connection refused) and are retried.
    assert!(
        agent.wait_until(WAIT, |st| st[0].state == LinkState::Waiting
            && st[0].attempts >= 3)
    );
    let st = &agent.status()[0];
    assert!(
        st.last_error.as_deref().unwrap_or("").contains("connect"),
        "{st:?}"
    );
    assert!(!st.refused);
    let fake = Fake::start(&addr.to_string(), None, 100);
    fake.wait_messages("register", 1, WAIT);
    assert!(agent.wait_registered(WAIT), "{:?}", agent.status());
    fake.wait_messages("heartbeat", 1, WAIT);
    assert!(agent.stop(WAIT));
}

#[test]
fn a_refused_token_is_retried_until_the_balancer_accepts_it() {
    let fake = Fake::start("127.0.0.1:0", Some("right"), 100);
    let mut cfg = config(&[fake.url()]);
    cfg.token = Some("wrong".into());
    let (agent, _load) = start(cfg);
    let n = fake.wait(WAIT, |ev| {
        let n = ev
            .iter()
            .filter(|e| matches!(e, Event::Request { .. }))
            .count();
        (n >= 3).then_some(n)
    });
    assert!(n.is_some(), "401 must be retried: {:?}", fake.events());
    let st = &agent.status()[0];
    assert!(st.refused, "{st:?}");
    assert!(
        st.last_error.as_deref().unwrap_or("").contains("401"),
        "{st:?}"
    );
    assert!(fake.messages("register").is_empty());
    // The operator fixes the balancer's token; the agent gets in.
    fake.set_token(Some("wrong"));
    fake.wait_messages("register", 1, WAIT);
    assert!(agent.wait_registered(WAIT));
    assert!(!agent.status()[0].refused);
    assert!(agent.stop(WAIT));
}

#[test]
fn a_refused_registration_is_retried_at_the_capped_backoff() {
    let fake = Fake::start("127.0.0.1:0", None, 100);
    fake.set_answer(Answer::Refuse("id taken".into()));
    let (agent, _load) = start(config(&[fake.url()]));
    fake.wait_messages("register", 2, WAIT);
    assert!(agent.wait_until(WAIT, |st| st[0].refused));
    let st = &agent.status()[0];
    assert!(
        st.last_error.as_deref().unwrap_or("").contains("id taken"),
        "{st:?}"
    );
    assert_ne!(st.state, LinkState::Registered);
    fake.set_answer(Answer::Registered);
    assert!(agent.wait_registered(WAIT));
    assert!(agent.stop(WAIT));
}

#[test]
fn drain_resume_pings_and_deregister_on_stop() {
    let fake = Fake::start("127.0.0.1:0", None, 100);
    let (agent, _load) = start(config(&[fake.url()]));
    assert!(agent.wait_registered(WAIT));

    agent.drain();
    fake.wait_messages("drain", 1, WAIT);
    agent.resume();
    fake.wait_messages("resume", 1, WAIT);

    fake.send_text(r#"{"type":"drain"}"#);
    assert!(agent.wait_until(WAIT, |st| st[0].draining));
    fake.send_text(r#"{"type":"resume"}"#);
    assert!(agent.wait_until(WAIT, |st| !st[0].draining));

    fake.send_frame(OpCode::Ping, b"are-you-there");
    let pong = fake.wait(WAIT, |ev| {
        ev.iter().find_map(|e| match e {
            Event::Pong { payload, .. } => Some(payload.clone()),
            _ => None,
        })
    });
    assert_eq!(pong.as_deref(), Some(&b"are-you-there"[..]));

    // A drain wish survives a reconnect.
    agent.drain();
    fake.wait_messages("drain", 2, WAIT);
    fake.drop_connections();
    let drains = fake.wait_messages("drain", 3, WAIT);
    assert_eq!(drains[2].0, 2, "drain re-sent on the new connection");

    assert!(agent.stop(WAIT));
    fake.wait_messages("deregister", 1, WAIT);
    let close = fake.wait(WAIT, |ev| {
        ev.iter().find_map(|e| match e {
            Event::Close { code, .. } => Some(*code),
            _ => None,
        })
    });
    assert_eq!(close, Some(Some(1000)));
}

#[test]
fn deregister_leaves_until_register_and_serves_several_balancers() {
    let a = Fake::start("127.0.0.1:0", None, 100);
    let b = Fake::start("127.0.0.1:0", None, 100);
    let (agent, _load) = start(config(&[a.url(), b.url()]));
    assert!(agent.wait_registered(WAIT), "{:?}", agent.status());
    agent.deregister();
    a.wait_messages("deregister", 1, WAIT);
    b.wait_messages("deregister", 1, WAIT);
    assert!(agent.wait_until(WAIT, |st| st
        .iter()
        .all(|s| s.state == LinkState::Deregistered)));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        a.messages("register").len(),
        1,
        "no reconnect while deregistered"
    );
    agent.register();
    a.wait_messages("register", 2, WAIT);
    b.wait_messages("register", 2, WAIT);
    assert!(agent.wait_registered(WAIT));
    assert!(agent.stop(WAIT));
}
