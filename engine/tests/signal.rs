//! Signal handles: a signal delivered as a loop callback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::rc::Rc;

use loopd_engine::{Handle, Loop, RunMode, Signal};

#[test]
fn a_signal_arrives_as_a_loop_callback() {
    let mut lp = Loop::new().unwrap();
    let got = Rc::new(RefCell::new(None));
    let g = got.clone();
    let sig = Signal::new(&mut lp);
    sig.start(&mut lp, libc::SIGUSR1, move |lp, s, signum| {
        *g.borrow_mut() = Some(signum);
        s.close(lp);
    })
    .unwrap();
    let status = std::process::Command::new("kill")
        .args(["-USR1", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    lp.run(RunMode::Default);
    assert_eq!(*got.borrow(), Some(libc::SIGUSR1));
}
