//! The messaging operations as typed requests, and the JSON body each one
//! is sent as (admin API body or control-channel message, see [`super::ops`]
//! for the other direction): for the agent library and `wslb publish`, so
//! that nobody assembles these bodies by hand.

use base64::Engine as _;
use serde_json::{Map, Value};

use super::ops::{Filter, Payload, Verb};

/// Which sessions a close request reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseTarget {
    /// Every session (`"all": true`).
    All,
    /// One session, by its connection id.
    Id(String),
    /// The sessions a filter picks (an empty filter is refused: use `All`).
    Filter(Filter),
}

/// One messaging operation to ask a balancer for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Deliver `msg` to every session `filter` picks.
    Publish {
        /// The message.
        msg: Payload,
        /// To whom.
        filter: Filter,
    },
    /// Deliver `msg` to one session.
    Send {
        /// The connection id.
        id: String,
        /// The message.
        msg: Payload,
    },
    /// Ping the sessions `filter` picks and count the pongs back within
    /// `timeout_ms`.
    Ping {
        /// To whom.
        filter: Filter,
        /// How long pongs are counted (1 to 60000; `None`: the balancer's
        /// default of 1000).
        timeout_ms: Option<u64>,
    },
    /// Close sessions with a code and a reason.
    Close {
        /// Which sessions.
        target: CloseTarget,
        /// The close code (`None`: 1000).
        code: Option<u16>,
        /// The close reason (at most 123 bytes).
        reason: String,
    },
    /// Add channels to one session.
    Subscribe {
        /// The connection id.
        id: String,
        /// The channels.
        channels: Vec<String>,
    },
    /// Remove channels from one session.
    Unsubscribe {
        /// The connection id.
        id: String,
        /// The channels.
        channels: Vec<String>,
    },
}

impl Request {
    /// Which operation this is.
    pub fn verb(&self) -> Verb {
        match self {
            Request::Publish { .. } => Verb::Publish,
            Request::Send { .. } => Verb::Send,
            Request::Ping { .. } => Verb::Ping,
            Request::Close { .. } => Verb::Close,
            Request::Subscribe { .. } => Verb::Subscribe,
            Request::Unsubscribe { .. } => Verb::Unsubscribe,
        }
    }

    /// Whether it names one session by id: on a balancer that does not
    /// hold it, the answer is "no such connection", which is expected when
    /// the request goes to several balancers.
    pub fn names_one_session(&self) -> bool {
        matches!(
            self,
            Request::Send { .. }
                | Request::Subscribe { .. }
                | Request::Unsubscribe { .. }
                | Request::Close {
                    target: CloseTarget::Id(_),
                    ..
                }
        )
    }

    /// The JSON body (without `type` or `ref`).
    pub fn to_body(&self) -> Map<String, Value> {
        let mut m = Map::new();
        match self {
            Request::Publish { msg, filter } => {
                put_payload(&mut m, msg);
                put_filter(&mut m, filter);
            }
            Request::Send { id, msg } => {
                m.insert("id".into(), id.clone().into());
                put_payload(&mut m, msg);
            }
            Request::Ping { filter, timeout_ms } => {
                put_filter(&mut m, filter);
                if let Some(t) = timeout_ms {
                    m.insert("timeout_ms".into(), (*t).into());
                }
            }
            Request::Close {
                target,
                code,
                reason,
            } => {
                match target {
                    CloseTarget::All => {
                        m.insert("all".into(), true.into());
                    }
                    CloseTarget::Id(id) => {
                        m.insert("id".into(), id.clone().into());
                    }
                    CloseTarget::Filter(f) => put_filter(&mut m, f),
                }
                if let Some(c) = code {
                    m.insert("code".into(), (*c).into());
                }
                if !reason.is_empty() {
                    m.insert("reason".into(), reason.clone().into());
                }
            }
            Request::Subscribe { id, channels } | Request::Unsubscribe { id, channels } => {
                m.insert("id".into(), id.clone().into());
                m.insert("channels".into(), channels.clone().into());
            }
        }
        m
    }
}

fn put_payload(m: &mut Map<String, Value>, msg: &Payload) {
    match msg {
        Payload::Text(t) => m.insert("text".into(), t.clone().into()),
        Payload::Binary(b) => m.insert(
            "binary".into(),
            base64::engine::general_purpose::STANDARD.encode(b).into(),
        ),
    };
}

fn put_filter(m: &mut Map<String, Value>, f: &Filter) {
    let fields = [
        ("channel", &f.channel),
        ("subprotocol", &f.subprotocol),
        ("backend", &f.backend),
        ("path_prefix", &f.path_prefix),
    ];
    for (key, value) in fields {
        if let Some(v) = value {
            m.insert(key.into(), v.clone().into());
        }
    }
    if let Some(ids) = &f.include {
        m.insert("include".into(), ids.clone().into());
    }
    if !f.exclude.is_empty() {
        m.insert("exclude".into(), f.exclude.clone().into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::ops::{op_from_value, OpKind};

    fn parsed(r: &Request) -> crate::hub::Op {
        op_from_value(r.verb(), &Value::Object(r.to_body()), 0).expect("the balancer takes it")
    }

    #[test]
    fn every_request_is_a_body_the_balancer_parses_back() {
        let filter = Filter {
            channel: Some("room:42".into()),
            subprotocol: Some("chat".into()),
            backend: Some("api-1".into()),
            path_prefix: Some("/ws".into()),
            include: Some(vec!["t-0-1".into(), "t-1-2".into()]),
            exclude: vec!["t-0-3".into()],
        };
        let publish = Request::Publish {
            msg: Payload::Binary(vec![0, 1, 2, 255]),
            filter: filter.clone(),
        };
        let op = parsed(&publish);
        assert_eq!(op.filter, filter);
        assert_eq!(
            op.kind,
            OpKind::Publish {
                frame: Payload::Binary(vec![0, 1, 2, 255]).to_frame()
            }
        );
        assert_eq!(publish.to_body()["binary"], "AAEC/w==");
        assert!(!publish.names_one_session());

        let send = Request::Send {
            id: "t-0-7".into(),
            msg: Payload::Text("hi".into()),
        };
        let op = parsed(&send);
        assert_eq!(op.single.as_deref(), Some("t-0-7"));
        assert!(send.names_one_session());

        let ping = Request::Ping {
            filter: Filter::default(),
            timeout_ms: Some(250),
        };
        assert_eq!(parsed(&ping).kind, OpKind::Ping { timeout_ms: 250 });

        for (target, single) in [
            (CloseTarget::All, false),
            (CloseTarget::Id("t-0-1".into()), true),
            (CloseTarget::Filter(filter.clone()), false),
        ] {
            let close = Request::Close {
                target,
                code: Some(1001),
                reason: "maintenance".into(),
            };
            assert_eq!(close.names_one_session(), single);
            let op = parsed(&close);
            assert_eq!(
                op.kind,
                OpKind::Close {
                    code: 1001,
                    reason: "maintenance".into()
                }
            );
            assert_eq!(op.single.is_some(), single);
        }
        // An empty filter is not "all": the balancer refuses it.
        let nobody = Request::Close {
            target: CloseTarget::Filter(Filter::default()),
            code: None,
            reason: String::new(),
        };
        assert!(op_from_value(Verb::Close, &Value::Object(nobody.to_body()), 0).is_err());

        let sub = Request::Subscribe {
            id: "t-0-1".into(),
            channels: vec!["a".into(), "b".into()],
        };
        let unsub = Request::Unsubscribe {
            id: "t-0-1".into(),
            channels: vec!["a".into()],
        };
        assert_eq!(
            parsed(&sub).kind,
            OpKind::Subscribe {
                channels: vec!["a".into(), "b".into()],
                join: true
            }
        );
        assert_eq!(
            parsed(&unsub).kind,
            OpKind::Subscribe {
                channels: vec!["a".into()],
                join: false
            }
        );
        for r in [&publish, &send, &ping, &sub, &unsub] {
            assert_eq!(Verb::from_name(r.verb().name()), Some(r.verb()));
        }
    }
}
