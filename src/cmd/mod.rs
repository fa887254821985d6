//! The binary's own modules: the command line (`cli`, `agent_cli`) and the
//! tools that ship with wslb but are not part of the library: the load
//! generator (`bench`), the echo backend (`echo`) and the demo (`demo`).

pub mod agent_cli;
pub mod bench;
pub mod cli;
pub mod demo;
pub mod echo;
pub mod serve;
