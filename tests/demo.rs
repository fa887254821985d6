//! `wslb demo` (the README's first command) on free ports: it comes up with
//! three self-registered echo backends that serve traffic, and Ctrl-C stops
//! it and its children.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::client::get;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn demo_comes_up_serves_and_stops_on_ctrl_c() {
    let (lb_port, admin_port) = (free_port(), free_port());
    let lb = format!("127.0.0.1:{lb_port}");
    let admin = format!("127.0.0.1:{admin_port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wslb"))
        .args(["demo", "--listen", &lb, "--admin-listen", &admin])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn demo");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with("wslb demo is up") => break,
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                panic!("the demo did not come up");
            }
        }
    }
    let lb_addr = lb.parse().expect("addr");
    let mut names = std::collections::HashSet::new();
    for _ in 0..9 {
        let r = get(lb_addr, "/");
        assert_eq!(r.status, 200);
        names.insert(r.text().trim().to_string());
    }
    let expected: std::collections::HashSet<String> =
        (1..=3).map(|i| format!("echo-{i}")).collect();
    assert_eq!(
        names, expected,
        "round-robin over the three registered backends"
    );

    // SAFETY: kill(2) on our own child's pid with a valid signal number.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let stop = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < stop, "the demo did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "demo exit: {status:?}");
    // Its balancer is gone with it.
    assert!(
        std::net::TcpStream::connect(lb_addr).is_err(),
        "balancer still listening"
    );
}
