//! The agent's messaging operations and events against fake balancers:
//! every operation goes to every registered balancer and their answers are
//! given one by one and summed; a send that one balancer holds; refusals,
//! silence and a balancer that is down; events to the callback, asked for
//! again after a reconnect; waiting on the agent's own thread refused; a v1
//! balancer registered with `"v": 1` and given no operations.

mod agent_fake;

use std::sync::atomic::AtomicU32;
use std::sync::{mpsc, Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use agent_fake::{Answer, Fake, OpAnswer};
use serde_json::Value;
use wslb::agent::{spawn, AgentConfig, AgentError, AgentHandle, BalancerUrl, OnEvent, OpFailure};
use wslb::hub::{CloseTarget, Filter, Payload, Request};

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
    cfg.op_timeout = Duration::from_secs(3);
    cfg
}

fn start(cfg: AgentConfig) -> AgentHandle {
    spawn(cfg, Arc::new(AtomicU32::new(0))).expect("agent starts")
}

fn room() -> Filter {
    Filter {
        channel: Some("room:42".into()),
        ..Filter::default()
    }
}

#[test]
fn operations_fan_out_to_every_balancer_and_their_answers_are_summed() {
    let a = Fake::start("127.0.0.1:0", None, 100);
    let b = Fake::start("127.0.0.1:0", None, 100);
    a.set_op_answer(OpAnswer::Result {
        matched: 2,
        delivered: 2,
    });
    b.set_op_answer(OpAnswer::Result {
        matched: 3,
        delivered: 1,
    });
    let agent = start(config(&[a.url(), b.url()]));
    assert!(agent.wait_registered(WAIT), "{:?}", agent.status());
    assert!(agent.status().iter().all(|s| s.protocol == 2));

    let got = agent
        .publish(Payload::Text("hi".into()), &room())
        .expect("publish");
    assert!(got.is_ok(), "{got:?}");
    assert_eq!(
        (got.total.matched, got.total.delivered, got.total.skipped),
        (5, 3, 2)
    );
    let urls: Vec<String> = agent.status().into_iter().map(|s| s.url).collect();
    let shown: Vec<String> = got.replies.iter().map(|r| r.url.clone()).collect();
    assert_eq!(shown, urls, "one answer per balancer, in order");
    for fake in [&a, &b] {
        let sent = fake.wait_messages("publish", 1, WAIT);
        assert_eq!(sent.len(), 1, "each balancer gets it once");
        let msg = &sent[0].1;
        assert_eq!(msg["text"], "hi");
        assert_eq!(msg["channel"], "room:42");
        assert!(msg["ref"].is_u64(), "{msg}");
    }

    // A send: only one balancer holds the connection.
    a.set_op_answer(OpAnswer::Error(404));
    b.set_op_answer(OpAnswer::Result {
        matched: 1,
        delivered: 1,
    });
    let got = agent
        .send("t-0-1", Payload::Binary(vec![1, 2]))
        .expect("send");
    assert!(got.is_ok(), "{got:?}");
    assert!(got.replies[0]
        .result
        .as_ref()
        .is_err_and(OpFailure::is_not_found));
    assert_eq!(got.total.matched, 1);
    assert_eq!(b.wait_messages("send", 1, WAIT)[0].1["binary"], "AQI=");
    // Held nowhere: not ok.
    b.set_op_answer(OpAnswer::Error(404));
    assert!(!agent
        .send("t-0-1", Payload::Text("x".into()))
        .expect("send")
        .is_ok());

    // Pongs are summed; subscribe, unsubscribe and close go out as asked.
    a.set_op_answer(OpAnswer::Result {
        matched: 1,
        delivered: 1,
    });
    b.set_op_answer(OpAnswer::Result {
        matched: 2,
        delivered: 2,
    });
    let got = agent
        .ping(&Filter::default(), Duration::from_millis(20))
        .expect("ping");
    assert_eq!(got.total.pongs, Some(3));
    assert_eq!(a.wait_messages("ping", 1, WAIT)[0].1["timeout_ms"], 20);
    // Found on both: not what a request naming one session expects.
    assert!(!agent.subscribe("t-0-1", &["a", "b"]).expect("sub").is_ok());
    a.set_op_answer(OpAnswer::Error(404));
    assert!(agent.subscribe("t-0-1", &["a", "b"]).expect("sub").is_ok());
    assert_eq!(
        b.wait_messages("subscribe", 1, WAIT)[0].1["channels"],
        serde_json::json!(["a", "b"])
    );
    assert!(agent.unsubscribe("t-0-1", &["a"]).expect("unsub").is_ok());
    a.set_op_answer(OpAnswer::Result {
        matched: 1,
        delivered: 1,
    });
    let got = agent
        .close(&CloseTarget::All, 1001, "maintenance")
        .expect("close");
    assert!(got.is_ok());
    let close = &a.wait_messages("close", 1, WAIT)[0].1;
    assert_eq!(
        (close["all"].clone(), close["code"].clone()),
        (true.into(), 1001.into())
    );

    // What every balancer would refuse is refused before sending.
    let nobody = CloseTarget::Filter(Filter::default());
    assert!(matches!(
        agent.close(&nobody, 1000, ""),
        Err(AgentError::BadRequest(_))
    ));
    let huge = Payload::Binary(vec![0; 1 << 20]);
    assert!(matches!(
        agent.publish(huge, &Filter::default()),
        Err(AgentError::TooLarge { .. })
    ));
    assert_eq!(a.messages("close").len(), 1);

    // A silent balancer times out; the other's answer still counts.
    b.set_op_answer(OpAnswer::Silent);
    let started = Instant::now();
    let got = agent
        .publish(Payload::Text("x".into()), &Filter::default())
        .expect("publish");
    assert!(started.elapsed() < Duration::from_secs(6));
    assert_eq!(got.replies[1].result, Err(OpFailure::TimedOut));
    assert_eq!(got.total.matched, 1);
    assert!(!got.is_ok());

    // A balancer that is down is not waited for.
    b.stop();
    assert!(agent.wait_until(WAIT, |st| st[1].state != wslb::agent::LinkState::Registered));
    let got = agent
        .publish(Payload::Text("x".into()), &Filter::default())
        .expect("publish");
    assert_eq!(got.replies[1].result, Err(OpFailure::NotConnected));
    assert!(got.replies[0].result.is_ok());
    assert!(agent.stop(WAIT));
}

#[test]
fn a_pending_operation_is_answered_when_its_session_ends() {
    let a = Fake::start("127.0.0.1:0", None, 100);
    a.set_op_answer(OpAnswer::Silent);
    let mut cfg = config(&[a.url()]);
    cfg.op_timeout = Duration::from_secs(8);
    let agent = start(cfg);
    assert!(agent.wait_registered(WAIT));
    let pending = agent
        .submit(&Request::Publish {
            msg: Payload::Text("x".into()),
            filter: Filter::default(),
        })
        .expect("submit");
    a.wait_messages("publish", 1, WAIT);
    assert!(!pending.is_done());
    let started = Instant::now();
    a.drop_connections();
    let got = pending.wait().expect("wait");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not the timeout"
    );
    assert_eq!(got.replies[0].result, Err(OpFailure::Disconnected));
    assert!(agent.stop(WAIT));
}

#[test]
fn events_reach_the_callback_and_are_asked_for_after_every_registration() {
    let fake = Fake::start("127.0.0.1:0", None, 100);
    let (tx, rx) = mpsc::channel::<(String, Value, Option<String>)>();
    let tx = Mutex::new(tx);
    let me: Arc<OnceLock<Weak<AgentHandle>>> = Arc::new(OnceLock::new());
    let theirs = me.clone();
    let mut cfg = config(&[fake.url()]);
    cfg.events_messages = true;
    cfg.on_event = Some(OnEvent::new(move |url, event| {
        // Waiting for an answer here could never end: refused.
        let waited = theirs.get().and_then(Weak::upgrade).map(|h| {
            let req = Request::Ping {
                filter: Filter::default(),
                timeout_ms: None,
            };
            // Refused before sending...
            let blocking = h.ping(&Filter::default(), Duration::from_millis(5));
            assert!(matches!(blocking, Err(AgentError::OnAgentThread)));
            // ... while submitting is fine, but not waiting.
            match h.submit(&req).and_then(|p| p.wait()) {
                Err(e) => e.to_string(),
                Ok(f) => format!("waited: {f:?}"),
            }
        });
        let _ = tx
            .lock()
            .expect("lock")
            .send((url.to_string(), event.clone(), waited));
    }));
    let agent = Arc::new(start(cfg));
    let _ = me.set(Arc::downgrade(&agent));
    assert!(agent.wait_registered(WAIT));
    let asked = fake.wait_messages("events", 1, WAIT);
    assert_eq!(asked[0].1["messages"], true);

    fake.send_text(
        r#"{"type":"event","event":"session_open","ts_ms":5,"id":"t-0-1","backend":"api-1"}"#,
    );
    let (url, event, waited) = rx.recv_timeout(WAIT).expect("an event");
    assert_eq!(url, agent.status()[0].url);
    assert_eq!(event["event"], "session_open");
    assert_eq!(event["id"], "t-0-1");
    assert!(event.get("type").is_none(), "{event}");
    let waited = waited.expect("the handle was there");
    assert!(waited.contains("own thread"), "{waited}");
    // The submitted ping went out (once: the refused one did not).
    assert_eq!(fake.wait_messages("ping", 1, WAIT).len(), 1);

    // After a reconnect, the events are asked for again.
    fake.drop_connections();
    fake.wait_messages("register", 2, WAIT);
    let asked = fake.wait_messages("events", 2, WAIT);
    assert_eq!(asked[1].0, 2, "on the new connection");
    fake.send_text(r#"{"type":"event","event":"lost","lost":4}"#);
    let (_, event, _) = rx.recv_timeout(WAIT).expect("the lost notice");
    assert_eq!(event["lost"], 4);
    let Ok(agent) = Arc::try_unwrap(agent) else {
        panic!("the handle is shared")
    };
    assert!(agent.stop(WAIT));
}

#[test]
fn a_v1_balancer_is_registered_with_v1_and_given_no_operations() {
    let old = Fake::start("127.0.0.1:0", None, 100);
    old.set_answer(Answer::V1Only);
    let new = Fake::start("127.0.0.1:0", None, 100);
    new.set_op_answer(OpAnswer::Result {
        matched: 1,
        delivered: 1,
    });
    let mut cfg = config(&[old.url(), new.url()]);
    cfg.on_event = Some(OnEvent::new(|_, _| {}));
    let agent = start(cfg);
    assert!(agent.wait_registered(WAIT), "{:?}", agent.status());
    let regs = old.messages("register");
    assert_eq!(regs.first().map(|(_, m)| m["v"].clone()), Some(2.into()));
    assert_eq!(regs.last().map(|(_, m)| m["v"].clone()), Some(1.into()));
    let st = agent.status();
    assert_eq!((st[0].protocol, st[1].protocol), (1, 2));
    let got = agent
        .publish(Payload::Text("x".into()), &Filter::default())
        .expect("publish");
    assert_eq!(got.replies[0].result, Err(OpFailure::Unsupported));
    assert_eq!(got.total.matched, 1);
    assert!(old.messages("publish").is_empty());
    assert!(old.messages("events").is_empty(), "no events asked of v1");
    new.wait_messages("events", 1, WAIT);
    assert!(agent.stop(WAIT));
}
