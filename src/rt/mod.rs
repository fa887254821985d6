//! Runtime helpers every I/O layer shares: read buffers and whole writes over
//! monoio's owned-buffer traits (`io`), worker-local and process-wide
//! wake-ups (`notify`), and a log throttle (`throttle`).

pub mod io;
pub mod listen;
pub(crate) mod notify;
pub(crate) mod throttle;
