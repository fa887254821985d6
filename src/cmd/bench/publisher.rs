//! The fan-out bench's publisher: a small blocking HTTP/1.1 keep-alive
//! client that POSTs one message per call to wslb's admin API
//! (`{"text": ..., "channel": ...}`) or Pushpin's publish endpoint
//! (`{"items": [{"channel": ..., "formats": {"ws-message": {"content": ...}}}]}`)
//! and reads the answer. It runs on its own thread, beside the monoio
//! threads that hold the subscribers.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use thiserror::Error;

use super::response::{parse_head, BodySkipper, Framing};
use super::url::{Scheme, Target};
use super::BenchError;

/// Where wslb's admin API answers publishes by default.
pub const DEFAULT_PUBLISH_URL: &str = "http://127.0.0.1:9090/api/publish";
/// Longest answer read from the publish endpoint.
const MAX_ANSWER: usize = 64 * 1024;
/// Read and write timeout on the publish connection.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Which publish API the URL speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishFormat {
    /// wslb's `POST /api/publish`.
    Wslb,
    /// Pushpin's `POST /publish/` (GRIP `ws-message` format).
    Pushpin,
}

impl PublishFormat {
    /// The name `--publish-format` takes.
    pub fn name(self) -> &'static str {
        match self {
            PublishFormat::Wslb => "wslb",
            PublishFormat::Pushpin => "pushpin",
        }
    }
}

/// The JSON body publishing `text` to `channel`.
pub fn publish_body(format: PublishFormat, channel: &str, text: &str) -> Vec<u8> {
    let v = match format {
        PublishFormat::Wslb => json!({"text": text, "channel": channel}),
        PublishFormat::Pushpin => json!({"items": [{
            "channel": channel,
            "formats": {"ws-message": {"content": text}}
        }]}),
    };
    v.to_string().into_bytes()
}

/// wslb's answer to a publish, summed over its workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishOutcome {
    pub matched: u64,
    pub delivered: u64,
    pub skipped: u64,
    pub dropped: u64,
}

impl PublishOutcome {
    /// Add another answer's counts.
    pub fn add(&mut self, o: &PublishOutcome) {
        self.matched += o.matched;
        self.delivered += o.delivered;
        self.skipped += o.skipped;
        self.dropped += o.dropped;
    }
}

/// Reads wslb's `{"matched","delivered","skipped","dropped"}` answer;
/// `None` for any other body (Pushpin answers `Published`).
pub fn parse_outcome(body: &[u8]) -> Option<PublishOutcome> {
    #[derive(Deserialize)]
    struct Raw {
        matched: u64,
        delivered: u64,
        #[serde(default)]
        skipped: u64,
        #[serde(default)]
        dropped: u64,
    }
    let r: Raw = serde_json::from_slice(body).ok()?;
    Some(PublishOutcome {
        matched: r.matched,
        delivered: r.delivered,
        skipped: r.skipped,
        dropped: r.dropped,
    })
}

/// Why a publish did not go through.
#[derive(Debug, Error)]
pub enum PublishError {
    /// No connection to the publish endpoint.
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    /// The request or its answer was cut off.
    #[error("publish request failed: {0}")]
    Io(#[from] io::Error),
    /// The endpoint answered, but not with 2xx.
    #[error("answered {status}: {body}")]
    Status { status: u16, body: String },
    /// The answer does not parse as HTTP.
    #[error("malformed answer: {0}")]
    Malformed(String),
}

/// A keep-alive connection to the publish endpoint.
pub struct Publisher {
    target: Target,
    format: PublishFormat,
    channel: String,
    token: Option<String>,
    stream: Option<TcpStream>,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
}

impl Publisher {
    /// Check `url` (an `http://` URL) and set up; nothing is connected yet.
    pub fn new(
        url: &str,
        format: PublishFormat,
        channel: &str,
        token: Option<String>,
    ) -> Result<Publisher, BenchError> {
        let target = Target::parse(url)?;
        if target.scheme != Scheme::Http {
            return Err(BenchError::Args(format!(
                "--publish-url {url} must be an http:// URL"
            )));
        }
        Ok(Publisher {
            target,
            format,
            channel: channel.to_string(),
            token,
            stream: None,
            rbuf: Vec::with_capacity(4096),
            wbuf: Vec::with_capacity(1024),
        })
    }

    /// Publish `text`; the parsed answer if wslb's. A keep-alive connection
    /// the server closed meanwhile is reopened once.
    pub fn publish(&mut self, text: &str) -> Result<Option<PublishOutcome>, PublishError> {
        let reused = self.stream.is_some();
        match self.once(text) {
            Err(PublishError::Io(_)) if reused => {
                self.stream = None;
                self.once(text)
            }
            r => r,
        }
    }

    fn once(&mut self, text: &str) -> Result<Option<PublishOutcome>, PublishError> {
        let body = publish_body(self.format, &self.channel, text);
        self.wbuf.clear();
        let _ = write!(
            self.wbuf,
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.target.path,
            self.target.host,
            body.len()
        );
        if let Some(t) = &self.token {
            let _ = write!(self.wbuf, "Authorization: Bearer {t}\r\n");
        }
        self.wbuf.extend_from_slice(b"\r\n");
        self.wbuf.extend_from_slice(&body);
        let stream = match self.stream.take() {
            Some(s) => s,
            None => connect(self.target.addr)?,
        };
        let (answer, keep) = exchange(stream, &self.wbuf, &mut self.rbuf)?;
        self.stream = keep;
        answer
    }
}

fn connect(addr: SocketAddr) -> Result<TcpStream, PublishError> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .map_err(|source| PublishError::Connect { addr, source })?;
    // Timeouts and Nagle only affect how long a failure takes and latency.
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(IO_TIMEOUT));
    let _ = s.set_write_timeout(Some(IO_TIMEOUT));
    Ok(s)
}

type Answer = Result<Option<PublishOutcome>, PublishError>;

/// Send `req`, read one answer; the stream comes back if it stays open.
fn exchange(
    mut stream: TcpStream,
    req: &[u8],
    rbuf: &mut Vec<u8>,
) -> Result<(Answer, Option<TcpStream>), PublishError> {
    stream.write_all(req)?;
    rbuf.clear();
    let head = loop {
        match parse_head(rbuf).map_err(|e| PublishError::Malformed(e.to_string()))? {
            Some(h) if (100..200).contains(&h.status) => {
                rbuf.drain(..h.len); // interim answer; the final one follows
            }
            Some(h) => break h,
            None => {
                if read_more(&mut stream, rbuf)? == 0 {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
                }
            }
        }
    };
    let mut skipper = BodySkipper::new(head.framing);
    let mut at = head.len;
    loop {
        let n = skipper
            .feed(&rbuf[at..])
            .map_err(|e| PublishError::Malformed(e.to_string()))?;
        at += n;
        if skipper.done() {
            break;
        }
        if read_more(&mut stream, rbuf)? == 0 {
            if skipper.until_close() {
                break;
            }
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
    }
    let body = &rbuf[head.len..at];
    let keep = (!head.close && head.framing != Framing::UntilClose).then_some(stream);
    if !(200..300).contains(&head.status) {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
        let err = PublishError::Status {
            status: head.status,
            body: text.trim().to_string(),
        };
        return Ok((Err(err), keep));
    }
    // A chunked body is skipped, not decoded: no outcome then.
    let outcome = (head.framing != Framing::Chunked)
        .then(|| parse_outcome(body))
        .flatten();
    Ok((Ok(outcome), keep))
}

/// Read more of the answer; 0 at EOF.
fn read_more(stream: &mut TcpStream, rbuf: &mut Vec<u8>) -> Result<usize, PublishError> {
    if rbuf.len() >= MAX_ANSWER {
        return Err(PublishError::Malformed(format!(
            "answer over {MAX_ANSWER} bytes"
        )));
    }
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk)?;
    rbuf.extend_from_slice(&chunk[..n]);
    Ok(n)
}
