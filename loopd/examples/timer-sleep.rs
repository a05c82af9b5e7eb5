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

use std::io::Write;
use std::time::{Duration, Instant};

use loopd::engine::{Handle, Loop, RunMode, Timer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let interval = Duration::from_millis(args::number("interval-ms", 1000));
    let sleep = Duration::from_millis(args::number("sleep-ms", 3000));
    let every = args::number("sleep-every", 3).max(1);
    let ticks = args::number("ticks", 0);

    let mut lp = Loop::new()?;
    let _observed = loopd::observe_loops(&[&lp])?;
    let timer = Timer::new(&mut lp);
    timer.set_label(&mut lp, "on_timer");
    let started = Instant::now();
    let mut n = 0;
    timer.start(&mut lp, interval, interval, move |lp, timer| {
        n += 1;
        println!("on_timer [{} ms]", started.elapsed().as_millis());
        let _ = std::io::stdout().flush();
        if n % every == 0 {
            std::thread::sleep(sleep); // blocks the loop: a stall
        }
        if n == ticks {
            timer.close(lp);
        }
    })?;
    lp.run(RunMode::Default);
    Ok(())
}
