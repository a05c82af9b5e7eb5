//! loop-top: the live TUI of a loopd daemon — `htop` for an event loop.
//!
//! The crate is split the way tokio-console's TUI is:
//!
//! - [`conn`]: the connection thread (blocking `UnixStream`, reconnect with capped backoff) and
//!   the synchronous [`conn::Client`] used by `--once`;
//! - [`discover`]: the discovery thread that scans the runtime directory for the fleet view;
//! - [`state`]: wire data → model ([`state::Model`], [`state::Update`]), the generic table state
//!   and the replay reader;
//! - [`input`]: pure key → [`input::Action`] mapping;
//! - [`app`]: the state machine, [`app::App::update`] takes one [`app::AppEvent`];
//! - [`ui`]: draws from `&App` only.
#![forbid(unsafe_code)]

pub mod app;
pub mod conn;
pub mod discover;
pub mod input;
pub mod state;
pub mod ui;
