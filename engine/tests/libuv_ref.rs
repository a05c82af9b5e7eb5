//! libuv's `test/test-ref.c` ported: an unref'd handle does not keep the loop alive, whatever
//! its type and state; requests do. No equivalent here (the engine has no such handle yet):
//! `fs_event_ref`, `fs_poll_ref`, `pipe_ref*`, `process_ref`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use loopd_engine::{Async, Check, Handle, Idle, Loop, Prepare, RunMode, Tcp, Timer, Udp};
use support::port_loop;

/// libuv's `do_close`: close `h`; its close callback runs within one Default run, once.
fn do_close(lp: &mut Loop, h: impl Handle) {
    let called = Rc::new(Cell::new(0));
    let c = called.clone();
    h.close_then(lp, move |_| c.set(c.get() + 1));
    assert_eq!(called.get(), 0);
    lp.run(RunMode::Default);
    assert_eq!(called.get(), 1);
}

/// Runs the loop, which must return at once (nothing keeps it alive).
fn run_returns(lp: &mut Loop) {
    let started = std::time::Instant::now();
    assert!(!lp.run(RunMode::Default));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the run did not return"
    );
}

#[test]
fn r#ref() {
    let mut lp = port_loop();
    run_returns(&mut lp);
}

#[test]
fn idle_ref() {
    let mut lp = port_loop();
    let h = Idle::new(&mut lp);
    h.start(&mut lp, |_, _| {}).unwrap();
    h.unref(&mut lp);
    run_returns(&mut lp);
    do_close(&mut lp, h);
}

#[test]
fn async_ref() {
    let mut lp = port_loop();
    let h = Async::new(&mut lp, |_, _| {});
    h.unref(&mut lp);
    run_returns(&mut lp);
    do_close(&mut lp, h);
}

#[test]
fn prepare_ref() {
    let mut lp = port_loop();
    let h = Prepare::new(&mut lp);
    h.start(&mut lp, |_, _| {}).unwrap();
    h.unref(&mut lp);
    run_returns(&mut lp);
    do_close(&mut lp, h);
}

#[test]
fn check_ref() {
    let mut lp = port_loop();
    let h = Check::new(&mut lp);
    h.start(&mut lp, |_, _| {}).unwrap();
    h.unref(&mut lp);
    run_returns(&mut lp);
    do_close(&mut lp, h);
}

#[test]
fn unref_in_prepare_cb() {
    let mut lp = port_loop();
    let h = Prepare::new(&mut lp);
    h.start(&mut lp, |lp, h| h.unref(lp)).unwrap();
    run_returns(&mut lp);
    do_close(&mut lp, h);
}

#[test]
fn timer_ref() {
    let mut lp = port_loop();
    let h = Timer::new(&mut lp);
    h.unref(&mut lp);
    run_returns(&mut lp);
    do_close(&mut lp, h);
}

#[test]
fn timer_ref2() {
    let mut lp = port_loop();
    let h = Timer::new(&mut lp);
    h.start(
        &mut lp,
        Duration::from_millis(42),
        Duration::from_millis(42),
        |_, _| panic!("fail_cb"),
    )
    .unwrap();
    h.unref(&mut lp);
    run_returns(&mut lp);
    do_close(&mut lp, h);
}

#[test]
fn tcp_ref() {
    let mut lp = port_loop();
    let h = Tcp::new(&mut lp);
    h.unref(&mut lp);
    run_returns(&mut lp);
    do_close(&mut lp, h);
}

/// (libuv listens on an unbound handle, which binds an ephemeral port; here the bind is
/// explicit.)
#[test]
fn tcp_ref2() {
    let mut lp = port_loop();
    let h = Tcp::new(&mut lp);
    h.bind(&mut lp, "127.0.0.1:0".parse().unwrap()).unwrap();
    h.listen(&mut lp, 128, |_, _, _| panic!("fail_cb")).unwrap();
    h.unref(&mut lp);
    run_returns(&mut lp);
    do_close(&mut lp, h);
}

#[test]
fn tcp_ref2b() {
    let mut lp = port_loop();
    let h = Tcp::new(&mut lp);
    h.bind(&mut lp, "127.0.0.1:0".parse().unwrap()).unwrap();
    h.listen(&mut lp, 128, |_, _, _| panic!("fail_cb")).unwrap();
    h.unref(&mut lp);
    let called = Rc::new(Cell::new(0));
    let c = called.clone();
    h.close_then(&mut lp, move |_| c.set(c.get() + 1));
    lp.run(RunMode::Default);
    assert_eq!(called.get(), 1);
}

/// A listener that accepts and holds connections, unref'd.
fn server(lp: &mut Loop) -> (Tcp, std::net::SocketAddr) {
    let s = Tcp::new(lp);
    s.bind(lp, "127.0.0.1:0".parse().unwrap()).unwrap();
    s.listen(lp, 128, |lp, s, status| {
        status.unwrap();
        let _ = s.accept(lp);
    })
    .unwrap();
    s.unref(lp);
    let addr = s.local_addr(lp).unwrap();
    (s, addr)
}

/// `tcp_ref3`: an unref'd handle's connect and shutdown requests keep the loop alive.
#[test]
fn tcp_ref3() {
    let mut lp = port_loop();
    let (srv, addr) = server(&mut lp);
    let connect_cb_called = Rc::new(Cell::new(0));
    let shutdown_cb_called = Rc::new(Cell::new(0));
    let handle = Rc::new(Cell::new(None::<Tcp>));
    let (cc, sc, hh) = (
        connect_cb_called.clone(),
        shutdown_cb_called.clone(),
        handle.clone(),
    );
    let h = Tcp::connect(&mut lp, addr, move |lp, status| {
        status.unwrap();
        let h = hh.get().expect("the handle");
        let sc = sc.clone();
        h.shutdown(lp, move |_, status| {
            status.unwrap();
            sc.set(sc.get() + 1);
        })
        .unwrap();
        cc.set(cc.get() + 1);
    })
    .unwrap();
    handle.set(Some(h));
    h.unref(&mut lp);
    lp.run(RunMode::Default);
    assert_eq!(connect_cb_called.get(), 1);
    assert_eq!(shutdown_cb_called.get(), 1);
    do_close(&mut lp, h);
    srv.close(&mut lp);
    lp.run(RunMode::Default);
}

/// `tcp_ref4`: the same with a write before the shutdown.
#[test]
fn tcp_ref4() {
    let mut lp = port_loop();
    let (srv, addr) = server(&mut lp);
    let connect_cb_called = Rc::new(Cell::new(0));
    let write_cb_called = Rc::new(Cell::new(0));
    let shutdown_cb_called = Rc::new(Cell::new(0));
    let handle = Rc::new(Cell::new(None::<Tcp>));
    let (cc, wc, sc, hh) = (
        connect_cb_called.clone(),
        write_cb_called.clone(),
        shutdown_cb_called.clone(),
        handle.clone(),
    );
    let h = Tcp::connect(&mut lp, addr, move |lp, status| {
        status.unwrap();
        let h = hh.get().expect("the handle");
        let (wc, sc) = (wc.clone(), sc.clone());
        h.write(
            lp,
            vec![0u8; 32767],
            Some(Box::new(move |lp, status| {
                status.unwrap();
                let sc = sc.clone();
                h.shutdown(lp, move |_, status| {
                    status.unwrap();
                    sc.set(sc.get() + 1);
                })
                .unwrap();
                wc.set(wc.get() + 1);
            })),
        )
        .unwrap();
        cc.set(cc.get() + 1);
    })
    .unwrap();
    handle.set(Some(h));
    h.unref(&mut lp);
    lp.run(RunMode::Default);
    assert_eq!(connect_cb_called.get(), 1);
    assert_eq!(write_cb_called.get(), 1);
    assert_eq!(shutdown_cb_called.get(), 1);
    do_close(&mut lp, h);
    srv.close(&mut lp);
    lp.run(RunMode::Default);
}

#[test]
fn udp_ref() {
    let mut lp = port_loop();
    let h = Udp::new(&mut lp);
    h.unref(&mut lp);
    run_returns(&mut lp);
    do_close(&mut lp, h);
}

#[test]
fn udp_ref2() {
    let mut lp = port_loop();
    let h = Udp::new(&mut lp);
    h.bind(&mut lp, "127.0.0.1:0".parse().unwrap()).unwrap();
    h.recv_start(&mut lp, |_, _, _| panic!("fail_cb")).unwrap();
    h.unref(&mut lp);
    run_returns(&mut lp);
    do_close(&mut lp, h);
}

/// `udp_ref3`: an unref'd socket's send request runs to its callback. (libuv sends from an
/// unbound socket, which binds it; here it is bound first.)
#[test]
fn udp_ref3() {
    let mut lp = port_loop();
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let h = Udp::new(&mut lp);
    h.bind(&mut lp, "127.0.0.1:0".parse().unwrap()).unwrap();
    let req_cb_called = Rc::new(Cell::new(0));
    let r = req_cb_called.clone();
    h.send(
        &mut lp,
        b"PING".to_vec(),
        peer.local_addr().unwrap(),
        Some(Box::new(move |_, _| r.set(r.get() + 1))),
    )
    .unwrap();
    h.unref(&mut lp);
    lp.run(RunMode::Default);
    assert_eq!(req_cb_called.get(), 1);
    do_close(&mut lp, h);
}

#[test]
fn has_ref() {
    let mut lp = port_loop();
    let h = Idle::new(&mut lp);
    h.ref_(&mut lp);
    assert!(h.has_ref(&lp));
    h.unref(&mut lp);
    assert!(!h.has_ref(&lp));
}

on_instrumented_loops!(
    r#ref,
    idle_ref,
    async_ref,
    prepare_ref,
    check_ref,
    unref_in_prepare_cb,
    timer_ref,
    timer_ref2,
    tcp_ref,
    tcp_ref2,
    tcp_ref2b,
    tcp_ref3,
    tcp_ref4,
    udp_ref,
    udp_ref2,
    udp_ref3,
    has_ref
);
