//! monoio helpers for programs that embed wslb or write backends: read
//! buffers and whole writes over monoio's owned-buffer traits (`io`) and
//! SO_REUSEPORT listeners for a thread per core (`listen`). Inside the
//! crate also: wake-ups (`notify`), a log throttle (`throttle`), values
//! a reload replaces (`live`), the per-connection bandwidth limit (`rate`),
//! the access log's writer (`access_log`) and per-worker lines
//! (`log_line`), and read readiness for relays that hold no idle buffer
//! (`ready`, and the reads and buffer pool over it in `ready_read`), which
//! the TLS stream of accepted clients has too (`ready_tls`), and
//! worker-local alarms sharing one timer (`alarm`), and an in-memory pipe
//! pair a fallback session's relay takes for its client (`mem_pipe`).

pub(crate) mod access_log;
pub(crate) mod alarm;
pub(crate) mod clock;
pub(crate) mod deadline;
pub mod io;
pub mod listen;
pub(crate) mod live;
pub(crate) mod log_line;
pub(crate) mod mem_pipe;
pub(crate) mod notify;
pub(crate) mod rate;
pub(crate) mod ready;
pub(crate) mod ready_read;
mod ready_tls;
pub(crate) mod throttle;
