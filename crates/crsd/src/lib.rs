//! The crsd daemon as a library: configuration and the server lifecycle, so integration tests
//! start the real thing in-process (with an injected clock) as well as the binary.

pub mod banner;
pub mod config;
pub mod fd_limit;
pub mod listener;
pub mod metrics;
pub mod server;
pub mod tls_init;
