//! `async-from-thread`: another thread wakes the loop with `AsyncSender::send` ten times,
//! then the handle is closed. Sends that arrive before the callback ran coalesce into one
//! call, exactly as `uv_async_send` does: the callback runs between 1 and 10 times, and once
//! more is never needed after the last send (the last send is always followed by a run).
#![allow(clippy::print_stdout)]

use std::sync::mpsc;

use loopd::engine::{Async, Handle, Loop, RunMode};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut lp = Loop::new()?;
    let _observed = loopd::observe_loops(&[&lp])?;
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let mut runs = 0;
    let wake = Async::new(&mut lp, move |lp, handle| {
        runs += 1;
        println!("async callback run {runs}");
        // The thread says it sent all ten: close after this run (which saw the last send).
        if done_rx.try_recv().is_ok() {
            println!("sends: 10, callback runs: {runs}");
            handle.close(lp);
        }
    });
    wake.set_label(&mut lp, "woken by a thread");
    let sender = wake.sender(&lp).ok_or("the async handle is closed")?;
    let thread = std::thread::spawn(move || {
        for _ in 0..9 {
            sender.send();
        }
        // The tenth send comes after the done flag, so the run it causes sees the flag.
        let _ = done_tx.send(());
        sender.send();
    });
    lp.run(RunMode::Default);
    thread.join().map_err(|_| "the sending thread panicked")?;
    Ok(())
}
