//! loopd: an observable libuv-style event-loop daemon.
//!
//! - [`engine`]: the event loop (libuv's phases, handles, requests and thread pool on `mio`),
//!   recording everything a person needs to diagnose a slow or blocked loop.
#![deny(missing_docs)]

pub mod engine;
