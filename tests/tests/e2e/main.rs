//! Black-box tests: each starts the real `loopd` binary on free ports and talks to it over
//! real sockets. Build the binaries first (`cargo build --workspace`; the README's test
//! command does).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod daemon;
mod http;
mod observe;
mod prime;
mod seq;
mod support;
