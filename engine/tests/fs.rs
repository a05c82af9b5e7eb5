//! File-system requests and name lookups, on the thread pool.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::rc::Rc;

use loopd_engine::{Loop, RequestType, RunMode};

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
            file: loopd_engine::FsFile,
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
    assert!(snap.requests_started[RequestType::Fs] >= 7);
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
fn read_into_reuses_one_buffer_and_gives_it_back_on_errors() {
    let dir = std::env::temp_dir().join(format!("loopd-fs-into-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("data.bin");
    // Not a multiple of the buffer: the last read is short, then one reads 0 bytes.
    let content: Vec<u8> = (0..150_001u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &content).unwrap();

    let mut lp = Loop::new().unwrap();
    let got = Rc::new(RefCell::new(Vec::new()));
    // (buffer address, length) at every callback: the same allocation every time.
    let buffers = Rc::new(RefCell::new(Vec::new()));
    fn read_from(
        lp: &mut Loop,
        file: loopd_engine::FsFile,
        offset: u64,
        buf: Vec<u8>,
        got: Rc<RefCell<Vec<u8>>>,
        buffers: Rc<RefCell<Vec<(usize, usize)>>>,
    ) {
        let f2 = file.clone();
        lp.fs_read_into(&file, offset, buf, move |lp, n, buf| {
            let n = n.unwrap();
            buffers
                .borrow_mut()
                .push((buf.as_ptr() as usize, buf.len()));
            if n == 0 {
                return;
            }
            got.borrow_mut().extend_from_slice(&buf[..n]);
            read_from(lp, f2, offset + n as u64, buf, got, buffers);
        });
    }
    let (g, b) = (got.clone(), buffers.clone());
    lp.fs_open(&path, move |lp, file| {
        read_from(lp, file.unwrap(), 0, vec![0; 64 * 1024], g, b)
    });
    // A read from a file opened for writing only fails; the buffer comes back whole.
    let failed = Rc::new(RefCell::new(None));
    let f = failed.clone();
    let wpath = dir.join("write-only.bin");
    lp.fs_open_with(
        &wpath,
        std::fs::OpenOptions::new().write(true).create(true).clone(),
        move |lp, file| {
            let file = file.unwrap();
            lp.fs_read_into(&file, 0, vec![9; 100], move |_, r, buf| {
                *f.borrow_mut() = Some((r.is_err(), buf.len(), buf[0]));
            });
        },
    );
    lp.run(RunMode::Default);
    assert!(*got.borrow() == content, "the whole file, in order");
    let buffers = buffers.borrow();
    assert_eq!(buffers.len(), 4, "3 reads with data, then one of 0 bytes");
    assert!(
        buffers.iter().all(|b| *b == buffers[0]),
        "one buffer, never reallocated: {buffers:?}"
    );
    assert_eq!(*failed.borrow(), Some((true, 100, 9)));
    std::fs::remove_dir_all(&dir).ok();
}
