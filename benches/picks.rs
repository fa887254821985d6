//! Pick cost per algorithm at 8, 100, 1,000 and 10,000 backends while another
//! thread opens and closes connections on random backends (as other workers
//! would), fewest connections also on a quiet pool, and the cost of one
//! connection's open and close (the counter updates) with and without the
//! fewest-connections index to keep current.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use wslb::pool::{pick_sticky, Algorithm, Backend, Picker, PoolSnapshot, Source};

const SIZES: [usize; 4] = [8, 100, 1_000, 10_000];
/// Connections the updater keeps open at once (each step closes one).
const UPDATER_OPEN: usize = 32;
/// Upper bound on updater steps, should a stop never come.
const UPDATER_MAX_STEPS: u64 = 1 << 36;

fn snapshot(backends: Vec<Arc<Backend>>) -> PoolSnapshot {
    PoolSnapshot::new(1, backends)
}

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
    Arc::new(snapshot(backends))
}

/// Opens a connection on a random backend and closes the oldest of the
/// `UPDATER_OPEN` it holds, step after step, until stopped.
fn updater(snap: Arc<PoolSnapshot>, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut open = Vec::with_capacity(UPDATER_OPEN);
        for step in 0..UPDATER_MAX_STEPS {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let b = &snap.backends[rng.usize(..snap.backends.len())];
            let guard = b.stats.begin();
            if open.len() < UPDATER_OPEN {
                open.push(guard);
            } else {
                open[(step as usize) % UPDATER_OPEN] = guard;
            }
        }
    })
}

fn picks_under_updates(c: &mut Criterion) {
    for algorithm in [
        Algorithm::P2c,
        Algorithm::FewestConnections,
        Algorithm::Random,
        Algorithm::RoundRobin,
    ] {
        let mut group = c.benchmark_group(format!("pick/{algorithm}"));
        for n in SIZES {
            let snap = pool(n);
            let picker = Picker::new(algorithm, 42);
            // The first pick builds the index (fewest connections only).
            black_box(picker.pick(&snap, 0, &[]));
            let stop = Arc::new(AtomicBool::new(false));
            let bg = updater(Arc::clone(&snap), Arc::clone(&stop));
            group.bench_with_input(BenchmarkId::from_parameter(n), &snap, |b, snap| {
                b.iter(|| black_box(picker.pick(snap, 0, &[])))
            });
            stop.store(true, Ordering::Relaxed);
            let _ = bg.join();
        }
        group.finish();
    }
}

fn quiet_and_sticky(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick-quiet/fewest-connections");
    for n in SIZES {
        let snap = pool(n);
        // Uneven loads, so the least is not every backend.
        let held: Vec<_> = (0..n)
            .filter(|i| !i.is_multiple_of(3))
            .map(|i| snap.backends[i].stats.begin())
            .collect();
        let picker = Picker::new(Algorithm::FewestConnections, 42);
        group.bench_with_input(BenchmarkId::from_parameter(n), &snap, |b, snap| {
            b.iter(|| black_box(picker.pick(snap, 0, &[])))
        });
        drop(held);
    }
    group.finish();
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

/// One connection's counter updates: open (begin) and close (the guard's
/// drop) on a random backend, with the index built (a fewest-connections
/// pick happened on the snapshot) and without.
fn open_close(c: &mut Criterion) {
    for indexed in [false, true] {
        let name = if indexed { "indexed" } else { "plain" };
        let mut group = c.benchmark_group(format!("open-close/{name}"));
        for n in SIZES {
            let snap = pool(n);
            if indexed {
                black_box(Picker::new(Algorithm::FewestConnections, 1).pick(&snap, 0, &[]));
            }
            let mut rng = fastrand::Rng::with_seed(3);
            group.bench_with_input(BenchmarkId::from_parameter(n), &snap, |b, snap| {
                b.iter(|| {
                    let backend = &snap.backends[rng.usize(..snap.backends.len())];
                    drop(black_box(backend.stats.begin()));
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1))
        .sample_size(30);
    targets = picks_under_updates, quiet_and_sticky, open_close
}
criterion_main!(benches);
