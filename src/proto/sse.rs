//! Server-Sent Events as the balancer's fallback writes them: the opening
//! event, one event per WebSocket message (text split into `data:` lines,
//! binary as base64 under `event: binary`), the closing event, keep-alive
//! comments, and the `Last-Event-ID` it reads back. Plain functions over
//! byte buffers.
//!
//! Event ids are `<token>.<n>`: a client that reconnects on its own (an
//! `EventSource`) names its session and where it stopped in one header.

use base64::Engine as _;

/// What the stream sends when nothing else went for a while: a comment,
/// which every client ignores and every intermediary sees as traffic.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// The response head of an event stream (close-delimited: it ends with the
/// connection).
pub const STREAM_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nX-Accel-Buffering: no\r\nConnection: close\r\n\r\n";

/// Appends `retry: <ms>`.
pub fn write_retry(out: &mut Vec<u8>, retry_ms: u64) {
    out.extend_from_slice(b"retry: ");
    out.extend_from_slice(retry_ms.to_string().as_bytes());
    out.push(b'\n');
}

fn write_id(out: &mut Vec<u8>, token: &str, id: u64) {
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(token.as_bytes());
    out.push(b'.');
    out.extend_from_slice(id.to_string().as_bytes());
    out.push(b'\n');
}

/// Appends the first event of a session: its token, the URL to send on and
/// its connection id, with id `<token>.0`.
pub fn write_open(out: &mut Vec<u8>, token: &str, conn_id: &str) {
    let data = serde_json::json!({
        "session": token,
        "url": format!("/_lb/sse/{token}"),
        "id": conn_id,
    })
    .to_string();
    out.extend_from_slice(b"event: open\n");
    write_id(out, token, 0);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// Appends a text message as event `id`: one `data:` line per line of
/// `text` (a line ends at LF, CRLF or CR, as an SSE parser reads them, so
/// the client gets the lines back joined with LF).
pub fn write_text(out: &mut Vec<u8>, token: &str, id: u64, text: &[u8]) {
    out.reserve(text.len() + 48);
    write_id(out, token, id);
    let mut rest = text;
    loop {
        let end = rest.iter().position(|&b| b == b'\n' || b == b'\r');
        out.extend_from_slice(b"data: ");
        match end {
            None => {
                out.extend_from_slice(rest);
                out.push(b'\n');
                break;
            }
            Some(i) => {
                out.extend_from_slice(&rest[..i]);
                out.push(b'\n');
                let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = &rest[i + skip..];
            }
        }
    }
    out.push(b'\n');
}

/// Appends a binary message as event `id`: `event: binary`, the payload in
/// standard base64 (padded) on one `data:` line.
pub fn write_binary(out: &mut Vec<u8>, token: &str, id: u64, payload: &[u8]) {
    out.reserve(payload.len() / 3 * 4 + 64);
    out.extend_from_slice(b"event: binary\n");
    write_id(out, token, id);
    out.extend_from_slice(b"data: ");
    let start = out.len();
    let len = base64::encoded_len(payload.len(), true).unwrap_or(0);
    out.resize(start + len, 0);
    let n = base64::engine::general_purpose::STANDARD
        .encode_slice(payload, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + n);
    out.extend_from_slice(b"\n\n");
}

/// Appends the session's last event: `event: close` with the close code
/// and reason as JSON.
pub fn write_close(out: &mut Vec<u8>, token: &str, id: u64, code: u16, reason: &str) {
    let data = serde_json::json!({ "code": code, "reason": reason }).to_string();
    out.extend_from_slice(b"event: close\n");
    write_id(out, token, id);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// A `Last-Event-ID` value split into the session token and the last event
/// the client got (None: not one of ours).
pub fn parse_last_event_id(value: &[u8]) -> Option<(&str, u64)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (token, n) = value.split_once('.')?;
    if n.is_empty() || n.len() > 19 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((token, n.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[u8]) -> &str {
        std::str::from_utf8(v).unwrap()
    }

    #[test]
    fn text_lines_become_data_lines_whatever_ends_them() {
        let mut out = Vec::new();
        write_text(&mut out, "t", 3, b"a\nb\r\nc\rd");
        assert_eq!(s(&out), "id: t.3\ndata: a\ndata: b\ndata: c\ndata: d\n\n");
        out.clear();
        write_text(&mut out, "t", 4, b"");
        assert_eq!(s(&out), "id: t.4\ndata: \n\n");
        out.clear();
        write_text(&mut out, "t", 5, b"x\n");
        assert_eq!(
            s(&out),
            "id: t.5\ndata: x\ndata: \n\n",
            "a trailing LF is kept"
        );
    }

    #[test]
    fn binary_goes_as_base64_and_close_as_json() {
        let mut out = Vec::new();
        write_binary(&mut out, "t", 1, &[0, 1, 2, 255]);
        assert_eq!(s(&out), "event: binary\nid: t.1\ndata: AAEC/w==\n\n");
        out.clear();
        write_binary(&mut out, "t", 2, &[]);
        assert_eq!(s(&out), "event: binary\nid: t.2\ndata: \n\n");
        out.clear();
        write_close(&mut out, "t", 9, 1001, "gone \"away\"");
        assert_eq!(
            s(&out),
            "event: close\nid: t.9\ndata: {\"code\":1001,\"reason\":\"gone \\\"away\\\"\"}\n\n"
        );
    }

    #[test]
    fn the_open_event_names_the_token_url_and_connection() {
        let mut out = Vec::new();
        write_retry(&mut out, 2000);
        write_open(&mut out, "ab", "x-0-1");
        let text = s(&out);
        assert!(text.starts_with("retry: 2000\nevent: open\nid: ab.0\ndata: {"));
        assert!(text.contains("\"url\":\"/_lb/sse/ab\""));
        assert!(text.contains("\"id\":\"x-0-1\""));
        assert!(text.ends_with("}\n\n"));
    }

    #[test]
    fn last_event_ids_are_read_strictly() {
        assert_eq!(parse_last_event_id(b"abc.12"), Some(("abc", 12)));
        assert_eq!(parse_last_event_id(b" abc.0 "), Some(("abc", 0)));
        for bad in [
            &b"abc"[..],
            b"abc.",
            b"abc.-1",
            b"abc.1x",
            b"a.99999999999999999999",
            b"\xff.1",
        ] {
            assert_eq!(parse_last_event_id(bad), None, "{bad:?}");
        }
    }
}
