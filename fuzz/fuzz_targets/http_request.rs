//! Fuzz target: arbitrary bytes through the request head parser must never
//! panic, and a parsed head must index inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};
use wslb::proto::http::{parse_request, ForwardInfo, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_header_bytes: 4096, max_headers: 32 };
    let fwd = ForwardInfo { client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST), tls: false, trusted: false };
    let mut out = Vec::new();
    match parse_request(data, &limits, &fwd, &mut out) {
        Ok(Some(r)) => {
            assert!(r.head_len <= data.len());
            assert!(r.path.end <= r.head_len);
            assert!(out.ends_with(b"\r\n\r\n"));
            // The rewritten head is itself a valid request head.
            let mut again = Vec::new();
            let big = Limits { max_header_bytes: 1 << 16, max_headers: 256 };
            let r2 = parse_request(&out, &big, &fwd, &mut again);
            assert!(matches!(r2, Ok(Some(_))), "rewrite not re-parseable: {r2:?}");
        }
        Ok(None) => assert!(out.is_empty() && data.len() < limits.max_header_bytes),
        Err(_) => assert!(out.is_empty()),
    }
});
