//! `timer-work`: `timer-sleep` with the sleep moved to the thread pool (`queue_work`), as the
//! classic demo's fix does. The `on_timer` lines stay 1 s apart, no stall is reported, and
//! the pool shows a busy worker while the work sleeps (`loopctl threadpool`).
//!
//! Flags (for tests): `--interval-ms` (1000), `--sleep-ms` (3000), `--sleep-every` (3),
//! `--ticks` (0: forever). Environment as `timer-sleep`.
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
            let work = lp.queue_work(move || std::thread::sleep(sleep), |_, _| {});
            work.set_label(lp, "sleep on the pool");
        }
        if n == ticks {
            timer.close(lp);
        }
    })?;
    lp.run(RunMode::Default);
    Ok(())
}
