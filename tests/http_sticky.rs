//! Sticky sessions end to end (cookie, header, client IP) through the real
//! balancer, the same stickiness for `/_lb/pick`, and the admin token.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use common::client::{get, HttpConn, Response};
use common::proc::{echo, serve};

fn get_with(lb: SocketAddr, path: &str, header: &str) -> Response {
    let mut c = HttpConn::connect(lb);
    c.send(
        format!("GET {path} HTTP/1.1\r\nHost: t\r\n{header}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    c.read_response(false).expect("response")
}

#[test]
fn a_cookie_keeps_its_backend_and_different_cookies_spread() {
    let (a, b, c) = (echo("a"), echo("b"), echo("c"));
    let lb = serve(&[&a, &b, &c], &["--sticky", "cookie:sid"]);
    let mut owner: HashMap<String, String> = HashMap::new();
    for user in 0..30 {
        let cookie = format!("Cookie: theme=dark; sid=user-{user}");
        let first = get_with(lb.http(), "/", &cookie).text().trim().to_string();
        for _ in 0..4 {
            let again = get_with(lb.http(), "/", &cookie).text().trim().to_string();
            assert_eq!(again, first, "user-{user} moved");
        }
        // The hand-out picks the same backend for the same key.
        let pick = get_with(lb.http(), "/_lb/pick", &cookie);
        let v: serde_json::Value = serde_json::from_slice(&pick.body).expect("json");
        let port = [&a, &b, &c]
            .iter()
            .find(|e| v["url"] == format!("http://{}", e.http()))
            .map(|e| get(e.http(), "/").text().trim().to_string());
        assert_eq!(
            port.as_deref(),
            Some(first.as_str()),
            "pick for user-{user}"
        );
        owner.insert(format!("user-{user}"), first);
    }
    let used: HashSet<&String> = owner.values().collect();
    assert_eq!(used.len(), 3, "30 users over 3 backends: {owner:?}");
}

#[test]
fn a_header_or_the_client_address_keeps_its_backend() {
    let (a, b, c) = (echo("a"), echo("b"), echo("c"));
    let lb = serve(&[&a, &b, &c], &["--sticky", "header:X-User"]);
    let mut used = HashSet::new();
    for user in 0..20 {
        let h = format!("X-User: {user}");
        let first = get_with(lb.http(), "/", &h).text();
        for _ in 0..3 {
            assert_eq!(get_with(lb.http(), "/", &h).text(), first);
        }
        used.insert(first);
    }
    assert!(used.len() >= 2, "header keys spread: {used:?}");

    let by_ip = serve(&[&a, &b, &c], &["--sticky", "ip"]);
    let first = get(by_ip.http(), "/").text();
    for _ in 0..10 {
        assert_eq!(
            get(by_ip.http(), "/").text(),
            first,
            "one client address, one backend"
        );
    }
}

#[test]
fn the_admin_api_wants_its_token() {
    let a = echo("a");
    let lb = serve(
        &[&a],
        &["--admin-listen", "127.0.0.1:0", "--admin-token", "s3cret"],
    );
    let admin = lb.addr("admin");
    assert_eq!(get(admin, "/api/backends").status, 401);
    assert_eq!(
        get_with(admin, "/api/backends", "Authorization: Bearer nope").status,
        401
    );
    let ok = get_with(admin, "/api/backends", "Authorization: Bearer s3cret");
    assert_eq!(ok.status, 200);
    let list: Vec<serde_json::Value> = serde_json::from_slice(&ok.body).expect("json");
    assert_eq!(list.len(), 1);
}
