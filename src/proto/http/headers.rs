//! Header helpers shared by the request and response codecs: token lists,
//! hop-by-hop names, Content-Length / Transfer-Encoding framing analysis,
//! obs-fold detection and turning borrowed slices back into input ranges.

use super::HttpError;
use std::ops::Range;

/// True when the comma-separated `value` holds `token` (ASCII
/// case-insensitive, optional whitespace around elements trimmed).
pub(crate) fn header_has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| trim_ows(item).eq_ignore_ascii_case(token.as_bytes()))
}

/// Hop-by-hop fields (RFC 9110 section 7.6.1) that a proxy never forwards
/// as they are. `Transfer-Encoding` is handled by the framing code instead.
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    const HOP: [&str; 6] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Trim optional whitespace (SP / HTAB) on both sides.
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Range of `sub` inside `buf`; `sub` must be a sub-slice of `buf` (httparse
/// hands out such slices). Falls back to an empty range at 0 otherwise.
pub(crate) fn range_in(buf: &[u8], sub: &[u8]) -> Range<usize> {
    let start = (sub.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    match start.checked_add(sub.len()) {
        Some(end) if end <= buf.len() => start..end,
        _ => 0..0,
    }
}

/// True when a field line in `head` starts with SP or HTAB (obsolete line
/// folding, RFC 9112 section 5.2), scanning up to the empty line that ends
/// the head (or the end of `head`).
pub(crate) fn has_obs_fold(head: &[u8]) -> bool {
    let mut i = 0;
    while let Some(pos) = head[i..].iter().position(|&b| b == b'\n') {
        let next = i + pos + 1;
        match head.get(next..) {
            Some([b' ' | b'\t', ..]) => return true,
            Some([b'\n', ..]) | Some([b'\r', b'\n', ..]) => return false,
            _ => {}
        }
        i = next;
    }
    false
}

/// A field value may not carry NUL, CR, LF or any other control byte but
/// HTAB (httparse refuses them too; this is the belt to its braces). Written
/// without an early exit so that it vectorises.
pub(crate) fn value_is_clean(value: &[u8]) -> bool {
    !value
        .iter()
        .fold(false, |bad, &b| bad | ((b < 0x20) & (b != b'\t')))
}

/// Offset of the request/status line: httparse skips empty lines before it.
pub(crate) fn first_line_start(buf: &[u8]) -> usize {
    buf.iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len())
}

/// Check that the parsed fields cover the head line by line: the first
/// field name starts right after the first line, only whitespace and CRLF/LF sit between a
/// value and the next name, and the head ends in an empty line. Anything
/// else (a folded continuation line, say) is bytes a parser skipped.
///
/// Runs per request and per response: the usual gaps (exactly CRLF between
/// fields, CRLF CRLF at the end) are compared byte by byte before the
/// general rule, and the first line is searched with `contains` (memchr).
/// The answer is the same as the plain statement of the rule (the tests
/// hold it against that).
pub(crate) fn lines_are_contiguous(
    buf: &[u8],
    headers: &[httparse::Header<'_>],
    head_len: usize,
) -> bool {
    let head = &buf[..head_len.min(buf.len())];
    let Some(first) = headers.first() else {
        return true; // request/status line then the empty line: nothing to skip
    };
    // The first name must start just after the first LF past the empty
    // lines httparse skips: an LF right before it, and none earlier.
    let start = range_in(head, first.name.as_bytes()).start;
    let line = first_line_start(head);
    match start
        .checked_sub(1)
        .and_then(|lf| head.get(line..lf).zip(head.get(lf)))
    {
        Some((before, b'\n')) if !before.contains(&b'\n') => {}
        _ => return false,
    }
    let last = headers.len() - 1;
    for (i, h) in headers.iter().enumerate() {
        let value_end = if h.value.is_empty() {
            range_in(head, h.name.as_bytes()).end + 1 // just after the colon
        } else {
            range_in(head, h.value).end
        };
        let next = match headers.get(i + 1) {
            Some(n) => range_in(head, n.name.as_bytes()).start,
            None => head.len(),
        };
        let gap = head.get(value_end..next).unwrap_or_default();
        let ok = if i < last {
            matches!(gap, b"\r\n") || matches!(trim_ows(gap), b"\r\n" | b"\n")
        } else {
            matches!(gap, b"\r\n\r\n")
                || matches!(trim_ows(gap), b"\r\n\r\n" | b"\n\n" | b"\r\n\n" | b"\n\r\n")
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Parse one Content-Length value: ASCII digits only, no sign, no list, no
/// inner whitespace, no overflow.
pub(crate) fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    if value.is_empty() {
        return Err(HttpError::Smuggling("empty Content-Length"));
    }
    let mut n: u64 = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return Err(HttpError::Smuggling("Content-Length is not a number"));
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(HttpError::Smuggling("Content-Length overflow"))?;
    }
    Ok(n)
}

/// What the Transfer-Encoding fields of a message say, all fields taken as
/// one list of codings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TeCodings {
    /// No Transfer-Encoding field.
    Absent,
    /// Exactly one coding, `chunked`.
    Chunked,
    /// `chunked` is last (once) but other codings come before it.
    ChunkedAfterOthers,
    /// `chunked` is missing, not last, or repeated (or the list is empty).
    NotChunkedLast,
}

/// Framing fields gathered from a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Framing {
    /// The (agreed) Content-Length, when there is one.
    pub content_length: Option<u64>,
    /// The Transfer-Encoding codings.
    pub te: TeCodings,
}

/// Gather Content-Length and Transfer-Encoding from `headers`. Refuses bad or
/// disagreeing Content-Length values (`Smuggling`); does not judge CL + TE
/// (the caller does, with the version at hand).
pub(crate) fn framing(headers: &[httparse::Header<'_>]) -> Result<Framing, HttpError> {
    let mut content_length = None;
    let mut codings = 0usize;
    let mut chunked_seen = 0usize;
    let mut last_is_chunked = false;
    let mut te_present = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = parse_content_length(h.value)?;
            match content_length {
                Some(prev) if prev != n => {
                    return Err(HttpError::Smuggling("conflicting Content-Length values"))
                }
                _ => content_length = Some(n),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te_present = true;
            for item in h.value.split(|&b| b == b',') {
                let item = trim_ows(item);
                if item.is_empty() {
                    continue;
                }
                codings += 1;
                last_is_chunked = item.eq_ignore_ascii_case(b"chunked");
                if last_is_chunked {
                    chunked_seen += 1;
                }
            }
        }
    }
    let te = if !te_present {
        TeCodings::Absent
    } else if !last_is_chunked || chunked_seen != 1 {
        TeCodings::NotChunkedLast
    } else if codings == 1 {
        TeCodings::Chunked
    } else {
        TeCodings::ChunkedAfterOthers
    };
    Ok(Framing { content_length, te })
}

/// Whether a field must be dropped because a `Connection` field names it.
/// Framing fields and Host are never dropped this way: letting a client
/// strip `Content-Length` through `Connection` would desync the backend.
pub(crate) fn named_in_connection(headers: &[httparse::Header<'_>], name: &str) -> bool {
    const PROTECTED: [&str; 3] = ["content-length", "transfer-encoding", "host"];
    if PROTECTED.iter().any(|p| name.eq_ignore_ascii_case(p)) {
        return false;
    }
    headers
        .iter()
        .any(|c| c.name.eq_ignore_ascii_case("connection") && header_has_token(c.value, name))
}

/// True when a Connection value names a field other than the hop-by-hop
/// ones dropped anyway (`keep-alive`, `upgrade`) or `close`: only then must
/// every field be checked with [`named_in_connection`].
pub(crate) fn connection_names_others(value: &[u8]) -> bool {
    // The usual values, whole: no list to split and trim.
    if [&b"keep-alive"[..], b"close", b"upgrade"]
        .iter()
        .any(|t| value.eq_ignore_ascii_case(t))
    {
        return false;
    }
    value.split(|&b| b == b',').map(trim_ows).any(|t| {
        !t.is_empty()
            && !t.eq_ignore_ascii_case(b"keep-alive")
            && !t.eq_ignore_ascii_case(b"upgrade")
            && !t.eq_ignore_ascii_case(b"close")
    })
}

/// Append `name: value\r\n`.
pub(crate) fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Whether a raw head has a header `name` (lower-case ASCII).
pub(crate) fn has_header(head: &[u8], name: &[u8]) -> bool {
    head.split(|&b| b == b'\n').any(|line| {
        line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name)
            && line[name.len()] == b':'
    })
}

/// Values (trimmed) of every header `name` (lower-case ASCII) in a raw head.
pub(crate) fn header_values<'a>(
    head: &'a [u8],
    name: &'a [u8],
) -> impl Iterator<Item = &'a [u8]> + 'a {
    head.split(|&b| b == b'\n').filter_map(move |line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        (line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name)
            && line[name.len()] == b':')
            .then(|| line[name.len() + 1..].trim_ascii())
    })
}

#[cfg(test)]
#[path = "headers_tests.rs"]
mod tests;
