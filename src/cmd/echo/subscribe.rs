//! Which channels an echo WebSocket session asks to join: the upgrade
//! request's `subscribe=a,b` query parameter (URL-decoded) and its
//! `X-Wslb-Subscribe: a, b` header, merged into the `X-Wslb-Channels` value
//! the echo backend answers in its 101 (the message hub reads it there).

/// The request header a client may name channels in.
const SUBSCRIBE_HEADER: &str = "x-wslb-subscribe";
/// Most headers looked at in the upgrade request.
const MAX_HEADERS: usize = 128;

/// The `X-Wslb-Channels` value for an upgrade request whose head is
/// `head`: channel names from the query and the header, in that order,
/// trimmed, without duplicates, joined by `", "`. `None` when there are
/// none. Names holding a control character or a comma after decoding are
/// left out (they could not travel in the header).
pub fn channels_header(head: &[u8]) -> Option<String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    // The proxy-side parser already accepted this head; one that httparse
    // refuses here simply subscribes to nothing.
    req.parse(head).ok()?;
    let mut names: Vec<String> = Vec::new();
    let query = req
        .path
        .and_then(|p| p.split_once('?'))
        .map(|(_, q)| q)
        .unwrap_or("");
    for pair in query.split('&') {
        if let Some(("subscribe", value)) = pair.split_once('=') {
            add_names(&mut names, &url_decode(value));
        }
    }
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case(SUBSCRIBE_HEADER) {
            add_names(&mut names, &String::from_utf8_lossy(h.value));
        }
    }
    (!names.is_empty()).then(|| names.join(", "))
}

fn add_names(names: &mut Vec<String>, list: &str) {
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name.chars().any(char::is_control) {
            continue;
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
}

/// Decodes `%XX` escapes and `+` (a space in a query); a malformed escape
/// is kept as written.
fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| {
                    std::str::from_utf8(h)
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                });
                if let Some(b) = hex {
                    out.push(b);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(target: &str, extra: &str) -> Vec<u8> {
        format!("GET {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").into_bytes()
    }

    #[test]
    fn query_and_header_merge() {
        let h = head(
            "/room?x=1&subscribe=a%2Cb&y=2",
            "X-Wslb-Subscribe: b, c\r\n",
        );
        assert_eq!(channels_header(&h).as_deref(), Some("a, b, c"));
        let h = head("/?subscribe=news+today,+sport", "");
        assert_eq!(channels_header(&h).as_deref(), Some("news today, sport"));
        let h = head("/", "x-wslb-subscribe:  bench \r\n");
        assert_eq!(channels_header(&h).as_deref(), Some("bench"));
    }

    #[test]
    fn none_without_channels_and_no_injection() {
        assert_eq!(channels_header(&head("/?subscribe=", "")), None);
        assert_eq!(channels_header(&head("/headers", "")), None);
        // A decoded CR/LF would split the 101's header: the name is dropped.
        let h = head("/?subscribe=ok,bad%0D%0AX-Evil:%201", "");
        assert_eq!(channels_header(&h).as_deref(), Some("ok"));
        // Malformed escapes stay as written.
        assert_eq!(
            channels_header(&head("/?subscribe=a%zz%4", "")).as_deref(),
            Some("a%zz%4")
        );
    }
}
