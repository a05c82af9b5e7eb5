//! loopd: an observable libuv-style event-loop daemon.
//!
//! - [`engine`]: the event loop (libuv's phases, handles, requests and thread pool on `mio`),
//!   recording everything a person needs to diagnose a slow or blocked loop.
//! - [`observe`]: off-loop threads that serve what the loop records (metrics, control
//!   socket, stall watchdog).
//! - [`services`]: the workloads loopd hosts (`seq`, `prime`, `http`).
//! - [`config`] and [`daemon`]: configuration and the daemon's lifecycle.
#![deny(missing_docs)]

pub use loopd_engine as engine;
pub use loopd_observe as observe;

pub mod config;
pub mod daemon;
pub mod services;
