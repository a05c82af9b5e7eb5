//! The sequence protocol against the real daemon.

use std::io::Write;

use crate::support::{connect, read_n, rss_kib, Daemon};

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

#[test]
fn a_client_that_never_reads_is_pushed_back_not_buffered() {
    let d = Daemon::start_services("pool");
    let mut s = connect(d.addr("seq"));
    assert_eq!(read_n(&mut s, 1), b"*");
    let before = rss_kib(d.pid());
    // Send answer-producing bytes as long as loopd takes them, never reading. Without
    // backpressure loopd would queue every answer: 200 MiB sent, 200 MiB buffered.
    s.set_write_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    s.write_all(b"^").unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0usize;
    while sent < 200 * 1024 * 1024 {
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break, // the kernel buffers are full: loopd stopped reading
        }
    }
    assert!(
        sent < 64 * 1024 * 1024,
        "loopd kept reading {sent} bytes from a peer that never reads"
    );
    let grown = rss_kib(d.pid()).saturating_sub(before);
    assert!(grown < 32 * 1024, "loopd's memory grew by {grown} KiB");
    // Reading resumes the flow: the answers arrive, all of them `b`.
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    while got < sent.min(4 * 1024 * 1024) {
        let n = std::io::Read::read(&mut s, &mut buf).unwrap();
        assert!(n > 0);
        assert!(buf[..n].iter().all(|&b| b == b'b'));
        got += n;
    }
}
