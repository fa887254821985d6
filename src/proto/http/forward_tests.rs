//! Tests for the forwarding fields of the rewritten head: X-Forwarded-For,
//! X-Forwarded-Proto, Forwarded and X-Real-IP from trusted and untrusted peers.

use super::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const UNTRUSTED: ForwardInfo = ForwardInfo {
    client_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)),
    tls: false,
    trusted: false,
};

const TRUSTED: ForwardInfo = ForwardInfo {
    trusted: true,
    ..UNTRUSTED
};

fn rewrite(buf: &[u8], fwd: &ForwardInfo) -> String {
    let lim = Limits {
        max_header_bytes: 8192,
        max_headers: 64,
    };
    let mut out = Vec::new();
    parse_request(buf, &lim, fwd, &mut out)
        .expect("valid")
        .expect("complete");
    String::from_utf8(out).expect("utf8")
}

const SPOOFED: &[u8] = b"GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nHost: h\r\n\
    x-forwarded-for: 2.2.2.2, 3.3.3.3\r\nX-Forwarded-Proto: https\r\nForwarded: for=1.1.1.1\r\n\
    X-Real-IP: 1.1.1.1\r\nx-real-ip: 4.4.4.4\r\nFORWARDED: proto=https\r\nAccept: */*\r\n\r\n";

#[test]
fn untrusted_peer_forwarding_fields_are_replaced() {
    let out = rewrite(SPOOFED, &UNTRUSTED);
    assert_eq!(
        out,
        "GET / HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\
         X-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: http\r\n\r\n"
    );
    for spoof in [
        "1.1.1.1",
        "2.2.2.2",
        "4.4.4.4",
        "https",
        "orwarded:",
        "Real",
    ] {
        assert!(!out.contains(spoof), "{spoof} survived: {out}");
    }
    let tls = ForwardInfo {
        tls: true,
        ..UNTRUSTED
    };
    let out = rewrite(SPOOFED, &tls);
    assert!(out.ends_with("X-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: https\r\n\r\n"));
    assert_eq!(out.matches("X-Forwarded-Proto").count(), 1, "{out}");
}

#[test]
fn untrusted_xfp_is_replaced() {
    let tls = ForwardInfo {
        tls: true,
        ..UNTRUSTED
    };
    let out = rewrite(
        b"GET / HTTP/1.1\r\nX-Forwarded-Proto: gopher\r\nHost: h\r\n\r\n",
        &tls,
    );
    assert!(!out.contains("gopher"));
    assert_eq!(out.matches("X-Forwarded-Proto").count(), 1);
    assert!(out.contains("X-Forwarded-Proto: https\r\n"));
}

#[test]
fn trusted_peer_xff_appended_and_others_kept() {
    let out = rewrite(SPOOFED, &TRUSTED);
    assert_eq!(out.matches("X-Forwarded-For").count(), 1, "{out}");
    assert!(
        out.contains("X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9\r\n"),
        "{out}"
    );
    // The proxy in front said https: kept, and ours not added.
    assert_eq!(out.matches("X-Forwarded-Proto").count(), 1, "{out}");
    assert!(out.contains("X-Forwarded-Proto: https\r\n"), "{out}");
    assert!(out.contains("Forwarded: for=1.1.1.1\r\n"), "{out}");
    assert!(out.contains("FORWARDED: proto=https\r\n"), "{out}");
    assert!(
        out.contains("X-Real-IP: 1.1.1.1\r\nx-real-ip: 4.4.4.4\r\n"),
        "{out}"
    );
}

#[test]
fn trusted_peer_without_fields_gets_ours() {
    let v6 = ForwardInfo {
        client_ip: IpAddr::V6(Ipv6Addr::LOCALHOST),
        tls: true,
        trusted: true,
    };
    let out = rewrite(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", &v6);
    assert!(
        out.ends_with("\r\nX-Forwarded-For: ::1\r\nX-Forwarded-Proto: https\r\n\r\n"),
        "{out}"
    );
    // Empty incoming values add no stray separators.
    let out = rewrite(
        b"GET / HTTP/1.1\r\nX-Forwarded-For:\r\nHost: h\r\n\r\n",
        &TRUSTED,
    );
    assert!(out.contains("X-Forwarded-For: 10.0.0.9\r\n"), "{out}");
}

#[test]
fn fields_that_only_look_alike_are_kept() {
    let buf = b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Host: a\r\nForwarded-Ish: b\r\n\
        X-Real-IPs: c\r\n\r\n";
    let out = rewrite(buf, &UNTRUSTED);
    assert!(out.contains("X-Forwarded-Host: a\r\nForwarded-Ish: b\r\nX-Real-IPs: c\r\n"));
}

#[test]
fn underscore_spellings_of_forwarding_fields_are_removed_from_untrusted_peers() {
    // CGI-style backends read X_Forwarded_For as X-Forwarded-For.
    let req = b"GET / HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 6.6.6.6\r\nx_real_ip: 6.6.6.6\r\n\
        X_FORWARDED_PROTO: https\r\nX-Forwarded_For: 6.6.6.6\r\nX_Other: kept\r\n\r\n";
    let out = rewrite(req, &UNTRUSTED);
    assert!(!out.contains("6.6.6.6"), "{out}");
    assert!(!out.contains("https"), "{out}");
    assert!(out.contains("X_Other: kept\r\n"), "{out}");
    assert!(out.contains("X-Forwarded-For: 10.0.0.9\r\n"), "{out}");
}

#[test]
fn the_prepared_address_text_is_the_usual_one() {
    for ip in [
        "0.0.0.0",
        "10.0.0.9",
        "192.168.100.255",
        "1.20.3.199",
        "::1",
        "2001:db8::7",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "::ffff:192.168.100.255",
    ] {
        let fwd = ForwardInfo {
            client_ip: ip.parse().expect("ip"),
            ..UNTRUSTED
        };
        let p = fwd.prepared();
        assert_eq!(p.ip_text(), ip.as_bytes());
        let mut out = Vec::new();
        let head = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let lim = Limits {
            max_header_bytes: 8192,
            max_headers: 64,
        };
        let req = parse_request_prepared(head, &lim, &p, &mut out);
        assert!(matches!(req, Ok(Some(_))));
        let want = format!("X-Forwarded-For: {ip}\r\n");
        assert!(String::from_utf8_lossy(&out).contains(&want), "{ip}");
    }
}
