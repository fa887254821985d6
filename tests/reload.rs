//! Live reload over loopback: ten reloads under load (HTTP on new and
//! kept-alive connections, HTTPS, echoing WebSocket sessions) change the
//! backends, their weights, the algorithm and the certificates without a
//! failed request or a lost session; the binary reloads its certificates on
//! SIGHUP and `POST /api/reload`; a bad configuration is refused with its
//! reason and traffic goes on; backends removed, added and kept behave as
//! the admin API says.

mod common;
#[path = "reload/support.rs"]
mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::certs::{generate, TestCert};
use common::client::{get, HttpConn};
use common::proc::{echo, serve, Proc};
use support::{
    der, https_get, https_get_named, install, path, post_reload, trusting, EchoingSession,
};
use wslb::{Algorithm, Balancer, ReloadError, ServeConfig};

fn url(p: &Proc) -> String {
    format!("http://{}", p.http())
}

fn tls_settings(cert: &TestCert) -> wslb::tls::TlsSettings {
    wslb::tls::TlsSettings {
        default_cert: Some(wslb::tls::CertPair {
            cert: cert.cert.clone(),
            key: cert.key.clone(),
        }),
        sni: Vec::new(),
    }
}

/// Requests that succeeded and failed, with the first failures.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    first_failures: Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self
                    .first_failures
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if first.len() < 5 {
                    first.push(e);
                }
            }
        }
    }
}

/// One plain GET on a fresh connection: Ok when the answer is a 200.
fn fresh_get(addr: SocketAddr) -> Result<(), String> {
    let mut c = HttpConn::connect(addr);
    c.stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    match c.read_response(false) {
        Some(r) if r.status == 200 => Ok(()),
        Some(r) => Err(format!("status {} {}", r.status, r.text())),
        None => Err("no response".into()),
    }
}

/// GETs on one kept-alive connection, until `stop`.
fn keep_alive_loop(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    let mut c = HttpConn::connect(addr);
    while !stop.load(Ordering::Relaxed) {
        let outcome = c
            .stream
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .map_err(|e| format!("keep-alive write: {e}"))
            .and_then(|()| match c.read_response(false) {
                Some(r) if r.status == 200 => Ok(()),
                Some(r) => Err(format!("keep-alive status {}", r.status)),
                None => Err("keep-alive connection closed".into()),
            });
        let broken = outcome.is_err();
        tally.record(outcome);
        if broken {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn ten_reloads_under_load_fail_no_request_and_keep_every_session() {
    let (a, b, c) = (echo("alpha"), echo("beta"), echo("gamma"));
    let (cert1, cert2) = (
        generate(&["localhost", "127.0.0.1"]),
        generate(&["localhost", "127.0.0.1"]),
    );
    let cfg = ServeConfig {
        listen: vec!["127.0.0.1:0".parse().expect("addr")],
        tls_listen: vec!["127.0.0.1:0".parse().expect("addr")],
        tls: Some(tls_settings(&cert1)),
        workers: 2,
        pin: false,
        backends: vec![(url(&a), 1), (url(&b), 1)],
        ..ServeConfig::default()
    };
    let lb = Balancer::start(cfg, None).expect("start");
    let find = |kind| {
        lb.local_addrs()
            .into_iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, addr)| addr)
            .expect("listener")
    };
    let (plain, tls) = (find("http"), find("https"));
    let handle = lb.handle();

    let sessions: Vec<EchoingSession> = (0..6)
        .map(|i| EchoingSession::open(plain, i, Duration::from_millis(15)))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let trust = [cert1.clone(), cert2.clone()];
    let mut clients = Vec::new();
    for kind in 0..4 {
        let (stop, tally, trust) = (stop.clone(), tally.clone(), trust.clone());
        clients.push(std::thread::spawn(move || match kind {
            0 | 1 => {
                while !stop.load(Ordering::Relaxed) {
                    tally.record(fresh_get(plain));
                }
            }
            2 => keep_alive_loop(plain, &stop, &tally),
            _ => {
                while !stop.load(Ordering::Relaxed) {
                    let config = trusting(&[&trust[0], &trust[1]]);
                    tally.record(https_get(tls, config, "/").and_then(|(status, _)| {
                        (status == 200)
                            .then_some(())
                            .ok_or(format!("https status {status}"))
                    }));
                }
            }
        }));
    }

    let sets = [
        vec![(url(&a), 3), (url(&c), 1)],
        vec![(url(&b), 1), (url(&c), 2)],
        vec![(url(&a), 1), (url(&b), 1), (url(&c), 1)],
        vec![(url(&c), 5)],
        vec![(url(&a), 2), (url(&b), 1)],
    ];
    let algorithms = [
        Algorithm::RoundRobin,
        Algorithm::P2c,
        Algorithm::FewestConnections,
        Algorithm::Random,
    ];
    let started = Instant::now();
    for i in 0..10 {
        std::thread::sleep(Duration::from_millis(150));
        let mut next = handle.config();
        next.backends = sets[i % sets.len()].clone();
        next.algorithm = algorithms[i % algorithms.len()];
        next.tls = Some(tls_settings(if i % 2 == 1 { &cert2 } else { &cert1 }));
        next.idle_timeout = Duration::from_secs(30 + i as u64);
        let summary = handle
            .reload(next)
            .unwrap_or_else(|e| panic!("reload {i}: {e}"));
        assert_eq!(summary.certificates, 1, "reload {i}: {summary:?}");
        assert!(
            summary.changed.iter().any(|k| k == "idle-timeout"),
            "{summary:?}"
        );
        assert!(summary.needs_restart.is_empty(), "{summary:?}");
    }
    std::thread::sleep(Duration::from_millis(300));
    let reload_time = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in clients {
        t.join().expect("client thread");
    }
    let (ok, failed) = (
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
    );
    println!("10 reloads in {reload_time:?}: {ok} requests served, {failed} failed");
    assert_eq!(
        failed,
        0,
        "failed requests during reloads: {:?}",
        tally.first_failures.lock().expect("failures")
    );
    assert!(ok > 100, "too little traffic to mean anything: {ok}");
    for (i, s) in sessions.into_iter().enumerate() {
        let (mut ws, echoed) = s.finish().unwrap_or_else(|e| panic!("session {i}: {e}"));
        assert!(echoed > 5, "session {i} echoed only {echoed}");
        ws.echo_text("still here after ten reloads");
    }
    // The last reload (i = 9) left the second certificate.
    let (_, leaf) = https_get(tls, trusting(&[&cert1, &cert2]), "/").expect("https");
    assert_eq!(leaf, der(&cert2));
    handle.drain();
    lb.wait();
    cert1.cleanup();
    cert2.cleanup();
}

/// Names of the backends answering `n` fresh GETs, counted.
fn served_by(addr: SocketAddr, n: usize) -> std::collections::HashMap<String, u64> {
    let mut counts = std::collections::HashMap::new();
    for _ in 0..n {
        let r = get(addr, "/");
        assert_eq!(r.status, 200, "{}", r.text());
        *counts.entry(r.text().trim().to_string()).or_insert(0) += 1;
    }
    counts
}

fn requests_of(admin: SocketAddr, id: &str) -> Option<(u64, u64)> {
    common::admin::backend(admin, id).map(|b| {
        (
            b["requests_total"].as_u64().expect("requests_total"),
            b["weight"].as_u64().expect("weight"),
        )
    })
}

#[test]
fn removed_backends_get_nothing_added_ones_serve_kept_ones_keep_their_counters() {
    let (a, b, c) = (echo("alpha"), echo("beta"), echo("gamma"));
    let lb = Balancer::builder()
        .listen("127.0.0.1:0")
        .backend(&url(&a))
        .backend(&url(&b))
        .workers(2)
        .admin("127.0.0.1:0".parse().expect("addr"), None)
        .configure(|c| c.pin = false)
        .start()
        .expect("start");
    let (addr, admin) = (
        lb.local_addr().expect("addr"),
        lb.admin_addr().expect("admin"),
    );
    let handle = lb.handle();
    let before = served_by(addr, 20);
    let (a_before, _) = requests_of(admin, &url(&a)).expect("alpha listed");
    assert_eq!(a_before, before.get("alpha").copied().unwrap_or(0));

    let mut next = handle.config();
    next.backends = vec![(url(&a), 2), (url(&c), 1)];
    next.algorithm = Algorithm::RoundRobin;
    next.max_connections = 5000;
    next.workers = 7;
    let summary = handle.reload(next).expect("reload");
    assert_eq!(summary.backends.added, vec![url(&c)]);
    assert_eq!(summary.backends.removed, vec![url(&b)]);
    assert_eq!(summary.backends.reweighted.len(), 1);
    assert_eq!(summary.backends.reweighted[0].to, 2);
    assert_eq!(summary.changed, vec!["algorithm", "max-connections"]);
    assert_eq!(summary.needs_restart, vec!["workers"]);
    assert_eq!(
        handle.config().workers,
        2,
        "workers keep their running value"
    );

    let after = served_by(addr, 30);
    assert_eq!(
        after.get("beta"),
        None,
        "a removed backend got requests: {after:?}"
    );
    assert!(after.get("gamma").copied().unwrap_or(0) > 0, "{after:?}");
    let (a_now, a_weight) = requests_of(admin, &url(&a)).expect("alpha listed");
    assert_eq!(a_weight, 2);
    assert_eq!(
        a_now,
        a_before + after.get("alpha").copied().unwrap_or(0),
        "the kept backend keeps its counter"
    );
    assert!(requests_of(admin, &url(&b)).is_none(), "beta left the list");
    let (c_now, _) = requests_of(admin, &url(&c)).expect("gamma listed");
    assert_eq!(c_now, after.get("gamma").copied().unwrap_or(0));

    // Refused whole: a bad URL among good ones changes nothing.
    let mut bad = handle.config();
    bad.backends = vec![(url(&b), 1), ("http://not-an-ip.invalid:80".into(), 1)];
    match handle.reload(bad) {
        Err(ReloadError::Backend(reason)) => assert!(reason.contains("not-an-ip"), "{reason}"),
        other => panic!("expected a refused backend, got {other:?}"),
    }
    assert!(requests_of(admin, &url(&b)).is_none());
    assert!(requests_of(admin, &url(&c)).is_some());

    // Without a reload source the API says so.
    let (r, body) = post_reload(admin, None);
    assert_eq!(r.status, 501, "{body}");
    assert!(matches!(
        handle.reload_from_source(),
        Err(ReloadError::NoSource)
    ));
    handle.drain();
    lb.wait();
}

/// `wslb serve` with a TLS listener on `live`'s files (and `sni`'s for
/// `api.localhost`, when given) and an admin token.
fn serve_tls(
    backend: &Proc,
    live: &TestCert,
    sni: Option<&TestCert>,
) -> (Proc, SocketAddr, SocketAddr) {
    let (cert, key) = (path(&live.cert), path(&live.key));
    let mut args = vec![
        "--tls-listen".to_string(),
        "127.0.0.1:0".into(),
        "--tls-cert".into(),
        cert,
        "--tls-key".into(),
        key,
        "--admin-listen".into(),
        "127.0.0.1:0".into(),
        "--admin-token".into(),
        "sekret".into(),
    ];
    if let Some(s) = sni {
        args.push("--tls-sni".into());
        args.push(format!("api.localhost={},{}", path(&s.cert), path(&s.key)));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let lb = serve(&[backend], &refs);
    let (tls, admin) = (lb.addr("https"), lb.addr("admin"));
    (lb, tls, admin)
}

#[test]
fn the_binary_reloads_certificates_on_sighup_and_post_api_reload() {
    let a = echo("alpha");
    let (live, second, third) = (
        generate(&["localhost"]),
        generate(&["localhost"]),
        generate(&["localhost"]),
    );
    let (api, api_next) = (generate(&["api.localhost"]), generate(&["api.localhost"]));
    let trust = || trusting(&[&live, &second, &third, &api, &api_next]);
    let (lb, tls, admin) = serve_tls(&a, &live, Some(&api));
    let sni = |trust| {
        https_get_named(tls, trust, "api.localhost", "/")
            .expect("https with SNI")
            .1
    };
    assert_eq!(sni(trust()), der(&api));
    let (status, leaf) = https_get(tls, trust(), "/").expect("https");
    assert_eq!((status, leaf), (200, der(&live)));

    install(&second, &live);
    lb.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, leaf) = https_get(tls, trust(), "/").expect("https during SIGHUP");
        assert_eq!(status, 200);
        if leaf == der(&second) {
            break;
        }
        assert_eq!(leaf, der(&live), "neither the old nor the new certificate");
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the certificate"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    install(&third, &live);
    install(&api_next, &api);
    let (r, _) = post_reload(admin, None);
    assert_eq!(r.status, 401, "the reload route takes the admin token");
    assert_eq!(https_get(tls, trust(), "/").expect("https").1, der(&second));
    let (r, body) = post_reload(admin, Some("sekret"));
    assert_eq!(r.status, 200, "{body}");
    assert_eq!(
        body["certificates"], 2,
        "the default and the SNI one: {body}"
    );
    assert_eq!(body["needs_restart"], serde_json::json!([]), "{body}");
    assert_eq!(https_get(tls, trust(), "/").expect("https").1, der(&third));
    assert_eq!(sni(trust()), der(&api_next), "the SNI certificate too");
    for c in [&live, &second, &third, &api, &api_next] {
        c.cleanup();
    }
}

#[test]
fn a_bad_reload_is_refused_with_its_reason_and_traffic_flows() {
    let a = echo("alpha");
    let live = generate(&["localhost"]);
    let saved = generate(&["localhost"]);
    install(&live, &saved); // a copy of the good files
    let trust = || trusting(&[&live]);
    let (lb, tls, admin) = serve_tls(&a, &live, None);
    let mut kept = HttpConn::connect(lb.http());
    assert_eq!(kept.get("/").status, 200);

    std::fs::remove_file(&live.key).expect("remove the key");
    let (r, body) = post_reload(admin, Some("sekret"));
    assert_eq!(r.status, 400, "{body}");
    let reason = body["error"].as_str().expect("a reason");
    assert!(reason.contains(&path(&live.key)), "{reason}");
    assert_eq!(
        https_get(tls, trust(), "/").expect("old TLS"),
        (200, der(&live))
    );
    assert_eq!(kept.get("/").status, 200, "a kept-alive connection goes on");

    install(&saved, &live);
    std::fs::write(&live.cert, "not a certificate\n").expect("corrupt the certificate");
    let (r, body) = post_reload(admin, Some("sekret"));
    assert_eq!(r.status, 400, "{body}");
    let reason = body["error"].as_str().expect("a reason");
    assert!(reason.contains("no PEM certificate"), "{reason}");
    lb.signal(libc::SIGHUP); // refused too, and logged; the process serves on
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        https_get(tls, trust(), "/").expect("old TLS"),
        (200, der(&live))
    );
    assert_eq!(get(lb.http(), "/").status, 200);
    assert_eq!(kept.get("/").status, 200);

    install(&saved, &live);
    let (r, body) = post_reload(admin, Some("sekret"));
    assert_eq!(r.status, 200, "good files again: {body}");
    live.cleanup();
    saved.cleanup();
}
