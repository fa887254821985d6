//! Binary upgrade without downtime, with the real binary on loopback: a new
//! `wslb serve --upgrade` takes the running one's listening sockets over
//! its `--upgrade-socket`; clients that keep connecting meanwhile see no
//! refusal, reset or failed request; WebSocket sessions left on the old
//! process get 1001 after its drain timeout; a successor that fails to start
//! leaves the old one serving (and upgradable); upgrades chain.

mod common;
#[path = "upgrade/measure.rs"]
mod measure;
#[path = "upgrade/support.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::client::get;
use common::proc::echo;
use common::ws_client::WsConn;
use support::{eventually, http_round, Site, Traffic};

const EXIT_WAIT: Duration = Duration::from_secs(15);

/// Lets the loops run on the old process, then returns.
fn warm_up(traffic: &Traffic) {
    assert!(
        eventually(Duration::from_secs(10), || {
            traffic.tally.http_ok.load(Ordering::Relaxed) >= 20
                && traffic.tally.ws_ok.load(Ordering::Relaxed) >= 5
        }),
        "the client loops do not get through: {:?}",
        traffic.tally.failures()
    );
}

fn assert_clean(tally: &support::Tally, what: &str) {
    let failures = tally.failures();
    assert!(
        failures.is_empty(),
        "{what}: {} failures, first ones: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

#[test]
fn clients_that_keep_connecting_see_nothing_of_an_upgrade() {
    let be = echo("be");
    let site = Site::new(&be);
    let mut old = site.start(2, false, &[]);
    let traffic = Traffic::start(site.http, 2, 1);
    let admin = Traffic::admin(site.admin);
    warm_up(&traffic);
    let before = traffic.tally.http_ok.load(Ordering::Relaxed);
    let admin_before = admin.tally.http_ok.load(Ordering::Relaxed);
    // Three workers where the old one had two: a third socket joins the
    // SO_REUSEPORT group next to the two handed over.
    let new = site.start(3, true, &[]);
    assert_eq!(
        old.wait_exit(EXIT_WAIT),
        Some(0),
        "the old process exits by itself"
    );
    let after_exit = traffic.tally.http_ok.load(Ordering::Relaxed);
    assert!(eventually(Duration::from_secs(10), || {
        traffic.tally.http_ok.load(Ordering::Relaxed) >= after_exit + 20
    }));
    let tally = traffic.stop();
    assert_clean(&tally, "during the upgrade");
    let admin = admin.stop();
    assert_clean(&admin, "the admin API during the upgrade");
    assert!(admin.http_ok.load(Ordering::Relaxed) > admin_before + 5);
    assert!(tally.http_ok.load(Ordering::Relaxed) > before);
    assert!(tally.ws_ok.load(Ordering::Relaxed) > 5);
    // The new process serves the same addresses, the admin API included.
    assert_eq!(new.addr("http"), site.http);
    assert_eq!(new.addr("admin"), site.admin);
    let backends = get(site.admin, "/api/backends");
    assert_eq!(backends.status, 200, "{}", backends.text());
}

#[test]
fn sessions_on_the_old_process_get_1001_after_its_drain_timeout() {
    let be = echo("be");
    let site = Site::new(&be);
    let mut old = site.start(2, false, &[]);
    let mut sessions: Vec<WsConn<std::net::TcpStream>> =
        (0..4).map(|_| WsConn::connect(site.http)).collect();
    for (i, s) in sessions.iter_mut().enumerate() {
        s.echo_text(&format!("before {i}"));
    }
    let _new = site.start(2, true, &[]);
    let upgraded = Instant::now();
    // Still open (the drain lets them run for --drain-timeout 1s) ...
    sessions[0].echo_text("during the drain");
    // ... then closed with 1001, well before the old process gives up.
    for s in &mut sessions {
        s.set_read_timeout(Duration::from_secs(8));
        let close = s.recv_close();
        assert_eq!(close.map(|c| c.0), Some(1001), "close code");
    }
    let waited = upgraded.elapsed();
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_secs(6),
        "closed after {waited:?} (drain timeout 1s)"
    );
    assert_eq!(old.wait_exit(EXIT_WAIT), Some(0));
    // A new session goes to the new process.
    WsConn::connect(site.http).echo_text("after");
}

#[test]
fn a_successor_that_fails_to_start_leaves_the_old_one_serving() {
    let be = echo("be");
    let site = Site::new(&be);
    let mut old = site.start(2, false, &[]);
    let traffic = Traffic::start(site.http, 1, 1);
    warm_up(&traffic);
    // A missing certificate: the successor takes the sockets, then fails.
    let tls = support::free_addr().to_string();
    let missing = std::env::temp_dir().join("wslb-upgrade-no-such-cert.pem");
    let missing = missing.to_string_lossy();
    eprintln!("bad cert at {}", support::wall_clock());
    let (code, err) = site.fail(
        2,
        &[
            "--tls-listen",
            &tls,
            "--tls-cert",
            &missing,
            "--tls-key",
            &missing,
        ],
    );
    assert_ne!(code, Some(0), "the bad successor fails: {err}");
    assert!(code.is_some(), "the bad successor ends");
    assert!(err.contains("TLS") || err.contains("no-such-cert"), "{err}");
    // An address that cannot be bound: the same.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy_addr = busy.local_addr().expect("addr").to_string();
    eprintln!("busy address at {}", support::wall_clock());
    let (code, err) = site.fail(2, &["--listen", &busy_addr]);
    eprintln!("busy address done at {}", support::wall_clock());
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains(&busy_addr), "{err}");
    // `--upgrade` without `--upgrade-socket` is refused at once.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wslb"))
        .args(["serve", "--listen", "127.0.0.1:0", "--upgrade"])
        .output()
        .expect("run wslb");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--upgrade-socket"));
    // A second balancer without --upgrade may not take the socket path.
    let other = Site::new(&be);
    let mut args = other.args(1, false, &[]);
    let at = args
        .iter()
        .position(|a| a == "--upgrade-socket")
        .expect("flag")
        + 1;
    args[at] = site.socket.to_string_lossy().into_owned();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wslb"))
        .args(&args)
        .output()
        .expect("run wslb");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("a balancer is running there"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Through all of it the old process served every client ...
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        old.child.try_wait().expect("status").is_none(),
        "still running"
    );
    http_round(site.http, "/").expect("the old process serves");
    // ... and a good successor can still take over.
    eprintln!("good upgrade at {}", support::wall_clock());
    let _new = site.start(2, true, &[]);
    eprintln!("good upgrade ready at {}", support::wall_clock());
    assert_eq!(old.wait_exit(EXIT_WAIT), Some(0));
    let tally = traffic.stop();
    assert_clean(&tally, "failed upgrades, then a good one");
}

/// Waits until the loops got more plain and TLS requests through.
fn served_on(traffic: &Traffic, who: &str) {
    let tally = &traffic.tally;
    let (http, tls) = (
        tally.http_ok.load(Ordering::Relaxed),
        tally.tls_ok.load(Ordering::Relaxed),
    );
    assert!(
        eventually(Duration::from_secs(10), || {
            tally.http_ok.load(Ordering::Relaxed) >= http + 20
                && tally.tls_ok.load(Ordering::Relaxed) >= tls + 2
        }),
        "{who} does not serve plain and TLS: {:?}",
        tally.failures()
    );
}

#[test]
fn upgrades_chain_and_each_hands_over_its_socket_path() {
    let be = echo("be");
    let site = Site::new(&be);
    // A TLS listener too: its sockets are handed over like the others.
    let cert = common::certs::generate(&["localhost"]);
    let tls_addr = support::free_addr();
    let tls_at = tls_addr.to_string();
    let (cert_path, key_path) = (cert.cert.to_string_lossy(), cert.key.to_string_lossy());
    let tls = [
        "--tls-listen",
        tls_at.as_str(),
        "--tls-cert",
        &cert_path,
        "--tls-key",
        &key_path,
    ];
    let mut a = site.start(2, false, &tls);
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .expect("upgrade socket exists")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&site.socket), 0o600);
    let client = common::certs::client_config(&cert.cert_pem);
    let traffic = Traffic::start_with_tls(site.http, 2, 1, Some((tls_addr, client)));
    warm_up(&traffic);
    served_on(&traffic, "A");
    let mut b = site.start(1, true, &tls);
    assert_eq!(
        a.wait_exit(EXIT_WAIT),
        Some(0),
        "A exits after handing over"
    );
    assert!(eventually(Duration::from_secs(5), || site.socket.exists()));
    assert_eq!(mode(&site.socket), 0o600);
    served_on(&traffic, "the new process");
    let _c = site.start(2, true, &tls);
    assert_eq!(
        b.wait_exit(EXIT_WAIT),
        Some(0),
        "B exits after handing over"
    );
    served_on(&traffic, "the new process");
    let tally = traffic.stop();
    assert_clean(&tally, "A -> B -> C");
    assert_eq!(mode(&site.socket), 0o600);
    cert.cleanup();
}

#[test]
fn a_successor_running_as_another_user_is_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: starting a process as another user needs root");
        return;
    }
    let be = echo("be");
    let site = Site::new(&be);
    let mut old = site.start(1, false, &[]);
    // Past the file mode (0600), the peer's uid is checked on both ends.
    std::fs::set_permissions(&site.socket, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let (code, err) = site.fail_as(1, &[], Some(65534));
    assert_ne!(code, Some(0), "{err}");
    assert!(code.is_some(), "the refused successor ends");
    assert!(err.contains("peer runs as uid 0, not 65534"), "{err}");
    assert!(
        old.child.try_wait().expect("status").is_none(),
        "still running"
    );
    http_round(site.http, "/").expect("the old process serves");
    // The file mode alone keeps another user out: back to 0600.
    std::fs::set_permissions(&site.socket, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (code, err) = site.fail_as(1, &[], Some(65534));
    assert!(code.is_some() && code != Some(0), "{err}");
    assert!(
        err.contains("connect") && err.contains("ermission denied"),
        "{err}"
    );
    let _new = site.start(1, true, &[]);
    assert_eq!(old.wait_exit(EXIT_WAIT), Some(0));
}
