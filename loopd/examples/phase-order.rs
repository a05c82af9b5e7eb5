//! `phase-order`: Node's "setTimeout(0) vs setImmediate" puzzle on loopd's engine, which runs
//! libuv's phases in current libuv's order: timers once when a run starts, then each
//! iteration pending → idle → prepare → poll → check → close → timers.
//!
//! - From the main program, a 0 ms timer and a check callback race: the timer runs first only
//!   if at least a millisecond has passed when the loop first looks at its timers (the loop
//!   time was read when the timer was started); otherwise the check phase comes first. Run
//!   it a few times: both orders happen.
//! - From inside an I/O callback (the poll phase), the check phase always comes next, before
//!   the iteration reaches its timers: the check callback always runs first.
#![allow(clippy::print_stdout)]

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use loopd::engine::{Check, Handle, Loop, RunMode, Timer};

/// Starts a 0 ms timer and a check callback, each noting its name in `order`.
fn race(lp: &mut Loop, order: &Rc<RefCell<Vec<&'static str>>>) {
    let timer = Timer::new(lp);
    let o = order.clone();
    let _ = timer.start(lp, Duration::ZERO, Duration::ZERO, move |lp, t| {
        o.borrow_mut().push("timeout");
        t.close(lp);
    });
    let check = Check::new(lp);
    let o = order.clone();
    let _ = check.start(lp, move |lp, c| {
        o.borrow_mut().push("immediate");
        c.close(lp);
    });
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut lp = Loop::new()?;
    let from_main = Rc::new(RefCell::new(Vec::new()));
    race(&mut lp, &from_main);
    lp.run(RunMode::Default);
    println!("from main: {}", from_main.borrow().join(" then "));

    let from_io = Rc::new(RefCell::new(Vec::new()));
    let o = from_io.clone();
    // A file-system request completes in the poll phase: its callback is an I/O callback.
    lp.fs_stat(".", move |lp, _| race(lp, &o));
    lp.run(RunMode::Default);
    println!("from an I/O callback: {}", from_io.borrow().join(" then "));
    Ok(())
}
