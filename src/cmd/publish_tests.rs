//! Tests for `wslb publish`: flags to bodies, refusals, success rules.
use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: PublishArgs,
}

fn args(flags: &[&str]) -> PublishArgs {
    let mut argv = vec!["publish"];
    argv.extend_from_slice(flags);
    Cli::try_parse_from(argv).expect("flags parse").args
}

fn body(flags: &[&str]) -> Result<Value, PublishError> {
    let a = args(flags);
    let msg = a.text.clone().map(Payload::Text);
    build_request(&a, msg).map(|r| Value::Object(r.to_body()))
}

#[test]
fn flags_build_the_admin_api_bodies() {
    use serde_json::json;
    assert_eq!(
        body(&["--text", "hi", "--channel", "room:42"]).expect("publish"),
        json!({"text": "hi", "channel": "room:42"})
    );
    assert_eq!(
        body(&[
            "--text",
            "x",
            "--subprotocol",
            "chat",
            "--backend",
            "api-1",
            "--path-prefix",
            "/ws",
            "--include",
            "a-0-1",
            "--include",
            "a-0-2",
            "--exclude",
            "a-0-3"
        ])
        .expect("publish"),
        json!({"text": "x", "subprotocol": "chat", "backend": "api-1", "path_prefix": "/ws",
               "include": ["a-0-1", "a-0-2"], "exclude": ["a-0-3"]})
    );
    assert_eq!(
        body(&["--op", "send", "--id", "a-0-1", "--text", "just you"]).expect("send"),
        json!({"id": "a-0-1", "text": "just you"})
    );
    assert_eq!(
        body(&["--op", "ping", "--timeout-ms", "500"]).expect("ping"),
        json!({"timeout_ms": 500})
    );
    assert_eq!(
        body(&["--op", "close", "--all", "--code", "1001", "--reason", "bye"]).expect("close"),
        json!({"all": true, "code": 1001, "reason": "bye"})
    );
    assert_eq!(
        body(&["--op", "close", "--all", "--channel", "c"]).expect("close in c"),
        json!({"channel": "c"})
    );
    assert_eq!(
        body(&["--op", "close", "--id", "a-0-1"]).expect("close one"),
        json!({"id": "a-0-1"})
    );
    assert_eq!(
        body(&[
            "--op",
            "subscribe",
            "--id",
            "a-0-1",
            "--channel",
            "a",
            "--channel",
            "b"
        ])
        .expect("subscribe"),
        json!({"id": "a-0-1", "channels": ["a", "b"]})
    );
    assert_eq!(
        body(&["--op", "unsubscribe", "--id", "a-0-1", "--channel", "a"]).expect("unsubscribe"),
        json!({"id": "a-0-1", "channels": ["a"]})
    );
    let a = args(&[
        "--admin",
        "http://10.0.0.1:9090",
        "--admin",
        "10.0.0.2:9090",
    ]);
    assert_eq!(a.admin.len(), 2);
    assert_eq!(args(&[]).admin, vec!["http://127.0.0.1:9090".to_string()]);
}

#[test]
fn a_binary_file_is_sent_as_base64() {
    let path = std::env::temp_dir().join(format!("wslb-publish-{}", fastrand::u64(..)));
    std::fs::write(&path, [0u8, 1, 2, 255]).expect("write");
    let a = args(&["--binary-file", path.to_str().expect("utf-8 path")]);
    let msg = payload(&a).expect("read");
    let _ = std::fs::remove_file(&path);
    let req = build_request(&a, msg).expect("publish");
    assert_eq!(req.to_body()["binary"], "AAEC/w==");
    let missing = args(&["--binary-file", "/nonexistent/wslb-test"]);
    assert!(matches!(payload(&missing), Err(PublishError::File { .. })));
}

#[test]
fn contradictory_or_incomplete_flags_are_refused() {
    for flags in [
        &["--channel", "a"][..],           // publish without a message
        &["--text", "x", "--id", "a-0-1"], // publish by id
        &["--text", "x", "--channel", "a", "--channel", "b"], // two channel filters
        &["--op", "send", "--text", "x"],  // send without id
        &["--op", "send", "--id", "a-0-1"], // send without message
        &["--op", "send", "--id", "a", "--text", "x", "--channel", "c"],
        &["--op", "ping", "--text", "x"],
        &["--op", "ping", "--timeout-ms", "0"], // out of range
        &["--op", "close"],                     // close whom?
        &["--op", "close", "--all", "--id", "a-0-1"],
        &["--op", "close", "--all", "--code", "1005"], // not sendable
        &["--op", "subscribe", "--id", "a-0-1"],       // no channels
        &["--op", "subscribe", "--channel", "a"],      // no id
        &[
            "--op",
            "unsubscribe",
            "--id",
            "a",
            "--channel",
            "a",
            "--backend",
            "b",
        ],
    ] {
        assert!(
            matches!(body(flags), Err(PublishError::Usage(_))),
            "{flags:?} was accepted"
        );
    }
    let mut argv = vec!["publish", "--text", "x", "--binary-file", "f"];
    assert!(
        Cli::try_parse_from(argv.drain(..)).is_err(),
        "text and file"
    );
}

#[test]
fn success_means_every_balancer_answered_and_one_held_a_named_session() {
    let done = |matched| {
        Reply::Done(Outcome {
            matched,
            delivered: matched,
            ..Outcome::default()
        })
    };
    let not_here = || Reply::Refused {
        status: 404,
        message: "no such connection".into(),
    };
    assert!(succeeded(false, &[done(2), done(0)]));
    assert_eq!(total(&[done(2), done(3)]).delivered, 5);
    assert!(!succeeded(false, &[done(2), not_here()]));
    assert!(!succeeded(
        false,
        &[done(2), Reply::Unreachable("refused".into())]
    ));
    assert!(succeeded(true, &[not_here(), done(1)]));
    assert!(!succeeded(true, &[not_here(), not_here()]));
    assert!(!succeeded(true, &[done(1), done(1)]));
    assert!(!succeeded(true, &[done(1), Reply::Unreachable("x".into())]));
}
