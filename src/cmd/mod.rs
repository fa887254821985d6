//! The binary's own modules: the command line (`cli`, `agent_cli`) and the
//! tools that ship with wslb but are not part of the library: the load
//! generator (`bench`), the echo backend (`echo`), the demo (`demo`), the perf floor
//! forwarder (`floor`) and the admin API client behind `wslb publish` (`publish`, `admin_client`).

pub mod admin_client;
pub mod agent_cli;
pub mod bench;
pub mod cli;
pub mod demo;
pub mod demo_broadcast;
pub mod echo;
pub mod floor;
pub mod publish;
pub mod serve;

// The configuration file of `wslb serve --config` and `wslb check-config`.
pub mod check_config;
pub mod config_error;
pub mod config_file;
pub mod config_keys;
pub mod config_load;
