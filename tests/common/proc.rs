//! Starting the real `wslb` binary (serve, echo) on loopback port 0 and
//! learning its addresses from the `listening KIND ADDR` / `ready` lines it
//! prints; every process is killed when its guard drops.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running wslb process.
pub struct Proc {
    pub child: Child,
    /// Listening addresses in the order printed, with their kind (http/https).
    pub addrs: Vec<(String, SocketAddr)>,
    /// Lines printed on stdout after "ready".
    pub stdout_rx: mpsc::Receiver<String>,
}

impl Proc {
    /// Starts `wslb ARGS...` and waits (10 s at most) for "ready".
    pub fn start(args: &[&str]) -> Proc {
        Self::start_limited(args, None)
    }

    /// Like [`Proc::start`], with the child's open-file limit set to
    /// `nofile` when given (to test descriptor exhaustion).
    pub fn start_limited(args: &[&str], nofile: Option<u64>) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wslb"));
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: the closure runs in the forked child before exec and
            // only calls setrlimit, which is async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        Self::spawn(cmd, args)
    }

    /// Starts another program (an example binary) that prints the same
    /// `listening KIND ADDR` and `ready` lines, and waits for "ready".
    pub fn start_exe(exe: &std::path::Path, args: &[&str]) -> Proc {
        Self::spawn(Command::new(exe), args)
    }

    fn spawn(mut cmd: Command, args: &[&str]) -> Proc {
        let mut child = cmd
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("WSLB_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            // No access log lines in test output unless asked for
            // (WSLB_TEST_ACCESS_LOG=stderr); an --access-log flag wins.
            .env(
                "WSLB_ACCESS_LOG",
                std::env::var("WSLB_TEST_ACCESS_LOG").unwrap_or_else(|_| "off".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn wslb");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut addrs = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(line) if line == "ready" => break,
                Ok(line) => {
                    let parts: Vec<&str> = line.split_whitespace().collect();
                    if parts.len() == 3 && parts[0] == "listening" {
                        addrs.push((parts[1].to_string(), parts[2].parse().expect("addr")));
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    panic!("wslb {args:?} did not become ready (exit: {status:?})");
                }
            }
        }
        Proc {
            child,
            addrs,
            stdout_rx: rx,
        }
    }

    /// The first address of kind `kind` ("http" or "https").
    pub fn addr(&self, kind: &str) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no {kind} listener in {:?}", self.addrs))
    }

    pub fn http(&self) -> SocketAddr {
        self.addr("http")
    }

    /// Sends a signal (e.g. libc SIGTERM) to the process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits up to `timeout` for the process to exit; returns its code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts a `wslb echo` backend named `name` on a free port.
pub fn echo(name: &str) -> Proc {
    Proc::start(&["echo", "--listen", "127.0.0.1:0", "--name", name])
}

/// Starts `wslb serve` on a free port with one `--backend` per echo plus
/// `extra` flags; the admin listener is off unless `extra` sets it.
pub fn serve(backends: &[&Proc], extra: &[&str]) -> Proc {
    let urls: Vec<String> = backends
        .iter()
        .map(|b| format!("http://{}", b.http()))
        .collect();
    serve_urls(&urls, extra)
}

/// [`serve`] with backend URLs given as they are (any scheme or address).
pub fn serve_urls(urls: &[String], extra: &[&str]) -> Proc {
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--no-pin".into(),
    ];
    if !extra.contains(&"--workers") {
        args.push("--workers".into());
        args.push("2".into());
    }
    if !extra.contains(&"--admin-listen") {
        args.push("--admin-listen".into());
        args.push("off".into());
    }
    for url in urls {
        args.push("--backend".into());
        args.push(url.clone());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Proc::start(&refs)
}

/// A built example: `target/PROFILE/examples/NAME`, found from the running
/// test binary (`target/PROFILE/deps/TEST-HASH`).
pub fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/PROFILE");
    // `cargo test --test X` does not build examples: build it (a no-op
    // when it is up to date; once per test process) so that the test never
    // runs a stale one.
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        let profile_name = profile
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug");
        let profile_name = if profile_name == "debug" {
            "dev"
        } else {
            profile_name
        };
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "--profile",
                profile_name,
                "--example",
                name,
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build --example");
        assert!(status.success(), "cargo build --example {name} failed");
        built.push(name.to_string());
    }
    let path = profile.join("examples").join(name);
    assert!(path.exists(), "no example at {}", path.display());
    path
}
