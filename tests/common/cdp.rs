//! A small Chrome DevTools Protocol driver for headless Chromium: launches
//! Debian's `chromium` on a free DevTools port with a throw-away profile,
//! speaks CDP (JSON over the tests' own WebSocket client) to one page
//! target, and collects the page's console errors, exceptions and error
//! log entries. Chromium (its whole process group) and the profile are gone
//! when the [`Browser`] drops.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wslb::proto::ws::frame::OpCode;

use super::ws_client::{Event, WsConn};

/// The longest wait for one CDP answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// A headless Chromium with one page attached.
pub struct Browser {
    child: Child,
    profile: PathBuf,
    ws: WsConn<TcpStream>,
    /// The flattened session of the page target.
    session: String,
    next_id: u64,
    /// Every event received so far (`{"method", "params"}`).
    pub events: Vec<Value>,
}

/// The `chromium` program (`$WSLB_CHROMIUM` overrides); panics with the
/// install command when it is missing.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("WSLB_CHROMIUM") {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n)))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "chromium is not installed: the status page test drives it headless. \
             Install it with `apt-get install chromium` (or set WSLB_CHROMIUM)"
        )
    })
}

impl Browser {
    /// Starts Chromium headless with a `width`x`height` window and attaches
    /// to a new blank page with the Page, Runtime and Log domains enabled.
    pub fn launch(width: u32, height: u32) -> Browser {
        let program = chromium();
        let profile = std::env::temp_dir().join(format!(
            "wslb-cdp-{}-{:x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&profile).expect("profile dir");
        let mut cmd = Command::new(program);
        use std::os::unix::process::CommandExt;
        // Its own process group, so that its helpers go with it.
        cmd.process_group(0);
        let mut child = cmd
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--mute-audio",
                "--hide-scrollbars",
                // Anything that is not loopback goes to a dead local port.
                "--proxy-server=http://127.0.0.1:9",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.display()),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                let _ = std::fs::remove_dir_all(&profile);
                panic!("cannot start chromium ({e}): apt-get install chromium")
            });
        let mut guard = Reaper(Some((child.id(), profile.clone())));
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Read every line (a full pipe would stall Chromium); hand over
            // the DevTools one.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium printed no DevTools URL within 30 s");
        let (addr, path) = split_ws_url(&url);
        let ws = WsConn::try_connect(addr, &path, &[])
            .unwrap_or_else(|r| panic!("DevTools refused the WebSocket: {r:?}"));
        // From here on the Browser's own Drop cleans up.
        guard.0 = None;
        let mut browser = Browser {
            child,
            profile,
            ws,
            session: String::new(),
            next_id: 0,
            events: Vec::new(),
        };
        let target = browser.browser_call("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = browser.browser_call(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(domain, json!({}));
        }
        // The viewport itself is `width`x`height` (the window has borders).
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
        browser
    }

    /// A command to the browser itself.
    fn browser_call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, None)
    }

    /// A command to the page; panics on a protocol error.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(method, params, Some(&session))
    }

    fn send(&mut self, method: &str, params: Value, session: Option<&str>) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        assert!(
            self.ws.send_text(&msg.to_string()),
            "DevTools connection lost"
        );
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no answer to {method} within {CALL_TIMEOUT:?}"
            );
            if let Some(answer) = self.next_message(left) {
                if answer["id"].as_u64() == Some(id) {
                    if let Some(err) = answer.get("error") {
                        panic!("{method} failed: {err}");
                    }
                    return answer["result"].clone();
                }
            }
        }
    }

    /// Reads one message (events are kept in `events`); None on timeout.
    fn next_message(&mut self, within: Duration) -> Option<Value> {
        self.ws
            .set_read_timeout(within.max(Duration::from_millis(1)));
        match self.ws.recv() {
            Event::Msg(m) if m.opcode == OpCode::Text => {
                let v: Value = serde_json::from_slice(&m.payload).expect("CDP message is JSON");
                if v.get("method").is_some() {
                    self.events.push(v.clone());
                }
                Some(v)
            }
            Event::Msg(_) => None,
            Event::Timeout => None,
            other => panic!("DevTools connection ended: {other:?}"),
        }
    }

    /// Takes in the events that arrived by now.
    pub fn pump(&mut self) {
        while self.next_message(Duration::from_millis(20)).is_some() {}
    }

    /// Opens `url` in the page and waits (20 s at most) until it has
    /// loaded.
    pub fn navigate(&mut self, url: &str) {
        let r = self.call("Page.navigate", json!({"url": url}));
        assert!(
            r.get("errorText").is_none(),
            "navigation to {url} failed: {r}"
        );
        let loaded = format!(
            "document.readyState === 'complete' && location.href === {}",
            Value::from(url)
        );
        self.wait_for(&loaded, Duration::from_secs(20), &format!("{url} loaded"));
    }

    /// Evaluates `expr` in the page (promises awaited) and returns its value;
    /// panics if it throws.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true, "userGesture": true}),
        );
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("`{expr}` threw: {ex}");
        }
        r["result"]["value"].clone()
    }

    /// Evaluates `expr` until it is truthy (non-null, non-false, non-empty),
    /// every 100 ms for at most `within`; returns the value or panics
    /// naming `what`.
    pub fn wait_for(&mut self, expr: &str, within: Duration, what: &str) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.eval(expr);
            let truthy = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let errors = self.errors();
                panic!("timed out after {within:?} waiting for {what} (last: {v}); page errors: {errors:?}");
            }
            self.pump();
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The page's errors so far: console.error calls, uncaught exceptions
    /// and error-level log entries (failed loads, CSP refusals), as text.
    pub fn errors(&mut self) -> Vec<String> {
        self.pump();
        self.events.iter().filter_map(error_text).collect()
    }

    /// A PNG of the page as it shows now.
    pub fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine as _;
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": false}),
        );
        let data = r["data"].as_str().expect("screenshot data");
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("screenshot base64")
    }
}

/// The text of an error event, None for any other event.
fn error_text(event: &Value) -> Option<String> {
    let p = &event["params"];
    match event["method"].as_str()? {
        "Runtime.consoleAPICalled" if p["type"] == "error" || p["type"] == "assert" => {
            let args: Vec<String> = p["args"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| {
                            x.get("value")
                                .map(|v| v.to_string())
                                .or_else(|| x["description"].as_str().map(String::from))
                                .unwrap_or_default()
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(format!("console.error: {}", args.join(" ")))
        }
        "Runtime.exceptionThrown" => {
            let d = &p["exceptionDetails"];
            let what = d["exception"]["description"]
                .as_str()
                .or(d["text"].as_str())
                .unwrap_or("?");
            Some(format!("exception: {what}"))
        }
        "Log.entryAdded" if p["entry"]["level"] == "error" => Some(format!(
            "log ({}): {} {}",
            p["entry"]["source"].as_str().unwrap_or("?"),
            p["entry"]["text"].as_str().unwrap_or("?"),
            p["entry"]["url"].as_str().unwrap_or("")
        )),
        _ => None,
    }
}

/// `ws://HOST:PORT/PATH` as an address and a path.
fn split_ws_url(url: &str) -> (SocketAddr, String) {
    let rest = url
        .strip_prefix("ws://")
        .unwrap_or_else(|| panic!("not a ws:// URL: {url}"));
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let addr = host
        .parse()
        .unwrap_or_else(|_| panic!("DevTools address is not IP:PORT: {host}"));
    (addr, format!("/{path}"))
}

/// Until the [`Browser`] is built: kills the process group led by this
/// id and removes the profile when dropped (a launch that failed).
struct Reaper(Option<(u32, PathBuf)>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some((pid, profile)) = self.0.take() {
            kill_group(pid);
            let _ = std::fs::remove_dir_all(profile);
        }
    }
}

/// SIGKILL to the process group led by `pid` (a child started with
/// `process_group(0)`).
pub fn kill_group(pid: u32) {
    // SAFETY: kill(2) on the process group this test created for its own
    // child, with a valid signal number.
    unsafe {
        libc::kill(-(pid as i32), libc::SIGKILL);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(self.child.id());
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
