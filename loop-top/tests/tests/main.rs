//! loop-top's integration tests: one binary, one module per concern.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod cli;
mod keys;
mod render;
mod replay;
mod support;
