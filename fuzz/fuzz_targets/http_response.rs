//! Fuzz target: arbitrary bytes through the response head parser must never
//! panic, for every request method / client version / keep-alive mix.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wslb::proto::http::{parse_response, Limits, Method};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, data)) = data.split_first() else { return };
    let method = if flags & 1 == 0 { Method::Get } else { Method::Head };
    let minor = (flags >> 1) & 1;
    let keep_alive = flags & 4 != 0;
    let limits = Limits { max_header_bytes: 4096, max_headers: 32 };
    let mut out = Vec::new();
    match parse_response(data, &limits, method, minor, keep_alive, &mut out) {
        Ok(Some(r)) => {
            assert!(r.head_len <= data.len());
            assert!(out.ends_with(b"\r\n\r\n"));
            assert!(keep_alive || !r.client_keep_alive);
        }
        Ok(None) | Err(_) => assert!(out.is_empty()),
    }
});
