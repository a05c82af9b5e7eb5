//! File-system requests, name lookups and signal handles.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::rc::Rc;

use loopd::engine::{Handle, Loop, RequestType, RunMode, Signal};

#[test]
fn open_read_stat_readdir_close_on_the_pool() {
    let dir = std::env::temp_dir().join(format!("loopd-fs-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("data.bin");
    let content: Vec<u8> = (0..200_000).map(|i| (i % 256) as u8).collect();
    std::fs::write(&path, &content).unwrap();

    let mut lp = Loop::new().unwrap();
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    lp.fs_open(&path, move |lp, file| {
        let file = file.unwrap();
        fn read_from(
            lp: &mut Loop,
            file: loopd::engine::FsFile,
            offset: u64,
            g: Rc<RefCell<Vec<u8>>>,
        ) {
            let f2 = file.clone();
            lp.fs_read(&file, offset, 64 * 1024, move |lp, chunk| {
                let chunk = chunk.unwrap();
                if chunk.is_empty() {
                    lp.fs_close(f2, |_, r| r.unwrap());
                    return;
                }
                g.borrow_mut().extend_from_slice(&chunk);
                read_from(lp, f2, offset + chunk.len() as u64, g);
            });
        }
        read_from(lp, file, 0, g);
    });
    let size = Rc::new(RefCell::new(0));
    let s = size.clone();
    lp.fs_stat(&path, move |_, m| *s.borrow_mut() = m.unwrap().len());
    let names = Rc::new(RefCell::new(Vec::new()));
    let n = names.clone();
    lp.fs_readdir(&dir, move |_, entries| {
        *n.borrow_mut() = entries.unwrap().into_iter().map(|e| e.name).collect()
    });
    let missing = Rc::new(RefCell::new(None));
    let m = missing.clone();
    lp.fs_open(dir.join("nope"), move |_, r| {
        *m.borrow_mut() = Some(r.unwrap_err().kind())
    });
    lp.run(RunMode::Default);
    assert!(*got.borrow() == content);
    assert_eq!(*size.borrow(), 200_000);
    assert_eq!(*names.borrow(), vec!["data.bin".to_string()]);
    assert_eq!(*missing.borrow(), Some(std::io::ErrorKind::NotFound));
    let snap = lp.observer().snapshot();
    assert!(snap.requests_started[RequestType::Fs.index()] >= 7);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn getaddrinfo_resolves_localhost() {
    let mut lp = Loop::new().unwrap();
    let addrs = Rc::new(RefCell::new(Vec::new()));
    let a = addrs.clone();
    lp.getaddrinfo("localhost", 80, move |_, r| *a.borrow_mut() = r.unwrap());
    lp.run(RunMode::Default);
    assert!(addrs
        .borrow()
        .iter()
        .any(|a| a.ip().is_loopback() && a.port() == 80));
}

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
