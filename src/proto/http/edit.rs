//! Header edits an embedding program's hooks ask for: which names and
//! values may be written into a forwarded head, and adding or removing
//! fields of a rewritten head (one that ends in CRLF CRLF) in place.

use super::headers::{is_hop_by_hop, value_is_clean};
use super::reply::header_name_is_safe;

/// Longest value a hook may add (longer ones are dropped).
pub(crate) const MAX_EDIT_VALUE: usize = 8 * 1024;

/// Fields a hook may neither add nor remove: the framing ones, hop-by-hop
/// ones, Host, and the WebSocket handshake's own (`Sec-WebSocket-*`).
pub(crate) fn is_forbidden(name: &str) -> bool {
    const FRAMING: [&str; 3] = ["content-length", "transfer-encoding", "host"];
    const WS: &str = "sec-websocket-";
    is_hop_by_hop(name)
        || FRAMING.iter().any(|n| name.eq_ignore_ascii_case(n))
        || name
            .get(..WS.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(WS))
}

/// Whether a hook may add the field `name: value`: a token that is not
/// forbidden, and a value of at most [`MAX_EDIT_VALUE`] bytes without
/// control bytes (no CR, LF or NUL; HTAB allowed).
pub(crate) fn may_add(name: &str, value: &str) -> bool {
    may_remove(name) && value.len() <= MAX_EDIT_VALUE && value_is_clean(value.as_bytes())
}

/// Whether a hook may remove the fields called `name`.
pub(crate) fn may_remove(name: &str) -> bool {
    header_name_is_safe(name.as_bytes()) && !is_forbidden(name)
}

/// Appends the fields `may_add` allows just before the empty line that ends
/// `head`; returns how many were dropped. A head that does not end in
/// CRLF CRLF is left alone (and every field counts as dropped).
pub(crate) fn append_fields<'a>(
    head: &mut Vec<u8>,
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> usize {
    let ends_well = head.ends_with(b"\r\n\r\n");
    let mut dropped = 0;
    if ends_well {
        head.truncate(head.len() - 2);
    }
    for (name, value) in fields {
        if ends_well && may_add(name, value) {
            super::headers::push_field(head, name.as_bytes(), value.as_bytes());
        } else {
            dropped += 1;
        }
    }
    if ends_well {
        head.extend_from_slice(b"\r\n");
    }
    dropped
}

/// Removes, in place, every field of `head` (after its first line) whose
/// name is one of `names` (compared without case) that `may_remove`
/// allows; returns how many fields went.
pub(crate) fn remove_fields(head: &mut Vec<u8>, names: &[String]) -> usize {
    if !names.iter().any(|n| may_remove(n)) {
        return 0;
    }
    drop_fields(head, |name| {
        names
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(name) && may_remove(n))
    })
}

/// Removes, in place, every field of `head` (after its first line) whose
/// name `named` picks, with no check of its own (the balancer's own edits;
/// a hook's go through [`remove_fields`]); returns how many fields went.
pub(crate) fn drop_fields(head: &mut Vec<u8>, named: impl Fn(&[u8]) -> bool) -> usize {
    let Some(first_end) = head.iter().position(|&b| b == b'\n') else {
        return 0;
    };
    let mut read = first_end + 1;
    let mut write = read;
    let mut removed = 0;
    while read < head.len() {
        let end = head[read..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(head.len(), |p| read + p + 1);
        let line = &head[read..end];
        let picked = line
            .iter()
            .position(|&b| b == b':')
            .is_some_and(|colon| named(&line[..colon]));
        if picked {
            removed += 1;
        } else {
            head.copy_within(read..end, write);
            write += end - read;
        }
        read = end;
    }
    head.truncate(write);
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\nX-B: 3\r\n\r\n";

    #[test]
    fn names_and_values_are_checked() {
        assert!(may_add("X-User", "alice"));
        assert!(may_add("X-Tab", "a\tb"));
        for bad in ["", "X User", "X:Y", "X\r\nY", "Ünï"] {
            assert!(!may_add(bad, "v"), "{bad:?}");
        }
        for bad in ["a\r\nX-Evil: 1", "a\nb", "a\0b", "a\rb"] {
            assert!(!may_add("X-V", bad), "{bad:?}");
        }
        assert!(!may_add("X-Big", &"v".repeat(MAX_EDIT_VALUE + 1)));
        for forbidden in [
            "Content-Length",
            "transfer-encoding",
            "CONNECTION",
            "Upgrade",
            "Host",
            "Keep-Alive",
            "TE",
            "Trailer",
            "Proxy-Connection",
            "Sec-WebSocket-Key",
            "sec-websocket-accept",
        ] {
            assert!(!may_add(forbidden, "1"), "{forbidden}");
            assert!(!may_remove(forbidden), "{forbidden}");
        }
    }

    #[test]
    fn fields_are_appended_before_the_empty_line() {
        let mut head = HEAD.to_vec();
        let dropped = append_fields(
            &mut head,
            [
                ("X-User", "alice"),
                ("Content-Length", "5"),
                ("X-Bad", "a\r\nb"),
            ],
        );
        assert_eq!(dropped, 2);
        let want =
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\nX-B: 3\r\nX-User: alice\r\n\r\n";
        assert_eq!(head, want);
        let mut broken = b"GET / HTTP/1.1\r\n".to_vec();
        assert_eq!(append_fields(&mut broken, [("X-User", "a")]), 1);
        assert_eq!(broken, b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn fields_are_removed_in_place() {
        let mut head = HEAD.to_vec();
        let names = vec!["x-A".to_string(), "Host".to_string()];
        assert_eq!(remove_fields(&mut head, &names), 2);
        assert_eq!(head, b"GET / HTTP/1.1\r\nHost: x\r\nX-B: 3\r\n\r\n");
        // Nothing asked that may go: nothing changes.
        let mut head = HEAD.to_vec();
        assert_eq!(remove_fields(&mut head, &["Host".to_string()]), 0);
        assert_eq!(head, HEAD);
        // A prefix of a name is not the name.
        let mut head = HEAD.to_vec();
        assert_eq!(remove_fields(&mut head, &["X".to_string()]), 0);
        assert_eq!(head, HEAD);
    }
}
