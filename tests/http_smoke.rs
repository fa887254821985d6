//! Smoke test of the harness: a balancer in front of two echo backends.

mod common;

use common::client::get;
use common::proc::{echo, serve};

#[test]
fn proxies_get_to_both_backends_round_robin() {
    let a = echo("alpha");
    let b = echo("beta");
    let lb = serve(&[&a, &b], &["--algorithm", "round-robin", "--workers", "1"]);
    let mut seen = Vec::new();
    for _ in 0..4 {
        let r = get(lb.http(), "/");
        assert_eq!(r.status, 200);
        seen.push(r.text().trim().to_string());
    }
    assert_eq!(seen.iter().filter(|s| *s == "alpha").count(), 2, "{seen:?}");
    assert_eq!(seen.iter().filter(|s| *s == "beta").count(), 2, "{seen:?}");
    assert_ne!(seen[0], seen[1]);
}
