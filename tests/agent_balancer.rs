//! The agent against the real balancer: `wslb echo --register` joins the
//! pool, reports its live connection count, and re-registers by itself after
//! the balancer restarts; `wslb agent` registers a backend running elsewhere
//! and deregisters it on SIGTERM.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::admin::{backend, wait_for};
use common::client::get;
use common::proc::{echo, Proc};
use common::ws_client::WsConn;

const TOKEN: &str = "agent-t0ken";
const WAIT: Duration = Duration::from_secs(10);

fn balancer(listen: &str) -> Proc {
    Proc::start(&[
        "serve",
        "--listen",
        listen,
        "--admin-listen",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--no-pin",
        "--register-token",
        TOKEN,
        "--heartbeat-timeout",
        "1500ms",
    ])
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn control_url(lb: &Proc) -> String {
    format!("ws://{}/_lb/register", lb.http())
}

/// `wslb agent ARGS...` (it prints no ready line; the admin API tells).
struct Agent(Child);

impl Agent {
    fn start(args: &[&str]) -> Agent {
        let child = Command::new(env!("CARGO_BIN_EXE_wslb"))
            .arg("agent")
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("WSLB_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn wslb agent");
        Agent(child)
    }

    fn terminate(&mut self) -> Option<i32> {
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn echo_registers_itself_and_reports_its_connections() {
    let lb = balancer("127.0.0.1:0");
    let admin = lb.addr("admin");
    let url = control_url(&lb);
    let be = Proc::start(&[
        "echo",
        "--listen",
        "127.0.0.1:0",
        "--name",
        "self-reg",
        "--register",
        &url,
        "--token",
        TOKEN,
        "--id",
        "echo-a",
        "--weight",
        "3",
    ]);
    wait_for(admin, WAIT, "echo-a registered", |l| {
        l.iter().any(|b| b["id"] == "echo-a")
    });
    let info = backend(admin, "echo-a").expect("listed");
    assert_eq!(
        info["bindings"][0],
        format!("http://127.0.0.1:{}", be.http().port()),
        "{info}"
    );
    assert_eq!(info["weight"], 3, "{info}");
    let r = get(lb.http(), "/");
    assert_eq!((r.status, r.text().trim()), (200, "self-reg"));

    // A WebSocket session through the balancer is one connection at the echo.
    let mut ws = WsConn::connect(lb.http());
    ws.echo_text("hello");
    wait_for(admin, WAIT, "reported load >= 1", |l| {
        l.iter()
            .any(|b| b["id"] == "echo-a" && b["reported_load"].as_u64().unwrap_or(0) >= 1)
    });
    drop(ws);
}

#[test]
fn echo_registers_again_after_the_balancer_restarts() {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut lb = balancer(&listen);
    let url = control_url(&lb);
    let _be = Proc::start(&[
        "echo",
        "--listen",
        "127.0.0.1:0",
        "--name",
        "phoenix",
        "--register",
        &url,
        "--token",
        TOKEN,
        "--id",
        "echo-p",
        "--auto-restart",
        "200ms",
        "--max-backoff",
        "1s",
    ]);
    wait_for(lb.addr("admin"), WAIT, "echo-p registered", |l| {
        l.iter().any(|b| b["id"] == "echo-p")
    });
    lb.kill();
    std::thread::sleep(Duration::from_millis(500));
    let lb = balancer(&listen);
    let restarted = std::time::Instant::now();
    let admin = lb.addr("admin");
    wait_for(admin, WAIT, "echo-p registered again", |l| {
        l.iter().any(|b| b["id"] == "echo-p")
    });
    // Back within the restart interval plus the capped backoff (and slack
    // for a loaded machine).
    let took = restarted.elapsed();
    assert!(
        took < Duration::from_millis(200 + 1000 + 1500),
        "re-registered after {took:?}"
    );
    let r = get(lb.http(), "/");
    assert_eq!((r.status, r.text().trim()), (200, "phoenix"));
}

#[test]
fn agent_command_registers_a_backend_and_deregisters_on_sigterm() {
    let lb = balancer("127.0.0.1:0");
    let admin = lb.addr("admin");
    let be = echo("remote-be");
    let port = be.http().port().to_string();
    let url = control_url(&lb);
    let mut agent = Agent::start(&[
        "--lb",
        &url,
        "--token",
        TOKEN,
        "--id",
        "ext-1",
        "--advertise-port",
        &port,
        "--load",
        "5",
        "--auto-restart",
        "200ms",
        "--metadata",
        r#"{"role":"test"}"#,
    ]);
    wait_for(admin, WAIT, "ext-1 registered with its load", |l| {
        l.iter()
            .any(|b| b["id"] == "ext-1" && b["reported_load"] == 5)
    });
    let info = backend(admin, "ext-1").expect("listed");
    assert_eq!(info["metadata"]["role"], "test", "{info}");
    let r = get(lb.http(), "/");
    assert_eq!((r.status, r.text().trim()), (200, "remote-be"));

    assert_eq!(agent.terminate(), Some(0), "agent exits cleanly on SIGTERM");
    wait_for(admin, WAIT, "ext-1 gone", |l| {
        !l.iter().any(|b| b["id"] == "ext-1")
    });
}

#[test]
fn agent_with_a_wrong_token_keeps_trying_and_registers_nothing() {
    let lb = balancer("127.0.0.1:0");
    let admin = lb.addr("admin");
    let url = control_url(&lb);
    let mut agent = Agent::start(&[
        "--lb",
        &url,
        "--token",
        "wrong",
        "--id",
        "ext-2",
        "--advertise-port",
        "9",
        "--auto-restart",
        "100ms",
        "--max-backoff",
        "300ms",
    ]);
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        agent.0.try_wait().expect("try_wait").is_none(),
        "agent must keep running after 401"
    );
    assert!(backend(admin, "ext-2").is_none());
    assert_eq!(agent.terminate(), Some(0));
}

#[test]
fn agent_registers_over_wss_trusting_a_ca_file() {
    let cert = common::certs::generate(&["127.0.0.1", "localhost"]);
    let (cert_path, key_path) = (
        cert.cert.display().to_string(),
        cert.key.display().to_string(),
    );
    let lb = Proc::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        &cert_path,
        "--tls-key",
        &key_path,
        "--admin-listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--no-pin",
        "--register-token",
        TOKEN,
    ]);
    let admin = lb.addr("admin");
    let be = echo("tls-reg");
    let port = be.http().port().to_string();
    let url = format!("wss://{}/_lb/register", lb.addr("https"));
    let _agent = Agent::start(&[
        "--lb",
        &url,
        "--token",
        TOKEN,
        "--id",
        "ext-tls",
        "--advertise-port",
        &port,
        "--tls-ca",
        &cert_path,
    ]);
    wait_for(admin, WAIT, "ext-tls registered over wss", |l| {
        l.iter().any(|b| b["id"] == "ext-tls")
    });
    cert.cleanup();
}

#[test]
fn an_agent_registered_with_two_balancers_shows_in_both() {
    let lb1 = balancer("127.0.0.1:0");
    let lb2 = balancer("127.0.0.1:0");
    let (u1, u2) = (control_url(&lb1), control_url(&lb2));
    let _be = Proc::start(&[
        "echo",
        "--listen",
        "127.0.0.1:0",
        "--name",
        "twin",
        "--register",
        &u1,
        "--register",
        &u2,
        "--token",
        TOKEN,
        "--id",
        "echo-twin",
    ]);
    for lb in [&lb1, &lb2] {
        wait_for(lb.addr("admin"), WAIT, "echo-twin registered", |l| {
            l.iter()
                .any(|b| b["id"] == "echo-twin" && b["source"] == "registered")
        });
        let r = get(lb.http(), "/");
        assert_eq!((r.status, r.text().trim()), (200, "twin"));
    }
}
