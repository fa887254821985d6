//! Command-line definitions (clap) for every subcommand, and their conversion
//! into validated configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use wslb::agent::BalancerUrl;
use wslb::config::{
    parse_backend_arg, parse_duration, parse_size, parse_sni_arg, AccessLogFormat, AccessLogTarget,
    Algorithm, BackendPublish, CertPair, Cidr, Fallback, HealthCheck, OriginPolicy, ServeConfig,
    StickyMode, TlsSettings, WsMode,
};

/// wslb: a thread-per-core WebSocket and HTTP/1.1 load balancer.
#[derive(Parser, Debug)]
#[command(name = "wslb", version, about, long_about = None)]
pub struct Cli {
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
    /// Log format: text or json.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Write the log (not the access log) to this file instead of stderr.
    #[arg(long, global = true, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the load balancer.
    Serve(Box<ServeArgs>),
    /// Run the demo/test backend: HTTP and WebSocket echo.
    Echo(EchoArgs),
    /// Start a balancer on 127.0.0.1:8080 with three self-registering echo backends.
    Demo(crate::cmd::demo::DemoArgs),
    /// Load generator for HTTP/1.1 and WebSocket.
    Bench(crate::cmd::bench::BenchArgs),
    /// Register a backend that runs elsewhere with balancers, and keep it registered.
    Agent(AgentArgs),
    /// Publish, send, ping, close, subscribe or unsubscribe through balancers' admin APIs.
    Publish(Box<crate::cmd::publish::PublishArgs>),
    /// Measurement tool, not a proxy: the cost floor of perf/run.sh.
    ///
    /// One io_uring thread forwarding bytes between each client and a
    /// pooled connection to one backend, with no parsing, no limits and no
    /// timeouts: what moving the bytes through the kernel costs, to compare
    /// wslb and other proxies with. Do not put it in front of anything.
    Floor(FloorArgs),
    /// Check a `wslb serve --config` file (keys, values, certificates,
    /// backends) without starting anything; exit 0 when it would start.
    CheckConfig(CheckConfigArgs),
}

/// Arguments of `wslb check-config`.
#[derive(Args, Debug, Clone)]
pub struct CheckConfigArgs {
    /// The TOML configuration file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Flags of `wslb floor`.
#[derive(Args, Debug, Clone)]
pub struct FloorArgs {
    /// Listen address.
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The one backend: IP:PORT.
    #[arg(long, value_name = "ADDR")]
    pub backend: SocketAddr,
}

/// Flags of `wslb serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Plain HTTP/WebSocket listen address (repeatable).
    #[arg(long = "listen", value_name = "ADDR")]
    pub listen: Vec<SocketAddr>,
    /// TLS listen address (repeatable); needs --tls-cert/--tls-key or --tls-sni.
    #[arg(long = "tls-listen", value_name = "ADDR")]
    pub tls_listen: Vec<SocketAddr>,
    /// PEM certificate chain for TLS listeners.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, RSA or EC) matching --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Extra certificate chosen by SNI: HOST=CERT,KEY (repeatable).
    #[arg(long = "tls-sni", value_name = "HOST=CERT,KEY")]
    pub tls_sni: Vec<String>,
    /// Worker threads, one runtime each [default: number of cores].
    #[arg(long)]
    pub workers: Option<usize>,
    /// Do not pin workers to cores.
    #[arg(long)]
    pub no_pin: bool,
    /// Static backend http://HOST:PORT[,weight=N] (repeatable; ws:// accepted;
    /// https:// or wss:// for TLS to the backend).
    #[arg(long = "backend", value_name = "URL", value_parser = parse_backend_arg)]
    pub backends: Vec<(String, u32)>,
    /// Pick algorithm: random, round-robin, p2c, fewest-connections.
    #[arg(long, default_value = "random")]
    pub algorithm: Algorithm,
    /// Sticky sessions: none, ip, cookie:NAME, header:NAME.
    #[arg(long, default_value = "none")]
    pub sticky: StickyMode,
    /// Largest request or response head accepted (bytes; k/m suffixes).
    #[arg(long, default_value = "16k", value_parser = parse_size)]
    pub max_header_bytes: u64,
    /// Most client connections open at once, over all workers.
    #[arg(long, default_value_t = 9000)]
    pub max_connections: usize,
    /// Time allowed for a client to send a whole request head (slowloris guard).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub client_header_timeout: Duration,
    /// Time allowed to connect to a backend.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub backend_connect_timeout: Duration,
    /// Time allowed for a backend to answer (and between reads of its response).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub backend_timeout: Duration,
    /// Idle keep-alive time of a client connection between requests.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// On SIGTERM/SIGINT: time allowed for in-flight work before closing.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Other backends tried when one refuses the connection.
    #[arg(long, default_value_t = 2)]
    pub max_retries: usize,
    /// WebSocket relay mode: inspect (frame-aware) or tunnel (bytes).
    #[arg(long, default_value = "inspect")]
    pub ws_mode: WsMode,
    /// Largest WebSocket message in inspect mode (close 1009 beyond it).
    #[arg(long, default_value = "16m", value_parser = parse_size)]
    pub max_message_size: u64,
    /// Validate UTF-8 of text messages in inspect mode (close 1007).
    #[arg(long)]
    pub ws_validate_utf8: bool,
    /// Ping idle WebSocket clients after this long (0 = never).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub ws_ping_interval: Duration,
    /// Time a client has to answer a ping before it is closed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub ws_pong_timeout: Duration,
    /// Tunnel mode: close a session with no bytes either way for this long
    /// (0 = never).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ws_tunnel_idle_timeout: Duration,
    /// Time allowed for the backend's answer to a WebSocket upgrade.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub ws_handshake_timeout: Duration,
    /// Allowed Origin values for WebSocket upgrades, comma separated
    /// (e.g. https://app.example.com,http://localhost:*); empty allows all.
    #[arg(long, value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Admin API listen address (set to `off` to disable).
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin_listen: String,
    /// Bearer token required by the admin API.
    #[arg(long, env = "WSLB_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// Separate listener for the backend control channel.
    #[arg(long, value_name = "ADDR")]
    pub control_listen: Option<SocketAddr>,
    /// Bearer token backends present to register.
    #[arg(long, env = "WSLB_REGISTER_TOKEN")]
    pub register_token: Option<String>,
    /// A registered backend silent for this long leaves the pool.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub heartbeat_timeout: Duration,
    /// This balancer's id, reported to registering backends [default: random].
    #[arg(long)]
    pub balancer_id: Option<String>,
    /// Network registered bindings must fall in, e.g. 10.0.0.0/8 (repeatable)
    /// [default: any address outside the refused ranges].
    #[arg(long = "allow-backend-cidr", value_name = "CIDR")]
    pub allow_backend_cidr: Vec<Cidr>,
    /// Most backends in the pool at once, static and registered.
    #[arg(long, default_value_t = 1000)]
    pub max_backends: usize,
    /// Close pooled idle backend connections after this long (keep it below
    /// the backends' own keep-alive timeout).
    #[arg(long, default_value = "4s", value_parser = parse_duration)]
    pub backend_idle_timeout: Duration,
    /// Grace time for a request body; after it the body must keep up
    /// --client-body-min-rate (408 otherwise).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub client_body_timeout: Duration,
    /// Average bytes per second a request body must keep up after
    /// --client-body-timeout (0: that timeout is a total deadline).
    #[arg(long, default_value = "8k", value_parser = parse_size)]
    pub client_body_min_rate: u64,
    /// Client connections (HTTP and WebSocket) open at once from one IP
    /// address, over all workers (0 = no limit).
    #[arg(long, default_value_t = 1000)]
    pub max_connections_per_ip: usize,
    /// Proxies whose X-Forwarded-For/-Proto, Forwarded and X-Real-IP are kept
    /// and appended to, comma separated CIDRs; from others they are replaced.
    #[arg(long, value_delimiter = ',', value_name = "CIDR,...")]
    pub trusted_proxies: Vec<Cidr>,
    /// Admin API connections open at once.
    #[arg(long, default_value_t = 64)]
    pub admin_max_connections: usize,
    /// Time allowed for one whole admin API request.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub admin_request_timeout: Duration,
    /// Bytes of published or sent messages a WebSocket session may have
    /// waiting; a session over it is closed with 1008 (a slow consumer).
    #[arg(long, default_value = "1m", value_parser = parse_size)]
    pub ws_send_queue: u64,
    /// Request header that tells the backend a session's connection id.
    #[arg(long, default_value = "X-Wslb-Conn")]
    pub conn_id_header: String,
    /// Which sessions a backend's publish, send, ping and close (over its
    /// control channel) may reach: all, or local (its own sessions only).
    #[arg(long, default_value = "all")]
    pub backend_publish: BackendPublish,
    /// Check static backends actively: GET this path (a 2xx or 3xx passes);
    /// off when not given. Registered backends keep their heartbeats.
    #[arg(long, value_name = "PATH")]
    pub health_check: Option<String>,
    /// Time between two health checks of one backend.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub health_check_interval: Duration,
    /// Time one health check may take.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub health_check_timeout: Duration,
    /// Consecutive passing checks that bring a failing backend back.
    #[arg(long, default_value_t = 2)]
    pub health_check_rise: u32,
    /// Consecutive failed checks that take a backend out of the pool.
    #[arg(long, default_value_t = 3)]
    pub health_check_fall: u32,
    /// TOML file with a key for each of these flags (`max-connections =
    /// 9000`, `backend = ["http://..."]`); a flag given here overrides its key.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Unix socket (mode 0600) on which this balancer hands its listening
    /// sockets to a successor started with --upgrade.
    #[arg(long, value_name = "PATH")]
    pub upgrade_socket: Option<PathBuf>,
    /// Take the listening sockets of the balancer at --upgrade-socket, then
    /// tell it to drain (binary upgrade without downtime).
    #[arg(long)]
    pub upgrade: bool,
    /// PEM CA bundle that https:// and wss:// backends' certificates are
    /// verified against [default: the system roots].
    #[arg(long, value_name = "FILE")]
    pub backend_ca: Option<PathBuf>,
    /// Bytes per second each client connection may move in each direction
    /// (k/m suffixes; 0 = no limit).
    #[arg(long, default_value = "0", value_parser = parse_size)]
    pub throttle_bps: u64,
    /// Access log destination: stderr, off, or a file path (reopened on SIGUSR1).
    #[arg(
        long,
        default_value = "stderr",
        value_name = "stderr|off|PATH",
        env = "WSLB_ACCESS_LOG"
    )]
    pub access_log: AccessLogTarget,
    /// Access log line format: text (key=value) or json (one object a line).
    #[arg(long, default_value = "text", value_name = "text|json")]
    pub access_log_format: AccessLogFormat,
    /// Serve clients that cannot open a WebSocket (a GET with `Accept:
    /// text/event-stream`) over Server-Sent Events: sse, or off.
    #[arg(long, default_value = "off", value_name = "sse|off")]
    pub fallback: Fallback,
    /// Time a fallback event stream tells its client to wait before it
    /// reconnects (the `retry:` field).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub fallback_retry: Duration,
    /// Time a fallback session waits for its dropped event stream to come
    /// back (with Last-Event-ID) before closing its backend session (1001).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub fallback_resume_timeout: Duration,
    /// Bytes of events a fallback session keeps for a resume; past it, a
    /// session whose stream is gone is closed (1001).
    #[arg(long, default_value = "1m", value_parser = parse_size)]
    pub fallback_buffer: u64,
}

impl ServeArgs {
    /// Validates the flags into a [`ServeConfig`].
    /// What no single flag can check (something to listen on, the bounds
    /// of the counts) is left to [`ServeConfig::validate`].
    pub fn into_config(self) -> Result<ServeConfig, String> {
        let mut tls = None;
        if !self.tls_listen.is_empty() {
            let default_cert = match (self.tls_cert, self.tls_key) {
                (Some(cert), Some(key)) => Some(CertPair { cert, key }),
                (None, None) => None,
                _ => return Err("--tls-cert and --tls-key go together".into()),
            };
            let mut sni = Vec::new();
            for s in &self.tls_sni {
                sni.push(parse_sni_arg(s).map_err(|e| e.to_string())?);
            }
            tls = Some(TlsSettings { default_cert, sni });
        }
        let workers = self
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let admin_listen = match self.admin_listen.as_str() {
            "off" | "" => None,
            s => Some(
                s.parse()
                    .map_err(|_| format!("--admin-listen {s:?}: not an address"))?,
            ),
        };
        let allowed_origins = OriginPolicy::parse(&self.allowed_origins)?;
        let max_header_bytes = usize::try_from(self.max_header_bytes).unwrap_or(usize::MAX);
        // Without --balancer-id, one random id for the life of the process:
        // reading the flags again for a reload gives the same one.
        static RANDOM_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let balancer_id = self.balancer_id.unwrap_or_else(|| {
            RANDOM_ID
                .get_or_init(|| format!("lb-{:08x}", fastrand::u32(..)))
                .clone()
        });
        let cfg = ServeConfig {
            listen: self.listen,
            tls_listen: self.tls_listen,
            tls,
            workers,
            pin: !self.no_pin,
            backends: self.backends,
            algorithm: self.algorithm,
            sticky: self.sticky,
            max_header_bytes,
            max_connections: self.max_connections.max(1),
            client_header_timeout: self.client_header_timeout,
            backend_connect_timeout: self.backend_connect_timeout,
            backend_timeout: self.backend_timeout,
            idle_timeout: self.idle_timeout,
            drain_timeout: self.drain_timeout,
            max_retries: self.max_retries,
            ws_mode: self.ws_mode,
            max_message_size: self.max_message_size,
            ws_validate_utf8: self.ws_validate_utf8,
            ws_ping_interval: Some(self.ws_ping_interval).filter(|d| !d.is_zero()),
            ws_pong_timeout: self.ws_pong_timeout,
            ws_tunnel_idle_timeout: Some(self.ws_tunnel_idle_timeout).filter(|d| !d.is_zero()),
            ws_handshake_timeout: self.ws_handshake_timeout,
            allowed_origins,
            admin_listen,
            admin_token: self.admin_token,
            control_listen: self.control_listen,
            register_token: self.register_token,
            heartbeat_timeout: self.heartbeat_timeout,
            balancer_id,
            allow_backend_cidr: self.allow_backend_cidr,
            max_backends: self.max_backends,
            backend_idle_timeout: self.backend_idle_timeout,
            client_body_timeout: self.client_body_timeout,
            client_body_min_rate: self.client_body_min_rate,
            max_connections_per_ip: Some(self.max_connections_per_ip).filter(|&n| n > 0),
            trusted_proxies: self.trusted_proxies,
            admin_max_connections: self.admin_max_connections,
            admin_request_timeout: self.admin_request_timeout,
            ws_send_queue: self.ws_send_queue,
            conn_id_header: self.conn_id_header,
            backend_publish: self.backend_publish,
            health_check: self.health_check.map(|path| HealthCheck {
                path,
                interval: self.health_check_interval,
                timeout: self.health_check_timeout,
                rise: self.health_check_rise,
                fall: self.health_check_fall,
            }),
            upgrade_socket: self.upgrade_socket,
            upgrade: self.upgrade,
            backend_ca: self.backend_ca,
            throttle_bps: self.throttle_bps,
            access_log: self.access_log,
            access_log_format: self.access_log_format,
            fallback: self.fallback,
            fallback_retry: self.fallback_retry,
            fallback_resume_timeout: self.fallback_resume_timeout,
            fallback_buffer: self.fallback_buffer,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Flags of `wslb echo`.
#[derive(Args, Debug, Clone)]
pub struct EchoArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:9001")]
    pub listen: SocketAddr,
    /// Name answered on `GET /` [default: echo-PORT].
    #[arg(long)]
    pub name: Option<String>,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Register with this balancer's control channel, advertising the listen
    /// port (repeatable): ws://HOST:PORT[/_lb/register] or wss://...
    #[arg(long = "register", value_name = "URL", value_parser = BalancerUrl::parse)]
    pub register: Vec<BalancerUrl>,
    /// Bearer token for --register.
    #[arg(long, env = "WSLB_AGENT_TOKEN", requires = "register")]
    pub token: Option<String>,
    /// Backend id for --register [default: backend-RANDOM].
    #[arg(long, requires = "register")]
    pub id: Option<String>,
    /// Weight for --register (1 to 1000).
    #[arg(long, default_value_t = 1)]
    pub weight: u32,
    /// Base reconnect delay for --register (`2`, `500ms`, `2s`, `1m`).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub auto_restart: Duration,
    /// Largest delay between reconnect attempts for --register.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub max_backoff: Duration,
}

/// Flags of `wslb agent`.
#[derive(Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("advertised").required(true).args(["advertise", "advertise_port"])))]
pub struct AgentArgs {
    /// Balancer control channel (repeatable): ws://HOST:PORT[/_lb/register] or wss://...
    #[arg(long = "lb", value_name = "URL", required = true, value_parser = BalancerUrl::parse)]
    pub lb: Vec<BalancerUrl>,
    /// Bearer token the balancers expect (their --register-token).
    #[arg(long, env = "WSLB_AGENT_TOKEN")]
    pub token: Option<String>,
    /// Backend id [default: backend-RANDOM].
    #[arg(long)]
    pub id: Option<String>,
    /// Where balancers reach the backend (repeatable): http://IP:PORT or ws://IP:PORT.
    #[arg(long, value_name = "URL")]
    pub advertise: Vec<String>,
    /// The backend's port; each balancer fills in the address it sees this agent connect from.
    #[arg(long, value_name = "PORT")]
    pub advertise_port: Option<u16>,
    /// Weight (1 to 1000).
    #[arg(long, default_value_t = 1)]
    pub weight: u32,
    /// Base reconnect delay after a disconnect (`2`, `500ms`, `2s`, `1m`).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub auto_restart: Duration,
    /// Largest delay between reconnect attempts (also used after a refusal).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub max_backoff: Duration,
    /// PEM CA bundle to trust for wss:// balancers [default: system bundle].
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Do not verify wss:// balancer certificates (tests only).
    #[arg(long)]
    pub tls_insecure: bool,
    /// Load (connection count) to report in heartbeats.
    #[arg(long, default_value_t = 0)]
    pub load: u32,
    /// JSON metadata shown by the balancer's admin API.
    #[arg(long, value_name = "JSON")]
    pub metadata: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The library's defaults are the flags' defaults: an embedding program
    /// gets the balancer `wslb serve` documents.
    #[test]
    fn library_defaults_match_the_flags() {
        let cli = Cli::parse_from(["wslb", "serve", "--listen", "127.0.0.1:1"]);
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        let mut from_flags = args.into_config().expect("valid defaults");
        // What the library leaves to the caller: where to listen, the admin
        // API (opt-in), and the random balancer id.
        let library = ServeConfig {
            listen: from_flags.listen.clone(),
            admin_listen: from_flags.admin_listen,
            ..ServeConfig::default()
        };
        from_flags.balancer_id = library.balancer_id.clone();
        assert_eq!(format!("{from_flags:?}"), format!("{library:?}"));
    }
}
