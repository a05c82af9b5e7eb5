//! loopd: an observable libuv-style event-loop daemon.
//!
//! - [`engine`]: the event loop (libuv's phases, handles, requests and thread pool on `mio`),
//!   recording everything a person needs to diagnose a slow or blocked loop.
//! - [`observe`]: off-loop threads that serve what the loop records (metrics, control
//!   socket, stall watchdog).
//! - [`services`]: the workloads loopd hosts (`seq`, `prime`, `http`).
//! - [`service`]: the extension point — your own service kinds beside the built-ins.
//! - [`Daemon::builder`]: the daemon as a library; [`config`], [`daemon`] and [`cli`]: its
//!   configuration, lifecycle and command line.
#![deny(missing_docs)]

pub use builder::{observe_loops, Daemon, DaemonBuilder, METRICS_ADDR_ENV, STALL_THRESHOLD_ENV};
pub use loopd_engine as engine;
pub use loopd_observe as observe;

mod builder;
#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
pub mod daemon;
pub mod panics;
pub mod service;
pub mod services;

/// The README's Rust snippets compile (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
