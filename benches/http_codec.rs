//! Criterion benchmarks (placeholder until filled in).
fn main() {}
