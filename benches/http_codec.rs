//! Criterion benchmarks for the HTTP/1.1 codec: request parse + rewrite,
//! response parse + rewrite, and chunked-body scanning.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::net::{IpAddr, Ipv4Addr};
use wslb::proto::http::{
    parse_request, parse_response, ChunkedScanner, ForwardInfo, Limits, Method,
};

/// A typical ~400-byte browser GET.
const BROWSER_GET: &[u8] = b"GET /static/app.js?v=1712345678 HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: */*\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.example.com/\r\n\
Connection: keep-alive\r\n\
Cookie: session=3f2a9c1e7b5d4a60; theme=dark\r\n\
Sec-Fetch-Dest: script\r\n\
Sec-Fetch-Mode: no-cors\r\n\
Sec-Fetch-Site: same-origin\r\n\r\n";

const SMALL_200: &[u8] = b"HTTP/1.1 200 OK\r\n\
Date: Wed, 25 Nov 2026 22:00:00 GMT\r\n\
Content-Type: application/json\r\n\
Content-Length: 17\r\n\
Connection: keep-alive\r\n\r\n{\"status\":\"ok\"}\n";

fn chunked_64k() -> Vec<u8> {
    let mut body = Vec::with_capacity(70 * 1024);
    for i in 0..16u8 {
        body.extend_from_slice(b"1000\r\n");
        body.extend(std::iter::repeat_n(b'a' + i, 4096));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    body
}

fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    let fwd = ForwardInfo {
        client_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
        tls: true,
        trusted: false,
    };
    let mut out = Vec::with_capacity(1024);

    let mut g = c.benchmark_group("http");
    g.throughput(Throughput::Bytes(BROWSER_GET.len() as u64));
    g.bench_function("parse_request_browser_get", |b| {
        b.iter(|| {
            out.clear();
            let r = parse_request(black_box(BROWSER_GET), &limits, &fwd, &mut out);
            black_box(r.is_ok_and(|r| r.is_some()))
        })
    });
    // Baseline: httparse alone on the same head, no checks and no rewrite.
    g.bench_function("httparse_only_browser_get", |b| {
        b.iter(|| {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            black_box(req.parse(black_box(BROWSER_GET)).is_ok())
        })
    });
    g.throughput(Throughput::Bytes(SMALL_200.len() as u64));
    g.bench_function("parse_response_small_200", |b| {
        b.iter(|| {
            out.clear();
            let r = parse_response(
                black_box(SMALL_200),
                &limits,
                Method::Get,
                1,
                true,
                &mut out,
            );
            black_box(r.is_ok_and(|r| r.is_some()))
        })
    });
    let body = chunked_64k();
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("chunked_scan_64k_of_4k_chunks", |b| {
        b.iter(|| {
            let mut s = ChunkedScanner::new();
            black_box(s.scan(black_box(&body)).map(|p| p.done).unwrap_or(false))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
