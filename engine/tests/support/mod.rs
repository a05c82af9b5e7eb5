//! Helpers shared by the engine's integration tests.

#![allow(dead_code)] // each test file uses some of them

use std::cell::RefCell;
use std::rc::Rc;

use loopd_engine::{Loop, LoopOptions};

/// A loop without the lag probe: its 10 ms unref'd timer wakes the poll like any timer,
/// which tests of exact blocking behaviour must not see.
pub fn plain_loop() -> Loop {
    Loop::with_options(LoopOptions {
        instrument: false,
        ..LoopOptions::default()
    })
    .unwrap()
}

pub type Log = Rc<RefCell<Vec<&'static str>>>;

pub fn log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

pub fn push(l: &Log, s: &'static str) {
    l.borrow_mut().push(s);
}
