//! Tests for the control-channel messages: every refusal, every binding
//! form, both protocol versions, the v2 operations, events and answers.

use super::*;
use crate::hub::ops::Verb;
use serde_json::json;

const MAX: usize = 64 * 1024;

fn parse(s: &str) -> Result<ClientMessage, ProtocolError> {
    parse_client_message(s, MAX)
}

fn reg(extra: &str) -> String {
    format!(r#"{{"type":"register","v":1,"id":"api-1","bindings":[":9001"]{extra}}}"#)
}

#[test]
fn register_parses_with_defaults() {
    let m = parse(&reg("")).expect("valid");
    assert_eq!(
        m,
        ClientMessage::Register {
            v: 1,
            id: "api-1".into(),
            bindings: vec![":9001".into()],
            weight: 1,
            metadata: None
        }
    );
    let m = parse(&reg(r#","weight":5,"metadata":{"zone":"a"},"future":true"#)).expect("valid");
    let ClientMessage::Register {
        weight, metadata, ..
    } = m
    else {
        panic!("not register")
    };
    assert_eq!(weight, 5);
    assert_eq!(metadata, Some(serde_json::json!({"zone": "a"})));
}

#[test]
fn binding_forms_normalise() {
    let m = parse(
        r#"{"type":"register","v":1,"id":"x","bindings":["9001",{"port":9002},9003,"ws://10.0.0.5:81/chat"]}"#,
    )
    .expect("valid");
    let ClientMessage::Register { bindings, .. } = m else {
        panic!("not register")
    };
    assert_eq!(
        bindings,
        vec!["9001", ":9002", ":9003", "ws://10.0.0.5:81/chat"]
    );
}

#[test]
fn simple_messages_parse() {
    assert_eq!(
        parse(r#"{"type":"heartbeat","load":12}"#),
        Ok(ClientMessage::Heartbeat { load: 12 })
    );
    assert_eq!(parse(r#"{"type":"drain"}"#), Ok(ClientMessage::Drain));
    assert_eq!(parse(r#"{"type":"resume"}"#), Ok(ClientMessage::Resume));
    assert_eq!(
        parse(r#"{"type":"deregister"}"#),
        Ok(ClientMessage::Deregister)
    );
}

#[test]
fn every_error_case() {
    use ProtocolError as E;
    type Check = fn(&ProtocolError) -> bool;
    let cases: Vec<(String, Check)> = vec![
        ("{not json".into(), |e| matches!(e, E::BadJson(_))),
        ("[1,2]".into(), |e| matches!(e, E::MissingType)),
        (r#"{"load":1}"#.into(), |e| matches!(e, E::MissingType)),
        (r#"{"type":7}"#.into(), |e| matches!(e, E::MissingType)),
        (
            r#"{"type":"explode"}"#.into(),
            |e| matches!(e, E::UnknownType(t) if t == "explode"),
        ),
        (
            r#"{"type":"heartbeat"}"#.into(),
            |e| matches!(e, E::BadMessage { kind, .. } if kind == "heartbeat"),
        ),
        (r#"{"type":"heartbeat","load":-1}"#.into(), |e| {
            matches!(e, E::BadMessage { .. })
        }),
        (
            r#"{"type":"register","id":"a","bindings":[":1"]}"#.into(),
            |e| matches!(e, E::UnsupportedVersion(_)),
        ),
        (
            r#"{"type":"register","v":3,"id":"a","bindings":[":1"]}"#.into(),
            |e| matches!(e, E::UnsupportedVersion(v) if v == "3"),
        ),
        (
            r#"{"type":"register","v":0,"id":"a","bindings":[":1"]}"#.into(),
            |e| matches!(e, E::UnsupportedVersion(v) if v == "0"),
        ),
        (
            r#"{"type":"register","v":1.5,"id":"a","bindings":[":1"]}"#.into(),
            |e| matches!(e, E::UnsupportedVersion(_)),
        ),
        (
            r#"{"type":"register","v":4294967298,"id":"a","bindings":[":1"]}"#.into(),
            |e| matches!(e, E::UnsupportedVersion(_)),
        ),
        (
            r#"{"type":"events","messages":"yes"}"#.into(),
            |e| matches!(e, E::BadMessage { kind, .. } if kind == "events"),
        ),
        (r#"{"type":"broadcast","data":"x"}"#.into(), |e| {
            matches!(e, E::UnknownType(_))
        }),
        (
            r#"{"type":"register","v":"1","id":"a","bindings":[":1"]}"#.into(),
            |e| matches!(e, E::UnsupportedVersion(_)),
        ),
        (
            r#"{"type":"register","v":1,"id":"","bindings":[":1"]}"#.into(),
            |e| matches!(e, E::BadId { .. }),
        ),
        (
            r#"{"type":"register","v":1,"id":"a b","bindings":[":1"]}"#.into(),
            |e| matches!(e, E::BadId { .. }),
        ),
        (
            format!(
                r#"{{"type":"register","v":1,"id":"{}","bindings":[":1"]}}"#,
                "x".repeat(129)
            ),
            |e| matches!(e, E::BadId { .. }),
        ),
        (
            r#"{"type":"register","v":1,"id":"a","bindings":[]}"#.into(),
            |e| matches!(e, E::EmptyBindings),
        ),
        (r#"{"type":"register","v":1,"id":"a"}"#.into(), |e| {
            matches!(e, E::BadMessage { .. })
        }),
        (
            format!(
                r#"{{"type":"register","v":1,"id":"a","bindings":[{}]}}"#,
                vec![r#"":1""#; 17].join(",")
            ),
            |e| matches!(e, E::TooManyBindings(17)),
        ),
        (reg(r#","weight":0"#), |e| matches!(e, E::BadWeight(0))),
        (reg(r#","weight":1001"#), |e| {
            matches!(e, E::BadWeight(1001))
        }),
        (
            r#"{"type":"register","v":1,"id":"a","bindings":["https://backend.local:443"]}"#.into(),
            |e| matches!(e, E::BadBinding { .. }),
        ),
        (
            r#"{"type":"register","v":1,"id":"a","bindings":["wss://169.254.1.1"]}"#.into(),
            |e| matches!(e, E::BadBinding { .. }),
        ),
        (
            r#"{"type":"register","v":1,"id":"a","bindings":["http://backend.local:80"]}"#.into(),
            |e| matches!(e, E::BadBinding { .. }),
        ),
        (
            r#"{"type":"register","v":1,"id":"a","bindings":["ftp://10.0.0.1:21"]}"#.into(),
            |e| matches!(e, E::BadBinding { .. }),
        ),
        (
            r#"{"type":"register","v":1,"id":"a","bindings":[":0"]}"#.into(),
            |e| matches!(e, E::BadBinding { .. }),
        ),
        (
            r#"{"type":"register","v":1,"id":"a","bindings":["70000"]}"#.into(),
            |e| matches!(e, E::BadBinding { .. }),
        ),
        (
            r#"{"type":"register","v":1,"id":"a","bindings":[{"port":70000}]}"#.into(),
            |e| matches!(e, E::BadMessage { .. }),
        ),
    ];
    for (text, ok) in cases {
        let e = parse(&text).expect_err(&text);
        assert!(ok(&e), "{text} gave {e:?}");
        assert!(!e.to_string().is_empty());
        assert_eq!(e.close_code(), 1008);
        assert!(e.ends_channel(), "{text}");
    }
    let e = parse_client_message(&reg(""), 10).expect_err("oversize");
    assert!(matches!(e, E::TooLarge { max: 10, .. }), "{e:?}");
    assert_eq!(e.close_code(), 1009);
}

#[test]
fn server_messages_round_trip() {
    let msgs = [
        ServerMessage::Registered {
            v: 2,
            balancer_id: "lb-1".into(),
            id: "api-1".into(),
            heartbeat_interval_ms: 5000,
            bindings: vec!["http://10.0.0.1:9001".into()],
        },
        ServerMessage::Error {
            message: "weight 0 out of range".into(),
        },
        ServerMessage::Drain,
        ServerMessage::Resume,
        ServerMessage::Result {
            reference: Some(json!(7)),
            matched: 3,
            delivered: 2,
            skipped: 1,
            dropped: 0,
            pongs: None,
        },
        ServerMessage::Result {
            reference: None,
            matched: 1,
            delivered: 1,
            skipped: 0,
            dropped: 0,
            pongs: Some(1),
        },
        ServerMessage::OpError {
            reference: Some(json!("a-ref")),
            status: 404,
            message: "no such connection: x".into(),
        },
        ServerMessage::Event {
            fields: object(json!({"event": "session_open", "ts_ms": 1, "id": "t-0-1"})),
        },
    ];
    for m in msgs {
        let j = m.to_json();
        assert_eq!(parse_server_message(&j, MAX), Ok(m), "{j}");
    }
    assert_eq!(ServerMessage::Drain.to_json(), r#"{"type":"drain"}"#);
    assert!(matches!(
        parse_server_message(r#"{"type":"register"}"#, MAX),
        Err(ProtocolError::UnknownType(_))
    ));
}

#[test]
fn client_messages_round_trip_through_json() {
    let msgs = [
        ClientMessage::Register {
            v: 1,
            id: "a".into(),
            bindings: vec![":9001".into()],
            weight: 3,
            metadata: Some(serde_json::json!({"k": 1})),
        },
        ClientMessage::Heartbeat { load: 4 },
        ClientMessage::Drain,
        ClientMessage::Resume,
        ClientMessage::Deregister,
        ClientMessage::Events {
            messages: true,
            enabled: true,
        },
        ClientMessage::Events {
            messages: false,
            enabled: false,
        },
    ];
    for m in msgs {
        assert_eq!(parse(&m.to_json()), Ok(m));
    }
}

fn object(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn register_takes_version_1_and_2_and_keeps_which() {
    for v in [1, 2] {
        let text = format!(r#"{{"type":"register","v":{v},"id":"api-1","bindings":[":9001"]}}"#);
        let Ok(ClientMessage::Register { v: got, .. }) = parse(&text) else {
            panic!("v{v} refused")
        };
        assert_eq!(got, v);
    }
}

#[test]
fn every_operation_parses_with_its_ref_and_body() {
    let bodies = [
        (Verb::Publish, json!({"text": "hi", "channel": "room:42"})),
        (Verb::Send, json!({"id": "t-0-1", "binary": "AAEC"})),
        (Verb::Ping, json!({"channel": "room:42", "timeout_ms": 500})),
        (Verb::Close, json!({"all": true, "code": 1001})),
        (Verb::Subscribe, json!({"id": "t-0-1", "channels": ["a"]})),
        (Verb::Unsubscribe, json!({"id": "t-0-1", "channels": ["a"]})),
    ];
    for (name, body) in bodies {
        for reference in [
            None,
            Some(json!(42)),
            Some(json!("req-7")),
            Some(json!(-1.5)),
        ] {
            let mut msg = object(body.clone());
            msg.insert("type".into(), name.name().into());
            if let Some(r) = &reference {
                msg.insert("ref".into(), r.clone());
            }
            let text = serde_json::Value::Object(msg.clone()).to_string();
            let got = parse(&text).expect(&text);
            assert_eq!(
                got,
                ClientMessage::Op {
                    name,
                    reference: reference.clone(),
                    body: msg.clone(),
                },
                "{text}"
            );
            // What the agent writes is what the balancer reads.
            let again = parse(&got.to_json()).expect("round trip");
            assert_eq!(again, got);
        }
    }
    // `"ref": null` is no ref.
    let got = parse(r#"{"type":"ping","ref":null}"#).expect("ping");
    assert!(matches!(
        got,
        ClientMessage::Op {
            reference: None,
            ..
        }
    ));
    // The ref and type in op_json come first and are the given ones.
    let body = object(json!({"type": "publish", "ref": 1, "text": "x"}));
    let j: serde_json::Value =
        serde_json::from_str(&op_json(Verb::Send, Some(&json!(9)), &body)).expect("json");
    assert_eq!(j, json!({"type": "send", "ref": 9, "text": "x"}));
}

#[test]
fn a_bad_ref_is_refused_without_ending_the_channel() {
    let long = "r".repeat(MAX_REF_LEN + 1);
    let ok_len = "r".repeat(MAX_REF_LEN);
    assert!(parse(&format!(
        r#"{{"type":"publish","ref":"{ok_len}","text":"x"}}"#
    ))
    .is_ok());
    for bad in [
        format!(r#"{{"type":"publish","ref":"{long}","text":"x"}}"#),
        r#"{"type":"send","ref":[1],"id":"x","text":"x"}"#.to_string(),
        r#"{"type":"close","ref":{"a":1},"all":true}"#.to_string(),
        r#"{"type":"ping","ref":true}"#.to_string(),
    ] {
        let e = parse(&bad).expect_err(&bad);
        assert!(matches!(e, ProtocolError::BadOp { .. }), "{bad}: {e:?}");
        assert!(!e.ends_channel());
        assert!(e.to_string().contains("ref"), "{e}");
    }
}

#[test]
fn a_v1_agent_reads_a_v2_balancer_registered_answer() {
    // Unknown fields are ignored, a missing "v" is 1 (a v1 balancer).
    let m = parse_server_message(
        r#"{"type":"registered","v":2,"balancer_id":"lb","id":"a","heartbeat_interval_ms":5000,"bindings":[],"future":{"x":1}}"#,
        MAX,
    )
    .expect("parses");
    assert!(matches!(m, ServerMessage::Registered { v: 2, .. }));
    let m = parse_server_message(
        r#"{"type":"registered","balancer_id":"lb","id":"a","heartbeat_interval_ms":5000}"#,
        MAX,
    )
    .expect("parses");
    assert!(matches!(m, ServerMessage::Registered { v: 1, .. }));
    let j: serde_json::Value = serde_json::from_str(
        &ServerMessage::Event {
            fields: object(json!({"event": "lost", "lost": 3})),
        }
        .to_json(),
    )
    .expect("json");
    assert_eq!(j, json!({"type": "event", "event": "lost", "lost": 3}));
    let j: serde_json::Value = serde_json::from_str(
        &ServerMessage::Result {
            reference: None,
            matched: 0,
            delivered: 0,
            skipped: 0,
            dropped: 0,
            pongs: None,
        }
        .to_json(),
    )
    .expect("json");
    assert_eq!(
        j,
        json!({"type": "result", "matched": 0, "delivered": 0, "skipped": 0, "dropped": 0}),
        "no ref, no pongs: left out"
    );
}
