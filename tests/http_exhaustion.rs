//! Descriptor exhaustion on the balancer: with its open-file limit far below
//! the load, clients get answers (200 or 503), never a 502, the backend is
//! not blamed (no failures, not ejected), and service is normal afterwards.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::admin::backends;
use common::client::get;
use common::proc::{echo, Proc};

#[test]
fn running_out_of_descriptors_sheds_load_without_blaming_the_backend() {
    let e = echo("plenty");
    let backend = format!("http://{}", e.http());
    let lb = Proc::start_limited(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--no-pin",
            "--admin-listen",
            "127.0.0.1:0",
            "--backend",
            &backend,
        ],
        Some(64),
    );
    let admin = lb.addr("admin");
    let mut conns = Vec::new();
    for _ in 0..80 {
        if let Ok(s) = TcpStream::connect(lb.http()) {
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            conns.push(s);
        }
    }
    for s in &mut conns {
        let _ = s.write_all(b"GET /delay/300 HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    let mut statuses: HashMap<String, usize> = HashMap::new();
    for s in &mut conns {
        let mut buf = [0u8; 64];
        let status = match s.read(&mut buf) {
            Ok(n) if n >= 12 => String::from_utf8_lossy(&buf[9..12]).into_owned(),
            Ok(_) => "eof".into(),
            Err(e) => format!("{:?}", e.kind()),
        };
        *statuses.entry(status).or_default() += 1;
    }
    assert!(
        statuses.get("503").copied().unwrap_or(0) > 0,
        "load was shed: {statuses:?}"
    );
    assert!(
        statuses.get("200").copied().unwrap_or(0) > 0,
        "some were served: {statuses:?}"
    );
    assert!(
        !statuses.contains_key("502"),
        "no backend error: {statuses:?}"
    );
    drop(conns);
    std::thread::sleep(Duration::from_millis(300));
    let list = backends(admin);
    assert_eq!(list[0]["failures_total"], 0, "{list:?}");
    assert_eq!(list[0]["state"], "up", "{list:?}");
    assert_eq!(get(lb.http(), "/").text().trim(), "plenty");
}
