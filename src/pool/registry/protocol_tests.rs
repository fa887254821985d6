//! Tests for the control-channel messages: every refusal, every binding form.

use super::*;

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
            r#"{"type":"register","v":2,"id":"a","bindings":[":1"]}"#.into(),
            |e| matches!(e, E::UnsupportedVersion(v) if v == "2"),
        ),
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
            r#"{"type":"register","v":1,"id":"a","bindings":["https://10.0.0.1:443"]}"#.into(),
            |e| matches!(e, E::TlsUnsupported(_)),
        ),
        (
            r#"{"type":"register","v":1,"id":"a","bindings":["wss://10.0.0.1"]}"#.into(),
            |e| matches!(e, E::TlsUnsupported(_)),
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
    }
    let e = parse_client_message(&reg(""), 10).expect_err("oversize");
    assert!(matches!(e, E::TooLarge { max: 10, .. }), "{e:?}");
    assert_eq!(e.close_code(), 1009);
}

#[test]
fn server_messages_round_trip() {
    let msgs = [
        ServerMessage::Registered {
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
        ServerMessage::Broadcast { data: "hi".into() },
        ServerMessage::Write {
            conn: 42,
            data: "x".into(),
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
    ];
    for m in msgs {
        assert_eq!(parse(&m.to_json()), Ok(m));
    }
}
