//! `timer-sleep`: libuv's classic "uv-timer-sleep-demo" on loopd's engine. A 1 s repeating
//! timer prints `on_timer [N ms]`; every third time its callback sleeps 3 s — blocking the
//! loop. Watch it with `loop-top` or `loopctl stalls`: each sleep is a stall attributed to the
//! timer, with `sleep` in the loop thread's stack, while it still sleeps.
//!
//! ```sh
//! cargo run --release -p loopd --example timer-sleep
//! LOOPD_SOCKET=/tmp/ts.sock cargo run -p loopd --example timer-sleep &  # then:
//! cargo run -p loopctl -- --socket /tmp/ts.sock stalls
//! ```
//!
//! Flags (for tests): `--interval-ms` (1000), `--sleep-ms` (3000), `--sleep-every` (3),
//! `--ticks` (0: forever). Environment: `LOOPD_SOCKET`, `LOOPD_METRICS_ADDR`,
//! `LOOPD_STALL_THRESHOLD`, as for the daemon (see `loopd::observe_loops`).
#![allow(clippy::print_stdout)]

#[path = "support/args.rs"]
mod args;
#[path = "support/ticker.rs"]
mod ticker;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Sleeps in the timer's callback: blocks the loop, a stall.
    ticker::run(|_, sleep| std::thread::sleep(sleep))
}
