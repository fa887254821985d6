//! Tests for bindings: every form, the normalisation of mapped addresses and
//! every refused range, for registered and static backends.

use super::*;
use crate::pool::registry::protocol::parse_client_message;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn reason(r: Result<(String, SocketAddr), ProtocolError>) -> String {
    match r {
        Err(ProtocolError::BadBinding { reason, .. }) => reason.to_string(),
        other => panic!("expected a refused binding, got {other:?}"),
    }
}

#[test]
fn resolve_port_only_uses_peer_ip() {
    let peer: IpAddr = "10.1.2.3".parse().expect("ip");
    for b in [":9001", "9001", " 9001 "] {
        let (url, addr) = resolve_binding(b, peer).expect(b);
        assert_eq!(url, "http://10.1.2.3:9001");
        assert_eq!(addr, "10.1.2.3:9001".parse().expect("addr"));
    }
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let (url, addr) = resolve_binding(":80", v6).expect("v6");
    assert_eq!(url, "http://[::1]:80");
    assert_eq!(addr.port(), 80);
}

#[test]
fn resolve_urls() {
    let peer: IpAddr = "10.1.2.3".parse().expect("ip");
    let ok = |b: &str| resolve_binding(b, peer).expect(b);
    assert_eq!(ok("http://10.0.0.9:81").0, "http://10.0.0.9:81");
    assert_eq!(ok("WS://10.0.0.9").0, "ws://10.0.0.9:80");
    assert_eq!(
        ok("ws://0.0.0.0:9000/socket").0,
        "ws://10.1.2.3:9000/socket"
    );
    assert_eq!(ok("http://[::]:9000").1.ip(), peer);

    // localhost is fine from this machine, refused from elsewhere.
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    assert_eq!(
        resolve_binding("http://localhost:9001", lo)
            .expect("local")
            .0,
        "http://127.0.0.1:9001"
    );
    for bad in [
        "http://localhost:9001",
        "http://127.0.0.1:9001",
        "http://user@10.0.0.1:80",
        "http://fe80::1:80",
        "http://[fe80::1",
        "http://10.0.0.1:",
        "http://10.0.0.1:99999",
        "10.0.0.1:80",
        "",
    ] {
        assert!(resolve_binding(bad, peer).is_err(), "{bad:?}");
    }
}

#[test]
fn static_bindings_need_a_host() {
    assert!(parse_binding(":9001", Fill::Static).is_err());
    assert!(parse_binding("http://0.0.0.0:9001", Fill::Static).is_err());
    let (url, addr) = parse_binding("http://localhost:9001", Fill::Static).expect("ok");
    assert_eq!(url, "http://127.0.0.1:9001");
    assert_eq!(addr.port(), 9001);
}

#[test]
fn mapped_loopback_and_unspecified_do_not_bypass_the_remote_peer_rule() {
    let remote = ip("10.1.2.3");
    for b in [
        "http://[::ffff:127.0.0.1]:9001",
        "ws://[::ffff:127.9.9.9]:80/x",
        "http://[::1]:9001",
        "http://127.0.0.2:9001",
    ] {
        assert!(
            reason(resolve_binding(b, remote)).contains("loopback"),
            "{b}"
        );
    }
    // A mapped unspecified host is unspecified: it takes the peer's address.
    let (url, addr) = resolve_binding("http://[::ffff:0.0.0.0]:9001", remote).expect("filled");
    assert_eq!(url, "http://10.1.2.3:9001");
    assert_eq!(addr, "10.1.2.3:9001".parse().expect("addr"));
    // A mapped host is written as IPv4.
    let (url, _) = resolve_binding("http://[::ffff:10.0.0.9]:81/p", remote).expect("mapped");
    assert_eq!(url, "http://10.0.0.9:81/p");
}

#[test]
fn the_peer_address_is_normalised_too() {
    // A loopback peer seen through a dual-stack listener may register
    // loopback, and port-only forms fill in plain IPv4.
    let mapped_lo = ip("::ffff:127.0.0.1");
    let (url, _) = resolve_binding("http://127.0.0.1:9001", mapped_lo).expect("local");
    assert_eq!(url, "http://127.0.0.1:9001");
    assert_eq!(
        resolve_binding(":9001", mapped_lo).expect("port").0,
        "http://127.0.0.1:9001"
    );
    let mapped_remote = ip("::ffff:10.1.2.3");
    assert_eq!(
        resolve_binding(":9001", mapped_remote).expect("port").0,
        "http://10.1.2.3:9001"
    );
    assert!(resolve_binding("http://[::ffff:127.0.0.1]:1", mapped_remote).is_err());
    // The allow-list sees the normalised peer-filled address.
    let allow: Vec<Cidr> = vec!["10.0.0.0/8".parse().expect("cidr")];
    assert!(resolve_binding_in(":9001", mapped_remote, &allow).is_ok());
}

#[test]
fn refused_ranges_for_registered_backends() {
    let remote = ip("10.1.2.3");
    let lo = ip("127.0.0.1");
    for peer in [remote, lo] {
        for (b, why) in [
            ("http://169.254.169.254:80/latest", "link-local"),
            ("http://[::ffff:169.254.169.254]:80", "link-local"),
            ("http://169.254.0.1:80", "link-local"),
            ("http://[fe80::1]:9000", "link-local"),
            ("http://[febf::1]:9000", "link-local"),
            ("http://224.0.0.1:80", "multicast"),
            ("http://239.255.255.250:1900", "multicast"),
            ("http://[ff02::1]:80", "multicast"),
            ("http://[::ffff:224.0.0.1]:80", "multicast"),
            ("http://255.255.255.255:80", "broadcast"),
            ("http://0.1.2.3:80", "0.0.0.0/8"),
            ("http://[::7f00:1]:80", "IPv4-compatible"),
        ] {
            let r = reason(resolve_binding(b, peer));
            assert!(r.contains(why), "{b} from {peer}: {r}");
        }
    }
    // Unspecified after filling (a peer that is itself unspecified).
    assert!(reason(resolve_binding(":80", ip("0.0.0.0"))).contains("0.0.0.0"));
    assert!(reason(resolve_binding(":80", ip("::ffff:0.0.0.0"))).contains("0.0.0.0"));
    // Just outside the ranges is fine.
    assert!(resolve_binding("http://169.255.0.1:80", remote).is_ok());
    assert!(resolve_binding("http://[fec0::1]:80", remote).is_ok());
    assert!(resolve_binding("http://223.255.255.255:80", remote).is_ok());
}

#[test]
fn nat64_and_6to4_addresses_get_the_ipv4_policy() {
    let peer = ip("10.0.0.9");
    for b in [
        "http://[64:ff9b::7f00:1]:80",      // NAT64 of 127.0.0.1
        "http://[64:ff9b::a9fe:a9fe]:80",   // NAT64 of 169.254.169.254
        "http://[64:ff9b:1::a9fe:a9fe]:80", // local-use NAT64
        "http://[2002:7f00:1::1]:80",       // 6to4 of 127.0.0.1
        "http://[2002:a9fe:a9fe::1]:80",    // 6to4 of 169.254.169.254
        "http://[64:ff9b::e000:1]:80",      // NAT64 of multicast 224.0.0.1
        "http://[2002::1]:80",              // 6to4 of 0.0.0.0
    ] {
        let why = reason(resolve_binding(b, peer));
        assert!(why.contains("NAT64 or 6to4"), "{b}: {why}");
    }
    // Ordinary translated addresses stay allowed.
    for b in ["http://[64:ff9b::a00:5]:80", "http://[2002:a00:5::1]:80"] {
        assert!(resolve_binding(b, peer).is_ok(), "{b}");
    }
}

#[test]
fn the_allow_list_applies_to_every_registered_address() {
    let allow: Vec<Cidr> = vec![
        "10.0.0.0/8".parse().expect("cidr"),
        "fd00::/8".parse().expect("cidr"),
    ];
    let peer = ip("10.1.2.3");
    let ok = |b: &str, p: IpAddr| resolve_binding_in(b, p, &allow).expect(b).0;
    assert_eq!(ok("http://10.9.9.9:80", peer), "http://10.9.9.9:80");
    assert_eq!(
        ok("http://[::ffff:10.9.9.9]:80", peer),
        "http://10.9.9.9:80"
    );
    assert_eq!(ok("http://[fd00::5]:80", peer), "http://[fd00::5]:80");
    // Peer-filled addresses are where traffic goes: they are checked too.
    assert_eq!(ok(":9001", peer), "http://10.1.2.3:9001");
    assert_eq!(ok("http://0.0.0.0:9001", peer), "http://10.1.2.3:9001");
    let outside = ip("192.168.1.1");
    let refused = |b: &str, p: IpAddr| match resolve_binding_in(b, p, &allow) {
        Err(e @ ProtocolError::NotAllowed { .. }) => e.to_string(),
        other => panic!("{b} from {p}: {other:?}"),
    };
    let message = refused("http://192.168.1.1:80", peer);
    assert!(
        message.contains("192.168.1.1")
            && message.contains("--allow-backend-cidr 10.0.0.0/8, fd00::/8"),
        "{message}"
    );
    for (b, p) in [
        (":9001", outside),
        ("http://[::]:9001", outside),
        ("http://[fc00::1]:80", peer),
        // A loopback peer may register loopback only if the list allows it.
        ("http://127.0.0.1:80", ip("127.0.0.1")),
    ] {
        assert!(
            refused(b, p).contains("--allow-backend-cidr"),
            "{b} from {p}"
        );
    }
    // The allow-list does not lift the refused ranges.
    let everything: Vec<Cidr> = vec!["0.0.0.0/0".parse().expect("cidr")];
    assert!(resolve_binding_in("http://169.254.169.254:80", peer, &everything).is_err());
    // Registration messages check the ranges before any peer is known.
    let msg = r#"{"type":"register","v":1,"id":"a","bindings":["http://169.254.169.254/"]}"#;
    assert!(matches!(
        parse_client_message(msg, 65536),
        Err(ProtocolError::BadBinding { .. })
    ));
}

#[test]
fn static_backends_normalise_but_skip_the_allow_list() {
    let (url, addr) = parse_binding("http://[::ffff:127.0.0.1]:9001", Fill::Static).expect("ok");
    assert_eq!(url, "http://127.0.0.1:9001");
    assert_eq!(addr, "127.0.0.1:9001".parse().expect("addr"));
    // Operator-given: loopback and link-local are the operator's call.
    assert!(parse_binding("http://169.254.1.1:80", Fill::Static).is_ok());
    assert!(parse_binding("http://[fe80::1]:80", Fill::Static).is_ok());
    for b in [
        "http://[::ffff:0.0.0.0]:9001",
        "http://[::]:9001",
        "http://224.0.0.1:80",
        "http://[ff02::1]:80",
        "http://255.255.255.255:80",
    ] {
        assert!(parse_binding(b, Fill::Static).is_err(), "{b}");
    }
}

#[test]
fn bindings_are_visible_ascii_and_bounded() {
    let peer = ip("10.1.2.3");
    for b in [
        "http://127.0.0.1:9/x\r\nSet-Cookie: a=b",
        "http://10.0.0.1:9/x\nLocation: evil",
        "http://10.0.0.1:9/a b",
        "http://10.0.0.1:9/\u{0}",
        "http://10.0.0.1:9/\u{7f}",
        "http://10.0.0.1:9/caf\u{e9}",
        "http://10.0.0.1:9/\tx",
    ] {
        assert!(
            reason(resolve_binding(b, peer)).contains("visible ASCII"),
            "{b:?}"
        );
        assert!(parse_binding(b, Fill::Static).is_err(), "{b:?}");
    }
    assert!(reason(resolve_binding("http://10.0.0.1:9/x#frag", peer)).contains("fragment"));
    assert!(reason(resolve_binding("http://10.0.0.1:9#", peer)).contains("fragment"));
    let path = "a".repeat(MAX_BINDING_LEN - "http://10.0.0.1:9/".len());
    let longest = format!("http://10.0.0.1:9/{path}");
    assert_eq!(
        resolve_binding(&longest, peer).expect("at the limit").0,
        longest
    );
    let too_long = format!("{longest}a");
    assert!(reason(resolve_binding(&too_long, peer)).contains("2048"));
    // The error echoes a bounded prefix only.
    match resolve_binding(&too_long, peer) {
        Err(ProtocolError::BadBinding { binding, .. }) => assert_eq!(binding.len(), 128),
        other => panic!("{other:?}"),
    }
    // Query strings and percent-escapes are fine.
    assert!(resolve_binding("ws://10.0.0.1:9/chat?room=a%20b&x=1", peer).is_ok());
}

#[test]
fn tls_bindings_keep_every_guard() {
    let peer: IpAddr = "10.1.2.3".parse().expect("ip");
    let ok = |b: &str| resolve_binding(b, peer).expect(b);
    assert_eq!(ok("https://10.0.0.9").0, "https://10.0.0.9:443");
    assert_eq!(ok("WSS://10.0.0.9:8443/x").0, "wss://10.0.0.9:8443/x");
    assert_eq!(ok("wss://0.0.0.0:9443").1.ip(), peer);
    // The same refusals as plain bindings.
    for bad in [
        "https://127.0.0.1:443",
        "wss://localhost:443",
        "https://169.254.169.254",
        "https://user@10.0.0.1",
        "https://224.0.0.1",
        "wss://backend.example.com",
    ] {
        assert!(resolve_binding(bad, peer).is_err(), "{bad}");
    }
    assert!(matches!(
        resolve_binding_in(
            "https://10.9.9.9",
            peer,
            &["10.1.0.0/16".parse().expect("cidr")]
        ),
        Err(ProtocolError::NotAllowed { .. })
    ));
    // Static: loopback and localhost are the operator's call.
    let (url, addr) = parse_binding("https://localhost:8443", Fill::Static).expect("static");
    assert_eq!(
        (url.as_str(), addr.port()),
        ("https://127.0.0.1:8443", 8443)
    );
}

#[test]
fn tls_host_names_what_the_certificate_must_match() {
    assert_eq!(tls_host("https://localhost:8443"), Some("localhost"));
    assert_eq!(tls_host("wss://10.0.0.1/ws"), Some("10.0.0.1"));
    assert_eq!(tls_host("HTTPS://[::1]:443"), Some("::1"));
    assert_eq!(tls_host("http://10.0.0.1:80"), None);
    assert_eq!(tls_host("ws://10.0.0.1:80"), None);
    assert_eq!(tls_host(":9001"), None);
}
