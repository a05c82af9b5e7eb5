//! UDP handles: bind, send (queued when the socket is full), receive.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::rc::Rc;

use loopd_engine::{Handle, HandleType, Loop, RunMode, Udp};

#[test]
fn datagrams_round_trip_between_two_handles() {
    let mut lp = Loop::new().unwrap();
    let server = Udp::new(&mut lp);
    server
        .bind(&mut lp, "127.0.0.1:0".parse().unwrap())
        .unwrap();
    let server_addr = server.local_addr(&mut lp).unwrap();
    server
        .recv_start(&mut lp, |lp, s, r| {
            let (data, from) = r.unwrap();
            let mut answer = b"echo:".to_vec();
            answer.extend_from_slice(data);
            s.send(lp, answer, from, None).unwrap();
        })
        .unwrap();

    let client = Udp::new(&mut lp);
    client
        .bind(&mut lp, "127.0.0.1:0".parse().unwrap())
        .unwrap();
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    client
        .recv_start(&mut lp, move |lp, c, r| {
            let (data, from) = r.unwrap();
            assert_eq!(from, server_addr);
            g.borrow_mut()
                .push(String::from_utf8(data.to_vec()).unwrap());
            if g.borrow().len() == 3 {
                c.close(lp);
                server.close(lp);
            }
        })
        .unwrap();
    let sent = Rc::new(RefCell::new(0));
    for msg in ["a", "bb", "ccc"] {
        let s = sent.clone();
        client
            .send(
                &mut lp,
                msg.as_bytes().to_vec(),
                server_addr,
                Some(Box::new(move |_, r| {
                    r.unwrap();
                    *s.borrow_mut() += 1
                })),
            )
            .unwrap();
    }
    lp.run(RunMode::Default);
    let mut got = got.borrow().clone();
    got.sort();
    assert_eq!(got, vec!["echo:a", "echo:bb", "echo:ccc"]);
    assert_eq!(*sent.borrow(), 3, "every send callback ran");
    let snap = lp.observer().snapshot();
    assert_eq!(snap.handles[HandleType::Udp].total, 0);
    assert_eq!(snap.requests_active.iter().map(|(_, n)| n).sum::<u64>(), 0);
}
