//! The v2 operation messages of the control channel: their names, the
//! JSON an operation is sent as, and the check of one as it arrives (its
//! `ref`; the body is the hub's to check, one layer up).

use serde_json::{Map, Value};

use super::{ClientMessage, ProtocolError, MAX_REF_LEN};
use crate::hub::ops::Verb;

/// A messaging operation's message: `type`, `ref` (if any), then the body's
/// fields (any `type` or `ref` in `body` is replaced).
pub(crate) fn op_json(name: Verb, reference: Option<&Value>, body: &Map<String, Value>) -> String {
    let mut m = Map::with_capacity(body.len() + 2);
    m.insert("type".into(), Value::String(name.name().into()));
    if let Some(r) = reference {
        m.insert("ref".into(), r.clone());
    }
    for (k, v) in body {
        if k != "type" && k != "ref" {
            m.insert(k.clone(), v.clone());
        }
    }
    Value::Object(m).to_string()
}

/// An operation message: only its `ref` is checked here (a string of at
/// most 64 bytes or a number); a bad one is refused without closing the
/// channel. The body is the hub's to check.
pub(super) fn op_message(name: Verb, value: Value) -> Result<ClientMessage, ProtocolError> {
    let Value::Object(body) = value else {
        return Err(ProtocolError::MissingType);
    };
    let reference = match body.get("ref") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= MAX_REF_LEN => Some(Value::String(s.clone())),
        Some(Value::Number(n)) => Some(Value::Number(n.clone())),
        Some(_) => {
            return Err(ProtocolError::BadOp {
                kind: name.name().into(),
                reason: format!("ref must be a number or a string of at most {MAX_REF_LEN} bytes"),
            })
        }
    };
    Ok(ClientMessage::Op {
        name,
        reference,
        body,
    })
}
