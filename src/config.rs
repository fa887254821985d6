//! Validated configuration: raw command-line values are converted here, once,
//! into real types (addresses, durations, policies); the rest of the code never
//! parses strings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) mod preflight;
pub use preflight::{Preflight, PreflightError};

pub(crate) use crate::pool::cidr::cidr_list_contains;
pub use crate::pool::cidr::Cidr;
pub use crate::pool::{Algorithm, HealthCheck, StickyMode};
pub use crate::proto::ws::OriginPolicy;
pub use crate::tls::{parse_sni_arg, CertPair, TlsSettings};

/// How WebSocket sessions are relayed after the 101.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsMode {
    /// Frames parsed both ways and forwarded without re-encoding; limits,
    /// pings and meaningful close codes.
    Inspect,
    /// Bytes both ways, nothing parsed.
    Tunnel,
}

impl std::str::FromStr for WsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "inspect" => Ok(WsMode::Inspect),
            "tunnel" => Ok(WsMode::Tunnel),
            other => Err(format!(
                "unknown ws mode {other:?} (expected inspect or tunnel)"
            )),
        }
    }
}

/// How clients that cannot open a WebSocket are served (`--fallback`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// Not at all: such a request is proxied as plain HTTP.
    Off,
    /// Over Server-Sent Events: the balancer holds the WebSocket session
    /// to the backend on the client's behalf.
    Sse,
}

impl std::str::FromStr for Fallback {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" | "none" => Ok(Fallback::Off),
            "sse" => Ok(Fallback::Sse),
            other => Err(format!("unknown fallback {other:?} (expected sse or off)")),
        }
    }
}

/// Which sessions a backend's own messaging requests (over its control
/// channel) may reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendPublish {
    /// Every session on the balancer (one backend broadcasts to the pool).
    All,
    /// Only the sessions the backend itself serves.
    Local,
}

impl std::str::FromStr for BackendPublish {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(BackendPublish::All),
            "local" => Ok(BackendPublish::Local),
            other => Err(format!(
                "unknown backend publish scope {other:?} (expected all or local)"
            )),
        }
    }
}

/// Everything `wslb serve` needs, validated.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Plain HTTP/WebSocket listen addresses.
    pub listen: Vec<SocketAddr>,
    /// TLS listen addresses (need `tls`).
    pub tls_listen: Vec<SocketAddr>,
    /// Certificates for the TLS listeners.
    pub tls: Option<TlsSettings>,
    /// Worker threads, one runtime each (at least 1).
    pub workers: usize,
    /// Pin each worker to a core.
    pub pin: bool,
    /// Static backends: `HOST:PORT` and weight.
    pub backends: Vec<(String, u32)>,
    /// How a backend is picked.
    pub algorithm: Algorithm,
    /// Sticky sessions: what keeps a client on one backend.
    pub sticky: StickyMode,
    /// Largest request or response head accepted, in bytes.
    pub max_header_bytes: usize,
    /// Most client connections open at once, over all workers.
    pub max_connections: usize,
    /// Time a client has to send a whole request head (slowloris guard).
    pub client_header_timeout: Duration,
    /// Time allowed to connect to a backend.
    pub backend_connect_timeout: Duration,
    /// Time allowed for a backend to answer, and between reads of its response.
    pub backend_timeout: Duration,
    /// Idle keep-alive time of a client connection between requests.
    pub idle_timeout: Duration,
    /// On drain: time allowed for in-flight work before connections close.
    pub drain_timeout: Duration,
    /// Other backends tried when one refuses the connection.
    pub max_retries: usize,
    /// How WebSocket sessions are relayed.
    pub ws_mode: WsMode,
    /// Largest WebSocket message in inspect mode, in bytes (close 1009 beyond it).
    pub max_message_size: u64,
    /// Validate UTF-8 of text messages in inspect mode (close 1007).
    pub ws_validate_utf8: bool,
    /// Ping idle WebSocket clients after this long (`None`: never).
    pub ws_ping_interval: Option<Duration>,
    /// Time a client has to answer a ping before it is closed.
    pub ws_pong_timeout: Duration,
    /// Tunnel mode: close a session with no bytes either way for this long (`None`: never).
    pub ws_tunnel_idle_timeout: Option<Duration>,
    /// Time allowed for the backend's answer to a WebSocket upgrade.
    pub ws_handshake_timeout: Duration,
    /// Origins allowed to open WebSocket sessions (empty: all).
    pub allowed_origins: OriginPolicy,
    /// Admin API listen address (`None`: no admin API).
    pub admin_listen: Option<SocketAddr>,
    /// Bearer token the admin API requires.
    pub admin_token: Option<String>,
    /// A separate listener for the backend control channel.
    pub control_listen: Option<SocketAddr>,
    /// Bearer token backends present to register.
    pub register_token: Option<String>,
    /// A registered backend silent for this long leaves the pool.
    pub heartbeat_timeout: Duration,
    /// This balancer's id, reported to registering backends.
    pub balancer_id: String,
    /// Networks registered bindings must fall in (empty: any address that
    /// is not in a refused range).
    pub allow_backend_cidr: Vec<Cidr>,
    /// Most backends in the table at once (static and registered).
    pub max_backends: usize,
    /// Idle pooled backend connections older than this are closed.
    pub backend_idle_timeout: Duration,
    /// Grace time for a request body; after it, the body must keep up
    /// `client_body_min_rate`.
    pub client_body_timeout: Duration,
    /// Bytes per second a request body must average after the grace time
    /// (0: the grace time is a total deadline).
    pub client_body_min_rate: u64,
    /// Client connections (HTTP and WebSocket) open at once from one IP
    /// address, over all workers (`None`: no limit).
    pub max_connections_per_ip: Option<usize>,
    /// Peers whose forwarding headers are kept and appended to; from anyone
    /// else they are replaced.
    pub trusted_proxies: Vec<Cidr>,
    /// Admin connections open at once.
    pub admin_max_connections: usize,
    /// Time allowed for one whole admin request (head and body).
    pub admin_request_timeout: Duration,
    /// Bytes of injected messages (publish, send) a session may have
    /// waiting; past it the session is closed with 1008.
    pub ws_send_queue: u64,
    /// The request header that tells the backend a session's connection id.
    pub conn_id_header: String,
    /// Which sessions a backend's messaging requests may reach.
    pub backend_publish: BackendPublish,
    /// Active health checks of static backends (`None`: off; registered
    /// backends keep their heartbeats).
    pub health_check: Option<HealthCheck>,
    /// A unix socket (mode 0600, our uid only) on which this balancer hands
    /// its listening sockets to a successor started with `upgrade`.
    pub upgrade_socket: Option<std::path::PathBuf>,
    /// Take the listening sockets of the balancer serving on
    /// `upgrade_socket` instead of binding them, then tell it to drain
    /// (binary upgrade without downtime). Needs `upgrade_socket`.
    pub upgrade: bool,
    /// PEM CA bundle TLS backends are verified against (`None`: the
    /// system roots).
    pub backend_ca: Option<PathBuf>,
    /// Bytes per second each client connection may move in each direction
    /// (0: no limit).
    pub throttle_bps: u64,
    /// Where the access log goes (one line per request and per session).
    pub access_log: AccessLogTarget,
    /// The access log's line format.
    pub access_log_format: AccessLogFormat,
    /// `--fallback`: serve clients without WebSocket over Server-Sent Events.
    pub fallback: Fallback,
    /// `retry:` the event stream tells its client to wait before reconnecting.
    pub fallback_retry: Duration,
    /// How long a fallback session waits for its dropped stream to come back.
    pub fallback_resume_timeout: Duration,
    /// Bytes of events a fallback session keeps for a resume.
    pub fallback_buffer: u64,
}

impl Default for ServeConfig {
    /// The defaults `wslb serve` documents for every flag, with nothing to
    /// listen on and no admin API (an embedding program opts in to both).
    fn default() -> Self {
        ServeConfig {
            listen: Vec::new(),
            tls_listen: Vec::new(),
            tls: None,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pin: true,
            backends: Vec::new(),
            algorithm: Algorithm::Random,
            sticky: StickyMode::None,
            max_header_bytes: 16 * 1024,
            max_connections: 9000,
            client_header_timeout: Duration::from_secs(10),
            backend_connect_timeout: Duration::from_secs(2),
            backend_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(10),
            max_retries: 2,
            ws_mode: WsMode::Inspect,
            max_message_size: 16 << 20,
            ws_validate_utf8: false,
            ws_ping_interval: Some(Duration::from_secs(30)),
            ws_pong_timeout: Duration::from_secs(10),
            ws_tunnel_idle_timeout: Some(Duration::from_secs(3600)),
            ws_handshake_timeout: Duration::from_secs(10),
            allowed_origins: OriginPolicy::default(),
            admin_listen: None,
            admin_token: None,
            control_listen: None,
            register_token: None,
            heartbeat_timeout: Duration::from_secs(15),
            balancer_id: format!("lb-{:08x}", fastrand::u32(..)),
            allow_backend_cidr: Vec::new(),
            max_backends: 1000,
            backend_idle_timeout: Duration::from_secs(4),
            client_body_timeout: Duration::from_secs(30),
            client_body_min_rate: 8 * 1024,
            max_connections_per_ip: Some(1000),
            trusted_proxies: Vec::new(),
            admin_max_connections: 64,
            admin_request_timeout: Duration::from_secs(10),
            ws_send_queue: 1 << 20,
            conn_id_header: "X-Wslb-Conn".to_string(),
            backend_publish: BackendPublish::All,
            health_check: None,
            upgrade_socket: None,
            upgrade: false,
            backend_ca: None,
            throttle_bps: 0,
            access_log: AccessLogTarget::Stderr,
            access_log_format: AccessLogFormat::Text,
            fallback: Fallback::Off,
            fallback_retry: Duration::from_secs(2),
            fallback_resume_timeout: Duration::from_secs(30),
            fallback_buffer: 1 << 20,
        }
    }
}

impl ServeConfig {
    /// Checks what no single value can: something to listen on, TLS
    /// settings for TLS listeners, and the bounds of the counts. The
    /// messages name the `wslb serve` flags.
    pub fn validate(&self) -> Result<(), String> {
        if self.listen.is_empty() && self.tls_listen.is_empty() {
            return Err("nothing to listen on: give --listen ADDR or --tls-listen ADDR".into());
        }
        if !self.tls_listen.is_empty() {
            match &self.tls {
                Some(t) if t.default_cert.is_some() || !t.sni.is_empty() => {}
                _ => return Err("--tls-listen needs --tls-cert/--tls-key or --tls-sni".into()),
            }
        }
        if self.workers == 0 {
            return Err("--workers must be at least 1".into());
        }
        if !(1024..=1 << 20).contains(&self.max_header_bytes) {
            return Err("--max-header-bytes must be between 1k and 1m".into());
        }
        if self.max_connections == 0 {
            return Err("--max-connections must be at least 1".into());
        }
        if self.max_backends == 0 {
            return Err("--max-backends must be at least 1".into());
        }
        if self.ws_send_queue == 0 || self.ws_send_queue >= 1 << 32 {
            return Err("--ws-send-queue must be between 1 byte and 4 GiB".into());
        }
        if self.fallback_buffer < 1024 || self.fallback_buffer >= 1 << 32 {
            return Err("--fallback-buffer must be between 1k and 4 GiB".into());
        }
        if self.fallback_retry > Duration::from_secs(3600) {
            return Err("--fallback-retry must be at most 1h".into());
        }
        if let Some(check) = &self.health_check {
            check.validate()?;
        }
        let header = self.conn_id_header.as_bytes();
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if header.is_empty() || header.len() > 64 || !header.iter().all(|&b| token(b)) {
            return Err(format!(
                "--conn-id-header {:?}: not a header name",
                self.conn_id_header
            ));
        }
        if self.upgrade && self.upgrade_socket.is_none() {
            return Err("--upgrade needs --upgrade-socket PATH (the running balancer's)".into());
        }
        if self.admin_max_connections == 0 {
            return Err("--admin-max-connections must be at least 1".into());
        }
        if self.backends.len() > self.max_backends {
            return Err(format!(
                "{} static backends but --max-backends is {}",
                self.backends.len(),
                self.max_backends
            ));
        }
        Ok(())
    }
}

/// Parses a duration given as plain seconds (`2`, `0.5`) or with a unit
/// (`500ms`, `2s`, `1m`, `1h`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "invalid duration {s:?}: expected e.g. 2, 500ms, 2s, 1m"
        ));
    }
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: bad number"))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "us" => 0.000_001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("invalid duration {s:?}: unknown unit {other:?}")),
    };
    let secs = value * scale;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("invalid duration {s:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a byte size: `65536`, `64k`, `16m`, `1g` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    let (num, mult) = match lower.trim_end_matches(['b', 'i']).chars().last() {
        Some('k') => (&lower[..lower.find('k').unwrap_or(0)], 1u64 << 10),
        Some('m') => (&lower[..lower.find('m').unwrap_or(0)], 1u64 << 20),
        Some('g') => (&lower[..lower.find('g').unwrap_or(0)], 1u64 << 30),
        _ => (lower.as_str(), 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected e.g. 65536, 64k, 16m"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("invalid size {s:?}: too large"))
}

/// Parses `http://HOST:PORT[,weight=N]` (also `ws://`, and `https://`,
/// `wss://` for TLS backends) into (url, weight).
pub fn parse_backend_arg(s: &str) -> Result<(String, u32), String> {
    let mut parts = s.split(',');
    let url = parts.next().unwrap_or_default().trim().to_string();
    let mut weight = 1u32;
    for opt in parts {
        match opt.trim().split_once('=') {
            Some(("weight", w)) => {
                weight = w
                    .parse()
                    .ok()
                    .filter(|w| (1..=1000).contains(w))
                    .ok_or_else(|| format!("backend {s:?}: weight must be 1..=1000"))?;
            }
            _ => return Err(format!("backend {s:?}: unknown option {opt:?}")),
        }
    }
    let lower = url.to_ascii_lowercase();
    if !["http://", "ws://", "https://", "wss://"]
        .iter()
        .any(|scheme| lower.starts_with(scheme))
    {
        return Err(format!(
            "backend {s:?}: expected http://HOST:PORT or ws://HOST:PORT (https:// or wss:// for TLS)"
        ));
    }
    Ok((url, weight))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_and_without_units() {
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("0.25").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536").unwrap(), 65536);
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert_eq!(parse_size("16m").unwrap(), 16 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn backend_args() {
        assert_eq!(
            parse_backend_arg("http://127.0.0.1:80,weight=3").unwrap(),
            ("http://127.0.0.1:80".to_string(), 3)
        );
        assert_eq!(parse_backend_arg("ws://h:1").unwrap().1, 1);
        assert!(parse_backend_arg("http://h:1,weight=0").is_err());
        assert!(parse_backend_arg("ftp://h:1").is_err());
        assert_eq!(parse_backend_arg("https://h:1").unwrap().1, 1);
        assert_eq!(parse_backend_arg("WSS://h:1,weight=2").unwrap().1, 2);
        assert!(parse_backend_arg("http://h:1,speed=3").is_err());
    }
}

/// Where the access log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// The process's standard error.
    Stderr,
    /// No access log.
    Off,
    /// A file, appended to and reopened on request (SIGUSR1 for `wslb serve`).
    File(std::path::PathBuf),
}

impl std::str::FromStr for AccessLogTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "stderr" => Ok(AccessLogTarget::Stderr),
            "off" => Ok(AccessLogTarget::Off),
            "" => Err("empty access log path (expected stderr, off or a file path)".into()),
            path => Ok(AccessLogTarget::File(path.into())),
        }
    }
}

/// The access log's line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// One `key=value` line, strings quoted and escaped.
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for AccessLogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(AccessLogFormat::Text),
            "json" => Ok(AccessLogFormat::Json),
            other => Err(format!(
                "unknown access log format {other:?} (expected text or json)"
            )),
        }
    }
}
