//! Poll handles: readiness of a file descriptor the caller owns.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::rc::Rc;

use loopd_engine::{Handle, Loop, PollEvents, PollFd, RunMode};

#[test]
fn a_poll_handle_reports_readiness_of_a_foreign_fd() {
    let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let mut lp = Loop::new().unwrap();
    let p = PollFd::new(&mut lp, b.as_raw_fd());
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    let reader = Rc::new(RefCell::new(b.try_clone().unwrap()));
    p.start(
        &mut lp,
        PollEvents {
            readable: true,
            writable: false,
        },
        move |lp, h, ev| {
            assert!(ev.readable && !ev.writable);
            let mut buf = [0u8; 64];
            let n = reader.borrow_mut().read(&mut buf).unwrap();
            s.borrow_mut().extend_from_slice(&buf[..n]);
            h.close(lp);
        },
    )
    .unwrap();
    a.write_all(b"ping").unwrap();
    lp.run(RunMode::Default);
    assert_eq!(*seen.borrow(), b"ping");
    // Closing the handle leaves the descriptor open.
    a.write_all(b"!").unwrap();
    let mut one = [0u8; 1];
    b.set_nonblocking(false).unwrap();
    b.read_exact(&mut one).unwrap();
    assert_eq!(&one, b"!");
}
