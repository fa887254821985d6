//! Pick cost per algorithm at 8, 100, 1,000 and 10,000 backends while another
//! thread keeps changing the `active` counters (as other workers would).

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use wslb::pool::{pick_sticky, Algorithm, Backend, Picker, PoolSnapshot, Source};

const SIZES: [usize; 4] = [8, 100, 1_000, 10_000];

fn pool(n: usize) -> Arc<PoolSnapshot> {
    let backends = (0..n)
        .map(|i| {
            let addr = SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 9000));
            Arc::new(Backend::new(
                &format!("backend-{i}"),
                addr,
                1,
                Source::Static,
            ))
        })
        .collect();
    Arc::new(PoolSnapshot {
        generation: 1,
        backends,
    })
}

/// Keeps bumping `active` up and down on every backend until stopped.
fn churn(snap: Arc<PoolSnapshot>, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut k = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let b = &snap.backends[k % snap.backends.len()];
            b.stats.active.fetch_add(1, Ordering::Relaxed);
            b.stats.active.fetch_sub(1, Ordering::Relaxed);
            k = k.wrapping_add(7);
        }
    })
}

fn picks(c: &mut Criterion) {
    for algorithm in [
        Algorithm::P2c,
        Algorithm::FewestConnections,
        Algorithm::Random,
        Algorithm::RoundRobin,
    ] {
        let mut group = c.benchmark_group(format!("pick/{algorithm}"));
        for n in SIZES {
            let snap = pool(n);
            let stop = Arc::new(AtomicBool::new(false));
            let bg = churn(Arc::clone(&snap), Arc::clone(&stop));
            let picker = Picker::new(algorithm, 42);
            group.bench_with_input(BenchmarkId::from_parameter(n), &snap, |b, snap| {
                b.iter(|| black_box(picker.pick(snap, 0, &[])))
            });
            stop.store(true, Ordering::Relaxed);
            let _ = bg.join();
        }
        group.finish();
    }
    let mut group = c.benchmark_group("pick/sticky");
    for n in SIZES {
        let snap = pool(n);
        let mut key = 0u64;
        group.bench_with_input(BenchmarkId::from_parameter(n), &snap, |b, snap| {
            b.iter(|| {
                key = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
                black_box(pick_sticky(snap, 0, key, &[]))
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1))
        .sample_size(30);
    targets = picks
}
criterion_main!(benches);
