//! Criterion micro-benchmarks for the WebSocket codec: header parse, payload
//! unmasking against a plain memcpy of the same size, and the accept key.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wslb::proto::ws::{accept_key, apply_mask, encode_header, parse_header, FrameLimits, OpCode};

fn header_parse(c: &mut Criterion) {
    let limits = FrameLimits::server(u64::MAX);
    let mut g = c.benchmark_group("ws_header_parse");
    for (name, len) in [("small_masked", 20u64), ("len16", 1000), ("len64", 1 << 20)] {
        let mut h = [0u8; 14];
        let n = encode_header(&mut h, true, OpCode::Binary, Some([1, 2, 3, 4]), len);
        let bytes = h[..n].to_vec();
        g.bench_function(name, |b| {
            b.iter(|| parse_header(black_box(&bytes), black_box(&limits)))
        });
    }
    g.finish();
}

fn unmask_vs_memcpy(c: &mut Criterion) {
    let mut g = c.benchmark_group("ws_unmask");
    for size in [64usize, 16 << 10, 1 << 20] {
        let src: Vec<u8> = (0..size).map(|i| i as u8).collect();
        let mut dst = vec![0u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("apply_mask", size), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut dst), black_box([1, 2, 3, 4]), 0))
        });
        g.bench_with_input(BenchmarkId::new("memcpy", size), &size, |b, _| {
            b.iter(|| black_box(&mut dst).copy_from_slice(black_box(&src)))
        });
    }
    g.finish();
}

fn accept(c: &mut Criterion) {
    c.bench_function("ws_accept_key", |b| {
        b.iter(|| accept_key(black_box(b"dGhlIHNhbXBsZSBub25jZQ==")))
    });
}

criterion_group!(benches, header_parse, unmask_vs_memcpy, accept);
criterion_main!(benches);
