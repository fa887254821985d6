//! The control channel v2 in process: a channel served by the real loop
//! over loopback, the test acting as the backend and as the workers (it
//! answers the router's commands itself, as `hub_worker` will): results
//! with their refs, refused operations that keep the channel open,
//! heartbeats served while an operation waits, the bound on pending
//! operations, the scope under `--backend-publish local`, events.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::ops::{event_message, forward_events, MAX_PENDING_OPS};
use crate::config::{BackendPublish, ServeConfig};
use crate::hub::events::{EventKind, Interest};
use crate::hub::{Command, Event, EventBus, Op, OpKind, Outcome, Tally};
use crate::pool::registry::hub::{Mailbox, MAX_QUEUED_EVENTS};
use crate::pool::registry::protocol::ServerMessage;
use crate::proto::ws::{generate_client_key, write_client_request, OpCode};
use crate::proxy::flow_tests::{run, Lb, WsEnd, STEP};
use crate::rt::notify::LocalEvent;

const TOKEN: &str = "t0k";

fn lb(tweak: impl FnOnce(&mut ServeConfig)) -> Lb {
    Lb::new(&[], |cfg| {
        cfg.register_token = Some(TOKEN.into());
        tweak(cfg);
    })
}

/// Opens a control channel through the flow.
async fn open(lb: &Lb) -> (WsEnd, monoio::task::JoinHandle<()>) {
    let (mut conn, task) = lb.connect().await;
    let mut req = Vec::new();
    let auth = format!("Bearer {TOKEN}");
    let key = generate_client_key();
    write_client_request(
        &mut req,
        "lb",
        "/_lb/register",
        &key,
        &[("Authorization", &auth)],
    );
    conn.send(&req).await;
    assert_eq!(conn.response().await.status, 101);
    (WsEnd::new(conn, true), task)
}

async fn send(ch: &mut WsEnd, v: Value) {
    ch.send(OpCode::Text, v.to_string().as_bytes()).await;
}

/// The next text message, as JSON (pongs skipped).
async fn recv(ch: &mut WsEnd) -> Value {
    loop {
        let m = ch.recv().await;
        match m.opcode {
            OpCode::Text => return serde_json::from_slice(&m.payload).expect("JSON"),
            OpCode::Pong => continue,
            other => panic!("expected text, got {other:?}: {:?}", m.payload),
        }
    }
}

async fn register(ch: &mut WsEnd, v: u32) -> Value {
    send(
        ch,
        json!({"type": "register", "v": v, "id": "api-1", "bindings": [":9001"]}),
    )
    .await;
    recv(ch).await
}

/// Acts as the workers: the next command the channel sent them.
async fn next_apply(lb: &Lb) -> (Arc<Op>, Arc<Tally>) {
    let inbox = lb.env.router.inbox(0).expect("one worker");
    for _ in 0..3000 {
        match inbox.try_next() {
            Some(Command::Apply { op, tally }) => return (op, tally),
            Some(other) => panic!("unexpected command {other:?}"),
            None => monoio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    panic!("no operation reached the workers");
}

fn answer(tally: &Tally, matched: u64, delivered: u64) {
    tally.add(&Outcome {
        matched,
        delivered,
        skipped: matched - delivered,
        dropped: 0,
        pongs: None,
    });
    tally.worker_done();
}

#[test]
fn operations_are_answered_with_their_ref_and_bad_ones_keep_the_channel() {
    run(async {
        let lb = lb(|cfg| cfg.backend_publish = BackendPublish::Local);
        let (mut ch, _task) = open(&lb).await;
        let reg = register(&mut ch, 2).await;
        assert_eq!(reg["type"], "registered", "{reg}");
        assert_eq!(reg["v"], 2);

        send(
            &mut ch,
            json!({"type": "publish", "ref": 7, "text": "hi", "channel": "room"}),
        )
        .await;
        let (op, tally) = next_apply(&lb).await;
        assert_eq!(op.filter.channel.as_deref(), Some("room"));
        assert_eq!(
            op.scope.as_deref(),
            Some("api-1"),
            "--backend-publish local"
        );
        // While the workers think, the channel still serves heartbeats and
        // pings.
        send(&mut ch, json!({"type": "heartbeat", "load": 3})).await;
        ch.send(OpCode::Ping, b"still there?").await;
        let pong = ch.recv().await;
        assert_eq!(
            (pong.opcode, pong.payload.as_slice()),
            (OpCode::Pong, &b"still there?"[..])
        );
        answer(&tally, 3, 2);
        let got = recv(&mut ch).await;
        assert_eq!(
            got,
            json!({"type": "result", "ref": 7, "matched": 3, "delivered": 2, "skipped": 1, "dropped": 0})
        );

        // A ping: pongs counted for its timeout, then the counts.
        send(
            &mut ch,
            json!({"type": "ping", "ref": "p-1", "timeout_ms": 50}),
        )
        .await;
        let (op, tally) = next_apply(&lb).await;
        assert_eq!(op.kind, OpKind::Ping { timeout_ms: 50 });
        tally.add(&Outcome {
            matched: 2,
            delivered: 2,
            ..Outcome::default()
        });
        tally.worker_done();
        tally.pong();
        let got = recv(&mut ch).await;
        assert_eq!(got["ref"], "p-1");
        assert_eq!(got["pongs"], 1, "{got}");
        tally.pong();
        assert_eq!(tally.pongs(), 1, "no pong counts after the answer");

        // A send to an id nobody holds: "no such connection".
        send(
            &mut ch,
            json!({"type": "send", "ref": 8, "id": "x-0-1", "text": "hi"}),
        )
        .await;
        // (An id of no worker: no worker is asked, the tally is done.)
        let got = recv(&mut ch).await;
        assert_eq!(got["type"], "op_error", "{got}");
        assert_eq!(got["ref"], 8);
        assert_eq!(got["status"], 404);

        // Refused operations: answered, and the channel goes on.
        for (bad, status) in [
            (json!({"type": "publish", "ref": 9}), 400),
            (json!({"type": "send", "ref": 10, "text": "no id"}), 400),
            (json!({"type": "close", "ref": 11}), 400),
            (json!({"type": "ping", "ref": [1]}), 400),
        ] {
            send(&mut ch, bad.clone()).await;
            let got = recv(&mut ch).await;
            assert_eq!(got["type"], "op_error", "{bad}: {got}");
            assert_eq!(got["status"], status, "{bad}: {got}");
            assert_eq!(
                got["ref"],
                bad.get("ref")
                    .filter(|r| !r.is_array())
                    .cloned()
                    .unwrap_or(Value::Null)
            );
            assert!(!got["message"].as_str().unwrap_or("").is_empty());
        }
        send(&mut ch, json!({"type": "drain"})).await;
        assert_eq!(recv(&mut ch).await["type"], "drain", "still served");
        assert!(lb.env.control_hub.connected() == 1);
    });
}

#[test]
fn pending_operations_are_bounded_per_channel() {
    run(async {
        let lb = lb(|_| {});
        let (mut ch, _task) = open(&lb).await;
        assert_eq!(register(&mut ch, 2).await["type"], "registered");
        for i in 0..=MAX_PENDING_OPS {
            send(&mut ch, json!({"type": "publish", "ref": i, "text": "x"})).await;
        }
        let got = recv(&mut ch).await;
        assert_eq!(got["type"], "op_error", "{got}");
        assert_eq!(got["status"], 429);
        assert_eq!(got["ref"], MAX_PENDING_OPS);
        let mut tallies = Vec::new();
        for _ in 0..MAX_PENDING_OPS {
            tallies.push(next_apply(&lb).await.1);
        }
        for t in &tallies {
            answer(t, 1, 1);
        }
        let mut refs = Vec::new();
        for _ in 0..MAX_PENDING_OPS {
            let got = recv(&mut ch).await;
            assert_eq!(got["type"], "result");
            refs.push(got["ref"].as_u64().expect("ref"));
        }
        refs.sort_unstable();
        assert_eq!(refs, (0..MAX_PENDING_OPS as u64).collect::<Vec<_>>());
        // Room again.
        send(
            &mut ch,
            json!({"type": "publish", "ref": "again", "text": "x"}),
        )
        .await;
        answer(&next_apply(&lb).await.1, 0, 0);
        assert_eq!(recv(&mut ch).await["ref"], "again");
    });
}

#[test]
fn v2_messages_need_a_v2_registration() {
    run(async {
        let lb = lb(|_| {});
        for before in [None, Some(1)] {
            let (mut ch, task) = open(&lb).await;
            if let Some(v) = before {
                assert_eq!(register(&mut ch, v).await["v"], 2, "the balancer says 2");
            }
            send(&mut ch, json!({"type": "publish", "text": "x"})).await;
            let got = recv(&mut ch).await;
            assert_eq!(got["type"], "error", "{got}");
            assert_eq!(ch.recv_close().await.0, 1008);
            crate::proxy::flow_tests::ended(task).await;
        }
        assert!(lb.env.router.inbox(0).expect("inbox").try_next().is_none());
    });
}

#[test]
fn events_about_the_backend_reach_its_channel() {
    run(async {
        let lb = lb(|_| {});
        let (mut ch, _task) = open(&lb).await;
        assert_eq!(register(&mut ch, 2).await["type"], "registered");
        send(&mut ch, json!({"type": "events", "messages": false})).await;
        let bus = lb.env.events.clone();
        for _ in 0..300 {
            if bus.active() {
                break;
            }
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(bus.active() && !bus.wants_messages());
        bus.publish(open_event("other"));
        bus.publish(open_event("api-1"));
        let got = recv(&mut ch).await;
        assert_eq!(got["type"], "event");
        assert_eq!(got["event"], "session_open");
        assert_eq!(got["backend"], "api-1");
        assert!(got["ts_ms"].as_u64().is_some());
        // Asking again changes the interest; `enabled: false` stops them.
        send(&mut ch, json!({"type": "events", "messages": true})).await;
        for _ in 0..300 {
            if bus.wants_messages() {
                break;
            }
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(bus.wants_messages());
        send(&mut ch, json!({"type": "events", "enabled": false})).await;
        for _ in 0..300 {
            if !bus.active() {
                break;
            }
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(!bus.active(), "the subscription left with the forwarder");
        // The channel's end drops a subscription too.
        send(&mut ch, json!({"type": "events"})).await;
        send(&mut ch, json!({"type": "deregister"})).await;
        assert_eq!(ch.recv_close().await.0, 1000);
        for _ in 0..300 {
            if !bus.active() {
                break;
            }
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(!bus.active());
    });
}

fn open_event(backend: &str) -> Event {
    Event::now(EventKind::SessionOpen {
        id: "t-0-1".into(),
        client: "127.0.0.1:1".into(),
        backend: backend.into(),
        path: "/".into(),
        subprotocol: None,
    })
}

#[test]
fn a_backend_too_slow_for_its_events_is_told_how_many_it_lost() {
    run(async {
        let bus = Arc::new(EventBus::new());
        let mailbox = Arc::new(Mailbox::default());
        let stop = std::rc::Rc::new(LocalEvent::new());
        let sub = bus.subscribe(Interest::default());
        let forwarder = monoio::spawn(forward_events(sub, mailbox.clone(), stop.clone()));
        let filler = event_message(&open_event("b")).expect("an event");
        for _ in 0..MAX_QUEUED_EVENTS {
            assert!(mailbox.push_event(filler.clone()));
        }
        for _ in 0..3 {
            bus.publish(open_event("b"));
        }
        monoio::time::sleep(Duration::from_millis(20)).await;
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut taken = 0;
        while mailbox.poll_next(&mut cx).is_ready() {
            taken += 1;
        }
        assert_eq!(taken, MAX_QUEUED_EVENTS, "nothing past the bound");
        bus.publish(open_event("b"));
        monoio::time::sleep(Duration::from_millis(20)).await;
        let std::task::Poll::Ready(ServerMessage::Event { fields }) = mailbox.poll_next(&mut cx)
        else {
            panic!("no lost notice")
        };
        assert_eq!(fields["event"], "lost");
        assert_eq!(fields["lost"], 3);
        assert!(matches!(
            mailbox.poll_next(&mut cx),
            std::task::Poll::Ready(ServerMessage::Event { .. })
        ));
        stop.fire();
        monoio::time::timeout(STEP, forwarder)
            .await
            .expect("the forwarder ends when stopped");
        assert!(!bus.active());
    });
}
