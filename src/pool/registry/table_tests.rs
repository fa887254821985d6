//! Tests for the registry: membership, publication, counters that survive
//! re-registration, expiry, drain, the admin listing.

use super::*;
use crate::pool::registry::info::BackendState;
use crate::pool::{Algorithm, LocalPool, Picker};

fn setup() -> (Registry, LocalPool) {
    let pool = Arc::new(SharedPool::new());
    (Registry::new(Arc::clone(&pool)), LocalPool::new(pool))
}

fn binds(port: u16) -> Vec<(String, SocketAddr)> {
    let addr = SocketAddr::from(([10, 0, 0, 1], port));
    vec![(format!("http://{addr}"), addr)]
}

fn ids(local: &mut LocalPool) -> Vec<String> {
    local
        .current()
        .backends
        .iter()
        .map(|b| b.id.to_string())
        .collect()
}

#[test]
fn static_backends() {
    let (reg, mut local) = setup();
    reg.add_static("http://localhost:9001", 2).expect("add");
    reg.add_static("ws://10.0.0.2:80", 1).expect("add");
    let snap = Arc::clone(local.current());
    assert_eq!(snap.generation, 2);
    let b = &snap.backends[snap.position("http://localhost:9001").expect("there")];
    assert_eq!(b.addr, "127.0.0.1:9001".parse().expect("addr"));
    assert_eq!(b.primary_url(), "http://127.0.0.1:9001");
    assert_eq!((b.weight, b.source), (2, Source::Static));
    assert_eq!(
        reg.add_static("http://localhost:9001", 1),
        Err(ProtocolError::IdInUse("http://localhost:9001".into()))
    );
    assert!(matches!(
        reg.add_static("http://10.0.0.3:80", 0),
        Err(ProtocolError::BadWeight(0))
    ));
    assert!(reg.add_static(":9001", 1).is_err());
    assert!(reg.add_static("ftp://10.0.0.3", 1).is_err());
    assert_eq!(local.current().generation, 2, "refusals publish nothing");
    // TLS backends: the certificate is checked against the host as written.
    reg.add_static("https://localhost:8443", 1).expect("tls");
    reg.add_static("wss://10.0.0.3", 1).expect("tls");
    let snap = Arc::clone(local.current());
    let tls = |id: &str| {
        let b = &snap.backends[snap.position(id).expect("there")];
        (b.tls_name.as_deref().map(str::to_string), b.addr.port())
    };
    assert_eq!(
        tls("https://localhost:8443"),
        (Some("localhost".into()), 8443)
    );
    assert_eq!(tls("wss://10.0.0.3"), (Some("10.0.0.3".into()), 443));
    assert_eq!(tls("ws://10.0.0.2:80"), (None, 80));
}

#[test]
fn register_publishes_and_every_change_bumps_generation() {
    let (reg, mut local) = setup();
    assert_eq!(reg.register("a", binds(1), 1, None), RegisterOutcome::New);
    assert_eq!(ids(&mut local), vec!["a"]);
    let g1 = local.current().generation;
    assert_eq!(reg.register("b", binds(2), 3, None), RegisterOutcome::New);
    assert_eq!(ids(&mut local), vec!["a", "b"]);
    assert!(reg.set_draining("a", true));
    let g3 = local.current().generation;
    assert!(g3 > g1 + 1);
    assert!(reg.deregister("a"));
    assert_eq!(ids(&mut local), vec!["b"]);
    assert!(!reg.deregister("a"));
    assert!(!reg.set_draining("zz", true));
    assert_eq!(reg.len(), 1);
}

#[test]
fn register_refusals() {
    let (reg, _) = setup();
    reg.add_static("http://10.0.0.1:80", 1).expect("add");
    assert_eq!(
        reg.register("http://10.0.0.1:80", binds(1), 1, None),
        RegisterOutcome::Rejected(ProtocolError::IdInUse("http://10.0.0.1:80".into()))
    );
    assert_eq!(
        reg.register("a", vec![], 1, None),
        RegisterOutcome::Rejected(ProtocolError::EmptyBindings)
    );
    assert!(matches!(
        reg.register("a", binds(1), 0, None),
        RegisterOutcome::Rejected(ProtocolError::BadWeight(0))
    ));
    assert!(matches!(
        reg.register("", binds(1), 1, None),
        RegisterOutcome::Rejected(ProtocolError::BadId { .. })
    ));
    assert_eq!(reg.len(), 1);
}

#[test]
fn stats_survive_reregistration_and_return() {
    let (reg, mut local) = setup();
    reg.register("a", binds(1), 1, None);
    let s1 = Arc::clone(&local.current().backends[0].stats);
    let guard = s1.begin();
    s1.set_draining(true);

    assert_eq!(
        reg.register("a", binds(2), 5, None),
        RegisterOutcome::Reregistered { was_draining: true }
    );
    let b = Arc::clone(&local.current().backends[0]);
    assert!(
        Arc::ptr_eq(&s1, &b.stats),
        "same counters after re-registration"
    );
    assert_eq!((b.addr.port(), b.weight), (2, 5));
    assert!(!b.stats.draining.load(Relaxed), "re-registration resumes");
    assert_eq!(b.stats.active.load(Relaxed), 1);

    // Leave and come back within the retention: still the same counters,
    // and the guard taken before still gives its count back.
    reg.deregister_at("a", 1000);
    assert!(local.current().backends.is_empty());
    drop(guard);
    reg.register_at("a", binds(1), 1, None, 1000 + STATS_RETENTION_MS);
    let s2 = Arc::clone(&local.current().backends[0].stats);
    assert!(Arc::ptr_eq(&s1, &s2));
    assert_eq!(s2.active.load(Relaxed), 0);
    assert_eq!(s2.requests_total.load(Relaxed), 1);

    // Gone for longer than the retention: fresh counters.
    reg.deregister_at("a", 2000 + STATS_RETENTION_MS);
    reg.register_at("a", binds(1), 1, None, 2001 + 2 * STATS_RETENTION_MS);
    let s3 = Arc::clone(&local.current().backends[0].stats);
    assert!(!Arc::ptr_eq(&s1, &s3));
    assert_eq!(s3.requests_total.load(Relaxed), 0);
}

#[test]
fn retained_stats_are_bounded() {
    let (reg, _) = setup();
    for i in 0..MAX_RETAINED_STATS + 10 {
        let id = format!("b{i}");
        reg.register_at(&id, binds(1), 1, None, i as u64);
        reg.deregister_at(&id, i as u64);
    }
    assert_eq!(reg.lock().retained.len(), MAX_RETAINED_STATS);
    assert!(reg.stats("b0").is_none(), "oldest forgotten");
    assert!(reg.stats(&format!("b{}", MAX_RETAINED_STATS + 9)).is_some());
}

#[test]
fn heartbeat_stores_load_from_elsewhere() {
    let (reg, mut local) = setup();
    reg.register("a", binds(1), 1, None);
    let s = Arc::clone(&local.current().backends[0].stats);
    let _g = (s.begin(), s.begin());
    assert!(reg.heartbeat("a", 10));
    assert_eq!(s.reported_load.load(Relaxed), 8);
    assert_eq!(s.load(), 10);
    assert!(reg.heartbeat("a", 1));
    assert_eq!(s.reported_load.load(Relaxed), 0);
    assert!(!reg.heartbeat("nobody", 1));
}

#[test]
fn expire_removes_only_stale_registered() {
    let (reg, mut local) = setup();
    reg.add_static("http://10.0.0.9:80", 1).expect("add");
    reg.register_at("old", binds(1), 1, None, 0);
    reg.register_at("fresh", binds(2), 1, None, 0);
    reg.heartbeat_at("fresh", 0, 9_000);
    let g = local.current().generation;
    assert_eq!(reg.expire(10_000, 5_000), vec!["old".to_string()]);
    let mut left = ids(&mut local);
    left.sort();
    assert_eq!(left, vec!["fresh", "http://10.0.0.9:80"]);
    assert!(local.current().generation > g);
    let g = local.current().generation;
    assert!(reg.expire(10_000, 5_000).is_empty());
    assert_eq!(
        local.current().generation,
        g,
        "nothing expired, nothing published"
    );
    assert_eq!(reg.expire(u64::MAX, 5_000), vec!["fresh".to_string()]);
    assert_eq!(ids(&mut local), vec!["http://10.0.0.9:80"]);
}

#[test]
fn drain_stops_picks_and_shows_in_list() {
    let (reg, mut local) = setup();
    reg.register("a", binds(1), 1, Some(serde_json::json!({"zone": "x"})));
    reg.register("b", binds(2), 1, None);
    assert!(reg.set_draining("a", true));
    let picker = Picker::new(Algorithm::RoundRobin, 1);
    let snap = Arc::clone(local.current());
    for _ in 0..10 {
        let i = picker.pick(&snap, clock::now_ms(), &[]).expect("b");
        assert_eq!(&*snap.backends[i].id, "b");
    }
    let list = reg.list();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].state, BackendState::Draining);
    assert_eq!(list[1].state, BackendState::Up);
    snap.backends[1]
        .stats
        .ejected_until_ms
        .store(u64::MAX, Relaxed);
    assert_eq!(reg.list()[1].state, BackendState::Down);
    let json = serde_json::to_value(&list[0]).expect("json");
    assert_eq!(json["source"], "registered");
    assert_eq!(json["state"], "draining");
    assert_eq!(json["addr"], "10.0.0.1:1");
    assert_eq!(json["bindings"][0], "http://10.0.0.1:1");
    assert_eq!(json["metadata"]["zone"], "x");
    assert!(reg.set_draining("a", false));
    assert_eq!(reg.list()[0].state, BackendState::Up);
}

#[test]
fn the_table_is_capped_and_static_backends_count() {
    let pool = Arc::new(SharedPool::new());
    let reg = Registry::new(Arc::clone(&pool)).with_max_backends(3);
    let mut local = LocalPool::new(pool);
    reg.add_static("http://10.0.0.9:80", 1).expect("static");
    assert_eq!(reg.register("a", binds(1), 1, None), RegisterOutcome::New);
    assert_eq!(reg.register("b", binds(2), 1, None), RegisterOutcome::New);
    let full = RegisterOutcome::Rejected(ProtocolError::TooManyBackends(3));
    assert_eq!(reg.register("c", binds(3), 1, None), full);
    assert_eq!(
        reg.add_static("http://10.0.0.8:80", 1),
        Err(ProtocolError::TooManyBackends(3))
    );
    // The refusal names the flag and closes with "try again later".
    let e = ProtocolError::TooManyBackends(3);
    assert!(e.to_string().contains("--max-backends"), "{e}");
    assert_eq!(e.close_code(), 1013);
    // Re-registering a member is not a new slot.
    assert_eq!(
        reg.register("a", binds(4), 2, None),
        RegisterOutcome::Reregistered {
            was_draining: false
        }
    );
    assert_eq!(ids(&mut local).len(), 3);
    // A slot that frees up can be taken again.
    assert!(reg.deregister("b"));
    assert_eq!(reg.register("c", binds(3), 1, None), RegisterOutcome::New);
    assert_eq!(reg.register("d", binds(5), 1, None), full);
    assert_eq!(reg.len(), 3);
}

#[test]
fn a_registration_carries_at_most_16_bindings() {
    let (reg, _) = setup();
    let many: Vec<(String, SocketAddr)> = (1..=17).flat_map(binds).collect();
    assert_eq!(
        reg.register("a", many.clone(), 1, None),
        RegisterOutcome::Rejected(ProtocolError::TooManyBindings(17))
    );
    assert_eq!(
        reg.register("a", many[..16].to_vec(), 1, None),
        RegisterOutcome::New
    );
}
