//! `timer-work`: `timer-sleep` with the sleep moved to the thread pool (`queue_work`), as the
//! classic demo's fix does. The `on_timer` lines stay 1 s apart, no stall is reported, and
//! the pool shows a busy worker while the work sleeps (`loopctl threadpool`).
//!
//! Flags (for tests): `--interval-ms` (1000), `--sleep-ms` (3000), `--sleep-every` (3),
//! `--ticks` (0: forever). Environment as `timer-sleep`.
#![allow(clippy::print_stdout)]

#[path = "support/args.rs"]
mod args;
#[path = "support/ticker.rs"]
mod ticker;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Hands the sleep to the thread pool: the loop goes on.
    ticker::run(|lp, sleep| {
        let work = lp.queue_work(move || std::thread::sleep(sleep), |_, _| {});
        work.set_label(lp, "sleep on the pool");
    })
}
