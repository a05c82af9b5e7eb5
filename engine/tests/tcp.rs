//! TCP handles: accept, echo, queued writes, backpressure, shutdown, close.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;

use loopd_engine::{Handle, HandleType, Loop, ReadEvent, RunMode, Tcp};

fn echo_server(lp: &mut Loop) -> (Tcp, SocketAddr) {
    let server = Tcp::new(lp);
    server.bind(lp, "127.0.0.1:0".parse().unwrap()).unwrap();
    server
        .listen(lp, 128, |lp, server, status| {
            status.unwrap();
            let client = server.accept(lp).unwrap();
            client
                .read_start(lp, |lp, c, ev| match ev {
                    ReadEvent::Data(d) => c.write_slice(lp, d, None).unwrap(),
                    ReadEvent::Eof | ReadEvent::Error(_) => c.close(lp),
                })
                .unwrap();
        })
        .unwrap();
    let addr = server.local_addr(lp).unwrap();
    (server, addr)
}

#[test]
fn an_echo_server_answers_a_blocking_client() {
    let mut lp = Loop::new().unwrap();
    let (server, addr) = echo_server(&mut lp);
    let client = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        for i in 0..100u32 {
            let msg = format!("ping {i}\n");
            s.write_all(msg.as_bytes()).unwrap();
            let mut back = vec![0; msg.len()];
            s.read_exact(&mut back).unwrap();
            assert_eq!(back, msg.as_bytes());
        }
    });
    // Run until the client thread is done and its connection closed.
    while !client.is_finished() {
        lp.run(RunMode::Once);
    }
    client.join().unwrap();
    for _ in 0..10 {
        lp.run(RunMode::NoWait);
    }
    let mut tcp_handles = 0;
    lp.walk(|h| {
        if h.kind == HandleType::Tcp {
            tcp_handles += 1;
            assert!(h.fd.is_some());
        }
    });
    assert_eq!(
        tcp_handles, 1,
        "only the listener is left after the client closed"
    );
    server.close(&mut lp);
    lp.run(RunMode::Default);
}

#[test]
fn connect_write_queue_shutdown_and_eof_between_two_handles() {
    let mut lp = Loop::new().unwrap();
    let received = Rc::new(RefCell::new(Vec::new()));
    let got_eof = Rc::new(RefCell::new(false));
    let server = Tcp::new(&mut lp);
    server
        .bind(&mut lp, "127.0.0.1:0".parse().unwrap())
        .unwrap();
    let (rx, eof) = (received.clone(), got_eof.clone());
    server
        .listen(&mut lp, 16, move |lp, server, _| {
            let c = server.accept(lp).unwrap();
            let (rx, eof) = (rx.clone(), eof.clone());
            c.read_start(lp, move |lp, c, ev| match ev {
                ReadEvent::Data(d) => rx.borrow_mut().extend_from_slice(d),
                ReadEvent::Eof => {
                    *eof.borrow_mut() = true;
                    c.close(lp);
                    server.close(lp);
                }
                ReadEvent::Error(e) => panic!("{e}"),
            })
            .unwrap();
        })
        .unwrap();
    let addr = server.local_addr(&lp).unwrap();
    // 8 MiB: more than a socket buffer, so most of it queues.
    let payload: Vec<u8> = (0..8 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let expected = payload.clone();
    let steps = Rc::new(RefCell::new(Vec::new()));
    let st = steps.clone();
    let client = Tcp::connect(&mut lp, addr, move |lp, status| {
        status.unwrap();
        st.borrow_mut().push("connected");
        assert!(lp.alive());
    })
    .unwrap();
    let st = steps.clone();
    client
        .write(
            &mut lp,
            payload,
            Some(Box::new(move |_, r| {
                r.unwrap();
                st.borrow_mut().push("written")
            })),
        )
        .unwrap();
    assert!(client.write_queue_size(&lp) > 0, "queued while connecting");
    let st = steps.clone();
    client
        .shutdown(&mut lp, move |lp, r| {
            r.unwrap();
            st.borrow_mut().push("shut down");
            client.close(lp);
        })
        .unwrap();
    assert!(client.write(&mut lp, b"late".to_vec(), None).is_err());
    lp.run(RunMode::Default);
    assert_eq!(*steps.borrow(), vec!["connected", "written", "shut down"]);
    assert!(*got_eof.borrow());
    assert_eq!(received.borrow().len(), expected.len());
    assert!(*received.borrow() == expected, "bytes intact and in order");
    let snap = lp.observer().snapshot();
    assert_eq!(snap.handles[HandleType::Tcp].total, 0);
}

#[test]
fn read_stop_pushes_back_and_read_start_resumes_with_buffered_data() {
    let mut lp = Loop::new().unwrap();
    let server = Tcp::new(&mut lp);
    server
        .bind(&mut lp, "127.0.0.1:0".parse().unwrap())
        .unwrap();
    let total = Rc::new(RefCell::new(0usize));
    let conn = Rc::new(RefCell::new(None));
    let (t, c2) = (total.clone(), conn.clone());
    server
        .listen(&mut lp, 16, move |lp, server, _| {
            let c = server.accept(lp).unwrap();
            *c2.borrow_mut() = Some(c);
            let t = t.clone();
            c.read_start(lp, move |lp, c, ev| match ev {
                ReadEvent::Data(d) => {
                    *t.borrow_mut() += d.len();
                    c.read_stop(lp);
                }
                _ => c.close(lp),
            })
            .unwrap();
        })
        .unwrap();
    let addr = server.local_addr(&lp).unwrap();
    let writer = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&vec![7u8; 100_000]).unwrap();
        s
    });
    // Accept and take the first chunk; reading then pauses.
    while total.borrow().eq(&0) {
        lp.run(RunMode::Once);
    }
    let first = *total.borrow();
    let _peer = writer.join().unwrap();
    for _ in 0..5 {
        lp.run(RunMode::NoWait);
    }
    assert_eq!(*total.borrow(), first, "nothing delivered while paused");
    let c = conn.borrow().unwrap();
    assert!(!c.is_reading(&lp));
    // Resume: buffered data arrives without any new readiness from the peer.
    let t = total.clone();
    c.read_start(&mut lp, move |_, _, ev| {
        if let ReadEvent::Data(d) = ev {
            *t.borrow_mut() += d.len()
        }
    })
    .unwrap();
    while *total.borrow() < 100_000 {
        lp.run(RunMode::Once);
    }
    assert_eq!(*total.borrow(), 100_000);
    c.close(&mut lp);
    server.close(&mut lp);
    lp.run(RunMode::Default);
}

#[test]
fn closing_cancels_queued_writes_before_the_close_callback() {
    let mut lp = Loop::new().unwrap();
    let server = Tcp::new(&mut lp);
    server
        .bind(&mut lp, "127.0.0.1:0".parse().unwrap())
        .unwrap();
    server.listen(&mut lp, 16, |_, _, _| {}).unwrap();
    let addr = server.local_addr(&lp).unwrap();
    let order = Rc::new(RefCell::new(Vec::new()));
    let client = Tcp::connect(&mut lp, addr, |_, _| {}).unwrap();
    let o = order.clone();
    client
        .write(
            &mut lp,
            vec![1; 64 * 1024 * 1024],
            Some(Box::new(move |_, r| {
                let e = r.unwrap_err();
                assert_eq!(e.raw_os_error(), Some(libc::ECANCELED));
                o.borrow_mut().push("write cancelled");
            })),
        )
        .unwrap();
    let o = order.clone();
    client.close_then(&mut lp, move |_| o.borrow_mut().push("closed"));
    server.close(&mut lp);
    lp.run(RunMode::Default);
    assert_eq!(*order.borrow(), vec!["write cancelled", "closed"]);
    let snap = lp.observer().snapshot();
    assert_eq!(
        snap.requests_active.iter().map(|(_, n)| n).sum::<u64>(),
        0,
        "no leaked requests"
    );
}

#[test]
fn bind_reports_an_address_in_use() {
    let mut lp = Loop::new().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let t = Tcp::new(&mut lp);
    let err = t
        .bind(&mut lp, addr)
        .and_then(|_| t.listen(&mut lp, 16, |_, _, _| {}));
    assert!(err.is_err(), "binding a taken port fails");
    t.close(&mut lp);
    lp.run(RunMode::Default);
}

/// Issue #14: the address the accept returned is kept, so the peer is known even once it has
/// reset the connection (when `getpeername` no longer answers).
#[test]
fn an_accepted_stream_knows_its_peer_even_after_a_reset() {
    let mut lp = Loop::new().unwrap();
    let server = Tcp::new(&mut lp);
    server
        .bind(&mut lp, "127.0.0.1:0".parse().unwrap())
        .unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let seen_in_cb = seen.clone();
    server
        .listen(&mut lp, 16, move |lp, server, status| {
            status.unwrap();
            let client = server.accept(lp).unwrap();
            let seen = seen_in_cb.clone();
            client
                .read_start(lp, move |lp, client, ev| {
                    assert!(!matches!(ev, ReadEvent::Data(_)), "the peer sent nothing");
                    let peer = client.peer_addr(lp).map_err(|e| e.to_string());
                    seen.borrow_mut().push(peer);
                    client.close(lp);
                })
                .unwrap();
            server.close(lp);
        })
        .unwrap();
    let addr = server.local_addr(&lp).unwrap();
    let peer = TcpStream::connect(addr).unwrap();
    let peer_addr = peer.local_addr().unwrap();
    // Close with a reset (SO_LINGER 0) before the loop even accepts.
    socket2::SockRef::from(&peer)
        .set_linger(Some(std::time::Duration::ZERO))
        .unwrap();
    drop(peer);
    lp.run(RunMode::Default);
    assert_eq!(*seen.borrow(), vec![Ok(peer_addr)]);
}
