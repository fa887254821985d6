//! Parsing and checking the messaging operations' JSON (see `hub::ops` for
//! the shapes): channel names, payloads (text or base64 binary, bounded by
//! `--max-message-size`), filters, close codes and ping waits. Every refusal
//! is an [`OpError`] naming what is wrong.

use base64::Engine as _;
use serde_json::Value;

use super::ops::{
    Filter, Op, OpError, OpKind, Payload, Verb, DEFAULT_PING_TIMEOUT_MS, MAX_CHANNELS_PER_SESSION,
    MAX_CHANNEL_LEN, MAX_ID_LIST, MAX_PING_TIMEOUT_MS,
};

/// Checks a channel name: 1 to 256 bytes, no control characters.
pub fn check_channel(name: &str) -> Result<(), OpError> {
    if name.is_empty() {
        return Err(OpError::Invalid("empty channel name".into()));
    }
    if name.len() > MAX_CHANNEL_LEN {
        return Err(OpError::Invalid(format!(
            "channel name of {} bytes is over the limit of {MAX_CHANNEL_LEN}",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(OpError::Invalid(
            "channel name has a control character".into(),
        ));
    }
    Ok(())
}

/// Parses a comma-separated channel list (the `X-Wslb-Channels` value):
/// names trimmed, empty entries skipped; None if any name is bad or there
/// are too many.
pub fn parse_channel_list(value: &str) -> Result<Vec<String>, OpError> {
    let mut out: Vec<String> = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        check_channel(name)?;
        if !out.iter().any(|c| c == name) {
            out.push(name.to_string());
        }
    }
    if out.len() > MAX_CHANNELS_PER_SESSION {
        return Err(OpError::Invalid(format!(
            "{} channels is over the limit of {MAX_CHANNELS_PER_SESSION}",
            out.len()
        )));
    }
    Ok(out)
}

/// Whether a close code may be sent by the balancer on a client's behalf.
pub fn sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Parses a JSON body for `verb` into an [`Op`]. `max_message` bounds the
/// payload (`--max-message-size`).
pub fn parse_op(verb: Verb, body: &[u8], max_message: u64) -> Result<Op, OpError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| OpError::BadJson(e.to_string()))?;
    op_from_value(verb, &value, max_message)
}

/// As [`parse_op`], from an already parsed JSON value (the control
/// channel's message, whose `type` and `ref` fields are ignored here).
pub fn op_from_value(verb: Verb, value: &Value, max_message: u64) -> Result<Op, OpError> {
    let obj = value
        .as_object()
        .ok_or_else(|| OpError::BadJson("the body must be a JSON object".into()))?;
    let filter = filter_from(obj)?;
    let mut single = None;
    let kind = match verb {
        Verb::Publish | Verb::Send => {
            let payload = payload_from(obj, max_message)?;
            OpKind::Publish {
                frame: payload.to_frame(),
            }
        }
        Verb::Ping => {
            let timeout_ms = match obj.get("timeout_ms") {
                None | Some(Value::Null) => DEFAULT_PING_TIMEOUT_MS,
                Some(v) => match v.as_u64() {
                    Some(t) if (1..=MAX_PING_TIMEOUT_MS).contains(&t) => t,
                    _ => {
                        return Err(OpError::Invalid(format!(
                            "timeout_ms must be 1 to {MAX_PING_TIMEOUT_MS}"
                        )))
                    }
                },
            };
            OpKind::Ping { timeout_ms }
        }
        Verb::Close => {
            let all = match obj.get("all") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(OpError::Invalid("all must be true or false".into())),
            };
            let id_given = obj.get("id").is_some_and(|v| !v.is_null());
            if !all && filter.is_everyone() && !id_given {
                return Err(OpError::Invalid(
                    "give a filter, an id, or \"all\": true to close every session".into(),
                ));
            }
            let code = match obj.get("code") {
                None | Some(Value::Null) => 1000,
                Some(v) => match v.as_u64().and_then(|c| u16::try_from(c).ok()) {
                    Some(c) if sendable_close_code(c) => c,
                    _ => {
                        return Err(OpError::Invalid(
                            "code must be 1000-1003, 1007-1014 or 3000-4999".into(),
                        ))
                    }
                },
            };
            let reason = match obj.get("reason") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) if s.len() <= 123 => s.clone(),
                Some(Value::String(_)) => {
                    return Err(OpError::Invalid("reason is over 123 bytes".into()))
                }
                Some(_) => return Err(OpError::Invalid("reason must be a string".into())),
            };
            OpKind::Close { code, reason }
        }
        Verb::Subscribe | Verb::Unsubscribe => {
            let channels = match obj.get("channels") {
                Some(Value::Array(a)) if !a.is_empty() => {
                    if a.len() > MAX_CHANNELS_PER_SESSION {
                        return Err(OpError::Invalid(format!(
                            "at most {MAX_CHANNELS_PER_SESSION} channels at once"
                        )));
                    }
                    let mut out = Vec::with_capacity(a.len());
                    for c in a {
                        let c = c
                            .as_str()
                            .ok_or_else(|| OpError::Invalid("channels must be strings".into()))?;
                        check_channel(c)?;
                        out.push(c.to_string());
                    }
                    out
                }
                Some(Value::String(s)) => {
                    check_channel(s)?;
                    vec![s.clone()]
                }
                _ => {
                    return Err(OpError::Invalid(
                        "channels must be a non-empty list of names".into(),
                    ))
                }
            };
            OpKind::Subscribe {
                channels,
                join: verb == Verb::Subscribe,
            }
        }
    };
    let mut filter = filter;
    match obj.get("id") {
        None | Some(Value::Null) => {
            if matches!(verb, Verb::Send | Verb::Subscribe | Verb::Unsubscribe) {
                return Err(OpError::Invalid(
                    "id (the connection's id) is required".into(),
                ));
            }
        }
        Some(Value::String(id)) if !id.is_empty() && id.len() <= 64 => {
            if verb == Verb::Publish || verb == Verb::Ping {
                return Err(OpError::Invalid(
                    "id is for send, close and subscribe; use include to name sessions".into(),
                ));
            }
            single = Some(id.clone());
            filter.include = Some(vec![id.clone()]);
        }
        Some(_) => return Err(OpError::Invalid("id must be a connection id string".into())),
    }
    Ok(Op {
        kind,
        filter,
        scope: None,
        single,
    })
}

fn opt_string(obj: &serde_json::Map<String, Value>, key: &str) -> Result<Option<String>, OpError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= 2048 => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(OpError::Invalid(format!("{key} is over 2048 bytes"))),
        Some(_) => Err(OpError::Invalid(format!("{key} must be a string"))),
    }
}

fn id_list(
    obj: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<Vec<String>>, OpError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => {
            if a.len() > MAX_ID_LIST {
                return Err(OpError::Invalid(format!(
                    "{key} lists more than {MAX_ID_LIST} ids"
                )));
            }
            a.iter()
                .map(|v| match v.as_str() {
                    Some(s) if s.len() <= 64 => Ok(s.to_string()),
                    _ => Err(OpError::Invalid(format!("{key} must list id strings"))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        }
        Some(_) => Err(OpError::Invalid(format!("{key} must be a list of ids"))),
    }
}

fn filter_from(obj: &serde_json::Map<String, Value>) -> Result<Filter, OpError> {
    let channel = opt_string(obj, "channel")?;
    if let Some(c) = &channel {
        check_channel(c)?;
    }
    Ok(Filter {
        channel,
        subprotocol: opt_string(obj, "subprotocol")?,
        backend: opt_string(obj, "backend")?,
        path_prefix: opt_string(obj, "path_prefix")?,
        include: id_list(obj, "include")?,
        exclude: id_list(obj, "exclude")?.unwrap_or_default(),
    })
}

fn payload_from(obj: &serde_json::Map<String, Value>, max: u64) -> Result<Payload, OpError> {
    let payload = match (obj.get("text"), obj.get("binary")) {
        (Some(Value::String(t)), None) => Payload::Text(t.clone()),
        (None, Some(Value::String(b))) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b.as_bytes())
                .map_err(|e| OpError::Invalid(format!("binary is not base64: {e}")))?;
            Payload::Binary(bytes)
        }
        (Some(_), Some(_)) => return Err(OpError::Invalid("give text or binary, not both".into())),
        (Some(_), None) => return Err(OpError::Invalid("text must be a string".into())),
        (None, Some(_)) => return Err(OpError::Invalid("binary must be a base64 string".into())),
        (None, None) => {
            return Err(OpError::Invalid(
                "a message needs \"text\" or \"binary\"".into(),
            ))
        }
    };
    if max != 0 && payload.len() as u64 > max {
        return Err(OpError::TooLarge {
            len: payload.len(),
            max,
        });
    }
    Ok(payload)
}
