//! The sequence protocol against the real daemon.

use std::io::Write;

use crate::support::{connect, read_n, Daemon};

#[test]
fn greets_answers_inside_messages_and_ignores_the_rest() {
    let d = Daemon::start_services("pool");
    let mut s = connect(d.addr("seq"));
    assert_eq!(read_n(&mut s, 1), b"*");
    s.write_all(b"noise^abc$more noise^\x00\xfe$").unwrap();
    assert_eq!(read_n(&mut s, 5), vec![b'b', b'c', b'd', 1, 0xff]);
}

#[test]
fn frames_split_across_reads_keep_their_state() {
    let d = Daemon::start_services("pool");
    let mut s = connect(d.addr("seq"));
    assert_eq!(read_n(&mut s, 1), b"*");
    let message = b"xx^hello world$yy^!$";
    for b in message {
        s.write_all(&[*b]).unwrap();
        s.flush().unwrap();
    }
    assert_eq!(read_n(&mut s, 12), b"ifmmp!xpsme\"");
}

#[test]
fn two_hundred_concurrent_clients_each_get_their_own_answers() {
    let d = Daemon::start_services("pool");
    let addr = d.addr("seq");
    let clients: Vec<_> = (0..200u32)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = connect(addr);
                assert_eq!(read_n(&mut s, 1), b"*");
                // Letters only: never the `^`/`$` framing bytes.
                let body: Vec<u8> = (0..50).map(|j| b'a' + ((i + j) % 26) as u8).collect();
                let mut msg = b"^".to_vec();
                msg.extend_from_slice(&body);
                msg.push(b'$');
                // Split at a client-specific point to mix frame boundaries.
                let cut = (i as usize % msg.len()).max(1);
                s.write_all(&msg[..cut]).unwrap();
                s.flush().unwrap();
                s.write_all(&msg[cut..]).unwrap();
                let want: Vec<u8> = body.iter().map(|b| b + 1).collect();
                let got = read_n(&mut s, want.len());
                assert_eq!(got, want, "client {i}");
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
}
