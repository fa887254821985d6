//! monoio helpers for programs that embed wslb or write backends: read
//! buffers and whole writes over monoio's owned-buffer traits (`io`) and
//! SO_REUSEPORT listeners for a thread per core (`listen`). Inside the
//! crate also: wake-ups (`notify`) and a log throttle (`throttle`).

pub mod io;
pub mod listen;
pub(crate) mod notify;
pub(crate) mod throttle;
