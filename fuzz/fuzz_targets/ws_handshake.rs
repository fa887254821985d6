//! Fuzz target: arbitrary bytes as an HTTP request head through httparse and
//! the WebSocket handshake checks, and as a response head through the client
//! side check, plus the origin policy. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wslb::proto::ws::handshake::httparse;
use wslb::proto::ws::{
    accept_key, check_client_request, check_server_response, is_upgrade_request, OriginPolicy,
};

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    if let Ok(httparse::Status::Complete(_)) = req.parse(data) {
        let _ = is_upgrade_request(req.headers);
        if let (Some(method), Some(version)) = (req.method, req.version) {
            if let Ok(hs) = check_client_request(method, version, req.headers) {
                assert_eq!(accept_key(hs.key).len(), 28);
                let policy = OriginPolicy::parse(&[
                    "http://localhost:*".to_string(),
                    "https://*.a.b".to_string(),
                ]);
                if let (Ok(p), Some(origin)) = (policy, hs.origin) {
                    let _ = p.allows(origin);
                }
            }
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    if let Ok(httparse::Status::Complete(_)) = resp.parse(data) {
        let _ = check_server_response(
            resp.code.unwrap_or(0),
            resp.headers,
            "dGhlIHNhbXBsZSBub25jZQ==",
        );
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(p) = OriginPolicy::parse(&s.split('\n').map(str::to_string).collect::<Vec<_>>()) {
            let _ = p.allows(data);
        }
    }
});
