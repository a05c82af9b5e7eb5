//! The 1 s ticker of `timer-sleep` and `timer-work`: a repeating timer printing
//! `on_timer [N ms]`, whose every `every`-th callback calls `block` (which sleeps in the
//! callback, or hands the sleep to the pool), observed like the daemon.

use std::io::Write;
use std::time::{Duration, Instant};

use loopd::engine::{Handle, Loop, RunMode, Timer};

use super::args;

/// Runs the ticker as the flags say — `--interval-ms` (1000), `--sleep-ms` (3000),
/// `--sleep-every` (3), `--ticks` (0: forever) — until its last tick.
pub fn run(
    mut block: impl FnMut(&mut Loop, Duration) + 'static,
) -> Result<(), Box<dyn std::error::Error>> {
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
            block(lp, sleep);
        }
        if n == ticks {
            timer.close(lp);
        }
    })?;
    lp.run(RunMode::Default);
    Ok(())
}
