use super::*;

fn parse(verb: Verb, body: &str) -> Result<Op, OpError> {
    parse_op(verb, body.as_bytes(), 1024)
}

#[test]
fn publish_takes_text_or_base64_binary_and_filters() {
    let op = parse(
        Verb::Publish,
        r#"{"text":"hi","channel":"room:42","backend":"b1","path_prefix":"/chat","subprotocol":"v1","exclude":["a-0-1"]}"#,
    )
    .unwrap();
    assert_eq!(
        op.kind,
        OpKind::Publish {
            frame: vec![0x81, 2, b'h', b'i']
        }
    );
    assert_eq!(op.filter.channel.as_deref(), Some("room:42"));
    assert_eq!(op.filter.exclude, vec!["a-0-1".to_string()]);
    assert!(op.filter.matches("b1", "/chat/x", Some("v1")));
    assert!(!op.filter.matches("b2", "/chat/x", Some("v1")));
    assert!(!op.filter.matches("b1", "/other", Some("v1")));
    assert!(!op.filter.matches("b1", "/chat", None));
    let bin = parse(Verb::Publish, r#"{"binary":"AAEC"}"#).unwrap();
    assert_eq!(
        bin.kind,
        OpKind::Publish {
            frame: vec![0x82, 3, 0, 1, 2]
        }
    );
    assert!(bin.filter.is_everyone());
}

#[test]
fn bad_bodies_are_refused_with_a_reason() {
    for (verb, body) in [
        (Verb::Publish, "not json"),
        (Verb::Publish, "[1]"),
        (Verb::Publish, "{}"),
        (Verb::Publish, r#"{"text":"a","binary":"AA=="}"#),
        (Verb::Publish, r#"{"binary":"***"}"#),
        (Verb::Publish, r#"{"text":"a","channel":""}"#),
        (Verb::Publish, r#"{"text":"a","channel":"a\u0001b"}"#),
        (Verb::Publish, r#"{"text":"a","id":"x-0-1"}"#),
        (Verb::Publish, r#"{"text":"a","include":"x"}"#),
        (Verb::Send, r#"{"text":"a"}"#),
        (Verb::Ping, r#"{"timeout_ms":0}"#),
        (Verb::Ping, r#"{"timeout_ms":600000}"#),
        (Verb::Close, r#"{}"#),
        (Verb::Close, r#"{"all":true,"code":1005}"#),
        (Verb::Close, r#"{"all":true,"code":70000}"#),
        (Verb::Subscribe, r#"{"id":"x-0-1"}"#),
        (Verb::Subscribe, r#"{"id":"x-0-1","channels":[]}"#),
        (Verb::Subscribe, r#"{"channels":["a"]}"#),
    ] {
        let e = parse(verb, body).expect_err(body);
        assert_eq!(e.status(), 400, "{body}: {e}");
    }
    let long = format!(r#"{{"text":"a","channel":"{}"}}"#, "c".repeat(257));
    assert!(parse(Verb::Publish, &long).is_err());
    let big = format!(r#"{{"text":"{}"}}"#, "x".repeat(1025));
    assert!(matches!(
        parse(Verb::Publish, &big),
        Err(OpError::TooLarge { len: 1025, .. })
    ));
}

#[test]
fn send_close_and_subscribe_name_one_session() {
    let s = parse(Verb::Send, r#"{"id":"t-1-2","text":"x"}"#).unwrap();
    assert_eq!(s.single.as_deref(), Some("t-1-2"));
    assert_eq!(s.filter.include, Some(vec!["t-1-2".to_string()]));
    let c = parse(Verb::Close, r#"{"all":true}"#).unwrap();
    assert_eq!(
        c.kind,
        OpKind::Close {
            code: 1000,
            reason: String::new()
        }
    );
    let c = parse(Verb::Close, r#"{"channel":"x","code":4000,"reason":"bye"}"#).unwrap();
    assert_eq!(
        c.kind,
        OpKind::Close {
            code: 4000,
            reason: "bye".into()
        }
    );
    let sub = parse(Verb::Unsubscribe, r#"{"id":"t-0-1","channels":["a","b"]}"#).unwrap();
    assert_eq!(
        sub.kind,
        OpKind::Subscribe {
            channels: vec!["a".into(), "b".into()],
            join: false
        }
    );
    let p = parse(Verb::Ping, r#"{"channel":"x"}"#).unwrap();
    assert_eq!(
        p.kind,
        OpKind::Ping {
            timeout_ms: DEFAULT_PING_TIMEOUT_MS
        }
    );
}

#[test]
fn channel_lists_from_a_header_are_trimmed_deduplicated_and_bounded() {
    assert_eq!(
        parse_channel_list(" room:42, user:7 ,,room:42").unwrap(),
        vec!["room:42".to_string(), "user:7".to_string()]
    );
    assert!(parse_channel_list("").unwrap().is_empty());
    assert!(parse_channel_list("a\tb").is_err());
    let many: Vec<String> = (0..65).map(|i| format!("c{i}")).collect();
    assert!(parse_channel_list(&many.join(",")).is_err());
}
