//! The admin status page (`GET /`) driven in headless Chromium over the
//! DevTools protocol: against `wslb demo` it loads with no console error,
//! shows the three self-registered backends, and its Drain and Resume
//! buttons change the backend's state in `/api/backends`; against a
//! balancer with an admin token it asks for the token, refuses a wrong
//! one, then drains with the right one; hostile backend ids show as text.
//!
//! `cargo test --test status_page -- --ignored regenerate_screenshot`
//! rewrites docs/status-page.png (scripts/status_screenshot.sh).

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::admin::post_body;
use common::cdp::{kill_group, Browser};
use common::client::{get, HttpConn, Response};
use common::proc::{echo, serve, Proc};

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// `wslb demo` on free ports, in a process group of its own: Ctrl-C (its
/// own clean stop) then SIGKILL to the group when dropped.
struct Demo {
    child: Child,
    lb: SocketAddr,
    admin: SocketAddr,
}

impl Demo {
    fn start() -> Demo {
        let lb: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(env!("CARGO_BIN_EXE_wslb"))
            .args(["demo", "--listen", &lb.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn demo");
        let stdout = child.stdout.take().expect("stdout");
        let demo = Demo { child, lb, admin };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("wslb demo is up") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the demo did not come up within 30 s");
        demo
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        kill_group(self.child.id());
        let _ = self.child.wait();
    }
}

/// A GET on the admin API with an optional bearer token.
fn admin_get(admin: SocketAddr, path: &str, token: Option<&str>) -> Response {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let mut c = HttpConn::connect(admin);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: a\r\n{auth}Connection: close\r\n\r\n").as_bytes());
    c.read_response(false).expect("admin response")
}

/// Polls `/api/backends` until backend `id` is in `state` (15 s at most).
fn wait_state(admin: SocketAddr, token: Option<&str>, id: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = admin_get(admin, "/api/backends", token);
        assert_eq!(r.status, 200, "{}", r.text());
        let list: Vec<serde_json::Value> = serde_json::from_slice(&r.body).expect("JSON");
        if list.iter().any(|b| b["id"] == id && b["state"] == state) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never became {state}: {list:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A JavaScript string literal for `s`.
fn js(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The backend ids in the page's pool table, in order.
const ROW_IDS: &str = "Array.from(document.querySelectorAll('#backend-rows tr'))\
    .map((tr) => tr.dataset.backendId)";

/// Clicks the action button of backend `id`'s row, if it reads `label`.
fn click(page: &mut Browser, id: &str, label: &str) {
    let expr = format!(
        "(() => {{ const tr = Array.from(document.querySelectorAll('#backend-rows tr'))\
            .find((t) => t.dataset.backendId === {id}); \
          const b = tr && tr.querySelector('button'); \
          if (!b || b.textContent !== {label} || b.disabled) return false; \
          b.click(); return true; }})()",
        id = js(id),
        label = js(label)
    );
    page.wait_for(
        &expr,
        Duration::from_secs(10),
        &format!("a {label} button on {id}"),
    );
}

/// The page's state cell of backend `id`, once it reads `state`.
fn wait_page_state(page: &mut Browser, id: &str, state: &str) {
    let expr = format!(
        "(() => {{ const tr = Array.from(document.querySelectorAll('#backend-rows tr'))\
            .find((t) => t.dataset.backendId === {id}); \
          return !!tr && tr.querySelector('.pill').textContent === {state}; }})()",
        id = js(id),
        state = js(state)
    );
    page.wait_for(
        &expr,
        Duration::from_secs(10),
        &format!("{id} shown {state}"),
    );
}

#[test]
fn demo_page_shows_the_pool_and_drains_a_backend() {
    let demo = Demo::start();

    let r = get(demo.admin, "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let csp = r.header("content-security-policy").expect("CSP header");
    assert!(csp.starts_with("default-src 'none';"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    // Other routes keep answering JSON.
    assert_eq!(get(demo.admin, "/nope").status, 404);

    let mut page = Browser::launch(1280, 800);
    page.navigate(&format!("http://{}/", demo.admin));
    let ids = page.wait_for(
        &format!("(() => {{ const ids = {ROW_IDS}; return ids.length === 3 ? ids : null; }})()"),
        Duration::from_secs(20),
        "three backends in the table",
    );
    assert_eq!(ids, serde_json::json!(["echo-1", "echo-2", "echo-3"]));
    for id in ["echo-1", "echo-2", "echo-3"] {
        wait_page_state(&mut page, id, "up");
    }
    let live = page.wait_for(
        "document.getElementById('live-text').textContent.startsWith('live') && \
         document.getElementById('c-backends').textContent",
        Duration::from_secs(10),
        "the live indicator",
    );
    assert_eq!(live, "3");
    // Traffic through the balancer shows up in the counters.
    for _ in 0..6 {
        assert_eq!(get(demo.lb, "/").status, 200);
    }
    page.wait_for(
        "(() => { const n = Number(document.getElementById('c-rps-note').textContent\
            .split(' ')[0].replace(/,/g, '')); return n >= 6; })()",
        Duration::from_secs(10),
        "the requests counted",
    );
    let errors = page.errors();
    assert!(errors.is_empty(), "the page logged errors: {errors:?}");

    click(&mut page, "echo-2", "Drain");
    wait_state(demo.admin, None, "echo-2", "draining");
    wait_page_state(&mut page, "echo-2", "draining");
    for id in ["echo-1", "echo-3"] {
        wait_state(demo.admin, None, id, "up");
    }
    click(&mut page, "echo-2", "Resume");
    wait_state(demo.admin, None, "echo-2", "up");
    wait_page_state(&mut page, "echo-2", "up");

    let errors = page.errors();
    assert!(errors.is_empty(), "the page logged errors: {errors:?}");
}

#[test]
fn token_protected_page_asks_for_the_token_and_drains_with_it() {
    const ADMIN_TOKEN: &str = "adm-7f3c9e";
    const REGISTER_TOKEN: &str = "reg-51d2";
    let echoes = [echo("s1"), echo("s2"), echo("s3")];
    let refs: Vec<&Proc> = echoes.iter().collect();
    let lb = serve(
        &refs,
        &[
            "--admin-listen",
            "127.0.0.1:0",
            "--admin-token",
            ADMIN_TOKEN,
            "--register-token",
            REGISTER_TOKEN,
        ],
    );
    let admin = lb.addr("admin");
    // A backend whose id is markup: it must show as text.
    let hostile = "<img/src=x/onerror=window.pwned=1>";
    let mut channel = common::admin::control(lb.http(), Some(REGISTER_TOKEN)).expect("control");
    let reply = common::admin::register(&mut channel, hostile, echoes[0].http().port(), 1);
    assert_eq!(reply["type"], "registered", "{reply}");

    // The page itself needs no token; the API does.
    assert_eq!(get(admin, "/").status, 200);
    assert_eq!(get(admin, "/api/status").status, 401);

    let mut page = Browser::launch(1280, 800);
    page.navigate(&format!("http://{admin}/"));
    let form = "!document.getElementById('auth').classList.contains('hidden')";
    page.wait_for(form, Duration::from_secs(20), "the token form");

    let submit = |page: &mut Browser, token: &str| {
        page.eval(&format!(
            "document.getElementById('auth-token').value = {}; \
             document.querySelector('#auth-form button[type=submit]').click(); true",
            js(token)
        ));
    };
    submit(&mut page, "not-the-token");
    let refused = page.wait_for(
        &format!("{form} && document.getElementById('auth-error').textContent"),
        Duration::from_secs(10),
        "the wrong token refused",
    );
    assert_eq!(refused, "That token was refused.");
    submit(&mut page, ADMIN_TOKEN);

    let static_ids: Vec<String> = echoes
        .iter()
        .map(|e| format!("http://{}", e.http()))
        .collect();
    let ids = page.wait_for(
        &format!("(() => {{ const ids = {ROW_IDS}; return ids.length === 4 ? ids : null; }})()"),
        Duration::from_secs(20),
        "four backends in the table",
    );
    let mut shown: Vec<String> = serde_json::from_value(ids).expect("ids");
    shown.sort();
    let mut expected = static_ids.clone();
    expected.push(hostile.to_string());
    expected.sort();
    assert_eq!(shown, expected);
    assert_eq!(
        page.eval("sessionStorage.getItem('wslb.adminToken')"),
        ADMIN_TOKEN
    );
    // The hostile id is the text of its cell, and nothing it says ran.
    let cell = page.eval(&format!(
        "Array.from(document.querySelectorAll('#backend-rows td.id span:first-child'))\
            .map((s) => s.textContent).includes({})",
        js(hostile)
    ));
    assert_eq!(cell, true);
    assert_eq!(
        page.eval(
            "document.querySelectorAll('img').length + (window.pwned === undefined ? 0 : 100)"
        ),
        0
    );

    // A static id has ':' and '/' in it: the button's request encodes it.
    let target = &static_ids[1];
    click(&mut page, target, "Drain");
    wait_state(admin, Some(ADMIN_TOKEN), target, "draining");
    wait_page_state(&mut page, target, "draining");

    // The only errors: the browser's own notes of the first 401 answers.
    let errors = page.errors();
    let unexpected: Vec<&String> = errors
        .iter()
        .filter(|e| !(e.starts_with("log (network)") && e.contains("401")))
        .collect();
    assert!(
        unexpected.is_empty(),
        "the page logged errors: {unexpected:?}"
    );
    drop(channel);
}

/// Rewrites docs/status-page.png (or `$WSLB_SCREENSHOT`): the demo's page
/// at 1280x800 with a little WebSocket and HTTP traffic going through.
#[test]
#[ignore = "a tool: run by scripts/status_screenshot.sh"]
fn regenerate_screenshot() {
    let demo = Demo::start();
    let out = std::env::var("WSLB_SCREENSHOT")
        .unwrap_or_else(|_| format!("{}/docs/status-page.png", env!("CARGO_MANIFEST_DIR")));
    let bench = |args: &[&str]| -> Child {
        use std::os::unix::process::CommandExt;
        Command::new(env!("CARGO_BIN_EXE_wslb"))
            .args(["--log-level", "error", "bench"])
            .args(args)
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn bench")
    };
    let ws_url = format!("ws://{}/chat", demo.lb);
    let http_url = format!("http://{}/", demo.lb);
    let traffic = [
        bench(&[
            "ws", "--url", &ws_url, "-c", "8", "--rate", "240", "-d", "40",
        ]),
        bench(&[
            "http", "--url", &http_url, "-c", "4", "--rate", "150", "-d", "40",
        ]),
    ];
    let mut page = Browser::launch(1280, 800);
    page.navigate(&format!("http://{}/", demo.admin));
    page.wait_for(
        &format!("{ROW_IDS}.length === 3"),
        Duration::from_secs(20),
        "three backends",
    );
    page.wait_for(
        "document.getElementById('c-sessions').textContent === '8' && \
         document.getElementById('c-mps').textContent !== '–' && \
         document.getElementById('c-rps').textContent !== '–' && \
         Number(document.getElementById('c-rps').textContent) > 10",
        Duration::from_secs(30),
        "sessions and rates",
    );
    // Channels for the sessions, as a chat backend would set them.
    let listed = admin_get(demo.admin, "/api/connections", None);
    let sessions: serde_json::Value = serde_json::from_slice(&listed.body).expect("JSON");
    let rooms = [
        vec!["room:lobby"],
        vec!["room:lobby", "user:7"],
        vec!["news"],
    ];
    for (i, s) in sessions["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .enumerate()
    {
        let body = serde_json::json!({"id": s["id"], "channels": rooms[i % rooms.len()]});
        let r = post_body(demo.admin, "/api/subscribe", &body.to_string());
        assert_eq!(r.status, 200, "{}", r.text());
    }
    page.wait_for(
        "document.getElementById('c-channels').textContent === '3'",
        Duration::from_secs(10),
        "three channels",
    );
    // One drained backend shows the other state.
    click(&mut page, "echo-3", "Drain");
    wait_page_state(&mut page, "echo-3", "draining");
    // The notice fades after 4 s.
    std::thread::sleep(Duration::from_millis(4500));
    let errors = page.errors();
    assert!(errors.is_empty(), "the page logged errors: {errors:?}");
    let png = page.screenshot();
    std::fs::write(&out, png).expect("write screenshot");
    for child in &traffic {
        kill_group(child.id());
    }
    println!("wrote {out}");
}
