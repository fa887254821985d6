//! The control channel v2 against the real binary: v1 and v2 backends share
//! a balancer, a refused operation is answered and the channel goes on; an
//! agent's publish reaches clients on every backend, with events back; and
//! an agent registered with two balancers reaches every client of both,
//! each exactly once.

mod common;

use std::sync::atomic::AtomicU32;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::admin::{backends, control, request};
use common::proc::{echo, Proc};
use common::ws_client::WsConn;
use serde_json::json;
use wslb::agent::{AgentConfig, BalancerUrl, OnEvent};
use wslb::hub::{Filter, Payload};
use wslb::proto::ws::frame::OpCode;

const TOKEN: &str = "t0ken";

fn balancer() -> Proc {
    Proc::start(&[
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
        "--register-token",
        TOKEN,
    ])
}

#[test]
fn v1_and_v2_backends_share_a_balancer_and_bad_operations_keep_the_channel() {
    let a = echo("hub-a");
    let b = echo("hub-b");
    let lb = balancer();
    let mut old = control(lb.http(), Some(TOKEN)).expect("upgrade");
    let reply = request(
        &mut old,
        &json!({"type": "register", "v": 1, "id": "old", "bindings": [format!(":{}", a.http().port())]}),
    );
    assert_eq!(reply["type"], "registered", "{reply}");
    assert_eq!(reply["v"], 2, "the balancer tells its own version");
    let mut new = control(lb.http(), Some(TOKEN)).expect("upgrade");
    let reply = request(
        &mut new,
        &json!({"type": "register", "v": 2, "id": "new", "bindings": [format!(":{}", b.http().port())]}),
    );
    assert_eq!(reply["type"], "registered", "{reply}");
    assert_eq!(backends(lb.addr("admin")).len(), 2);

    for (bad, status) in [
        (json!({"type": "publish", "ref": "r1"}), 400),
        (json!({"type": "send", "ref": 2, "text": "no id"}), 400),
        (json!({"type": "close", "ref": 3}), 400),
        (
            json!({"type": "ping", "ref": 4, "timeout_ms": 600_000}),
            400,
        ),
        (
            json!({"type": "subscribe", "ref": 5, "id": "x", "channels": []}),
            400,
        ),
    ] {
        let got = request(&mut new, &bad);
        assert_eq!(got["type"], "op_error", "{bad}: {got}");
        assert_eq!(got["status"], status, "{bad}: {got}");
        assert_eq!(got["ref"], bad["ref"]);
    }
    // Still open and registered: drain is answered, both still pooled.
    assert_eq!(
        request(&mut new, &json!({"type": "drain"}))["type"],
        "drain"
    );
    assert_eq!(backends(lb.addr("admin")).len(), 2);
    // A v1 channel may not send operations: refused like an unknown type.
    assert!(old.send_text(&json!({"type": "publish", "text": "x"}).to_string()));
    let m = old.recv_msg();
    assert_eq!(m.opcode, OpCode::Text);
    let err: serde_json::Value = serde_json::from_slice(&m.payload).expect("json");
    assert_eq!(err["type"], "error", "{err}");
    assert_eq!(old.recv_close().map(|c| c.0), Some(1008));
}

#[test]
fn an_agent_publishes_to_clients_on_every_backend_and_hears_their_events() {
    let a = echo("hub-a");
    let b = echo("hub-b");
    let lb = balancer();
    let url = BalancerUrl::parse(&format!("ws://{}", lb.http())).expect("url");
    let (tx, rx) = mpsc::channel::<serde_json::Value>();
    let tx = Mutex::new(tx);
    let mut agents = Vec::new();
    for (id, echo) in [("hub-a", &a), ("hub-b", &b)] {
        let mut cfg = AgentConfig::new(vec![url.clone()], vec![format!(":{}", echo.http().port())]);
        cfg.id = id.into();
        cfg.token = Some(TOKEN.into());
        if id == "hub-a" {
            let tx = Mutex::new(tx.lock().expect("lock").clone());
            cfg.on_event = Some(OnEvent::new(move |_, e| {
                let _ = tx.lock().expect("lock").send(e.clone());
            }));
        }
        let agent = wslb::agent::spawn(cfg, Arc::new(AtomicU32::new(0))).expect("agent");
        assert!(agent.wait_registered(Duration::from_secs(10)));
        agents.push(agent);
    }
    let mut clients: Vec<WsConn<std::net::TcpStream>> =
        (0..4).map(|_| WsConn::connect(lb.http())).collect();
    let opened = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("a session_open about hub-a");
    assert_eq!(opened["event"], "session_open");
    assert_eq!(opened["backend"], "hub-a");

    let got = agents[1]
        .publish(Payload::Text("to everyone".into()), &Filter::default())
        .expect("publish");
    assert!(got.is_ok(), "{got:?}");
    assert_eq!(got.total.delivered, 4, "{got:?}");
    for c in &mut clients {
        let m = c.recv_msg();
        assert_eq!(m.payload, b"to everyone");
    }
    for agent in agents {
        assert!(agent.stop(Duration::from_secs(5)));
    }
}

#[test]
fn a_publish_through_two_balancers_reaches_every_client_once() {
    let a = echo("two-a");
    let b = echo("two-b");
    let (lb1, lb2) = (balancer(), balancer());
    let urls: Vec<BalancerUrl> = [&lb1, &lb2]
        .iter()
        .map(|lb| BalancerUrl::parse(&format!("ws://{}", lb.http())).expect("url"))
        .collect();
    let mut agents = Vec::new();
    for (id, echo) in [("two-a", &a), ("two-b", &b)] {
        let mut cfg = AgentConfig::new(urls.clone(), vec![format!(":{}", echo.http().port())]);
        cfg.id = id.into();
        cfg.token = Some(TOKEN.into());
        let agent = wslb::agent::spawn(cfg, Arc::new(AtomicU32::new(0))).expect("agent");
        agents.push(agent);
    }
    for lb in [&lb1, &lb2] {
        common::admin::wait_for(
            lb.addr("admin"),
            Duration::from_secs(10),
            "both backends",
            |l| l.len() == 2,
        );
    }
    // Three clients on each balancer, spread over both backends.
    let mut clients: Vec<WsConn<std::net::TcpStream>> = [&lb1, &lb2]
        .iter()
        .flat_map(|lb| {
            (0..3)
                .map(|_| WsConn::connect(lb.http()))
                .collect::<Vec<_>>()
        })
        .collect();
    let got = agents[0]
        .publish(Payload::Text("once each".into()), &Filter::default())
        .expect("publish");
    assert!(got.is_ok(), "{got:?}");
    assert_eq!(got.replies.len(), 2, "one answer per balancer: {got:?}");
    assert_eq!(got.total.matched, 6, "{got:?}");
    assert_eq!(got.total.delivered, 6, "{got:?}");
    for c in &mut clients {
        assert_eq!(c.recv_msg().payload, b"once each");
        c.set_read_timeout(Duration::from_millis(300));
        assert_eq!(c.recv(), common::ws_client::Event::Timeout, "exactly once");
    }
    for agent in agents {
        assert!(agent.stop(Duration::from_secs(5)));
    }
}
