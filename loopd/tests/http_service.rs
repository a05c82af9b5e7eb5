//! The `http` service on a real loop, driven by blocking std clients: files, statuses,
//! keep-alive and pipelining, path escapes, a 50 MB transfer and a client that leaves early.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use loopd::engine::instrument::LoopObserver;
use loopd::engine::{Async, AsyncSender, Handle, Loop, RunMode};
use loopd::observe::ServiceCounters;
use loopd::services::http::{start, HttpOptions};

/// A loop thread serving `root`; dropping it closes the listener and joins the thread (which
/// ends once every connection is closed).
struct Server {
    addr: SocketAddr,
    counters: Arc<ServiceCounters>,
    observer: Arc<LoopObserver>,
    stop: AsyncSender,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(root: &Path) -> Server {
        let counters = Arc::new(ServiceCounters::default());
        let (tx, rx) = mpsc::channel();
        let options = HttpOptions {
            root: root.to_path_buf(),
            counters: counters.clone(),
        };
        let thread = std::thread::spawn(move || {
            let mut lp = Loop::new().unwrap();
            let listener = start(&mut lp, "127.0.0.1:0".parse().unwrap(), options).unwrap();
            let addr = listener.local_addr(&lp).unwrap();
            let stop = Async::new(&mut lp, move |lp, a| {
                listener.close(lp);
                a.close(lp);
            });
            tx.send((addr, stop.sender(&lp).unwrap(), lp.observer()))
                .unwrap();
            lp.run(RunMode::Default);
            // A panic in a callback is caught by the loop: make it fail the test.
            assert_eq!(lp.observer().snapshot().callback_panics, 0);
        });
        let (addr, stop, observer) = rx.recv().unwrap();
        Server {
            addr,
            counters,
            observer,
            stop,
            thread: Some(thread),
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    /// Sends `raw` on a new connection and reads one response.
    fn exchange(&self, raw: &[u8]) -> Response {
        let mut s = self.connect();
        s.write_all(raw).unwrap();
        let head_only = raw.starts_with(b"HEAD ");
        read_response(&mut BufReader::new(s), head_only)
    }

    fn get(&self, path: &str) -> Response {
        self.exchange(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.send();
        if let Some(t) = self.thread.take() {
            if let Err(panic) = t.join() {
                if !std::thread::panicking() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_response(r: &mut BufReader<TcpStream>, head_only: bool) -> Response {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line
        .split(' ')
        .nth(1)
        .unwrap_or_else(|| panic!("status line {line:?}"))
        .parse()
        .unwrap();
    assert!(line.starts_with("HTTP/1.1 "), "{line:?}");
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').unwrap();
        headers.push((n.to_string(), v.trim().to_string()));
    }
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if !head_only {
        let len: usize = resp.header("content-length").unwrap().parse().unwrap();
        resp.body = vec![0; len];
        r.read_exact(&mut resp.body).unwrap();
    }
    resp
}

/// A fresh directory tree: `root/` with files, a subdirectory and symlinks, and a sibling
/// `outside/` holding a secret.
fn tree(name: &str) -> PathBuf {
    let base = std::env::temp_dir().join(format!("loopd-http-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let root = base.join("root");
    std::fs::create_dir_all(root.join("sub/dir")).unwrap();
    std::fs::create_dir_all(base.join("outside")).unwrap();
    std::fs::write(root.join("index.html"), "<h1>hello</h1>\n").unwrap();
    std::fs::write(root.join("style.css"), "body{}").unwrap();
    std::fs::write(root.join("data.json"), "{\"a\":1}").unwrap();
    std::fs::write(root.join("blob.bin"), [0u8, 1, 2, 255]).unwrap();
    std::fs::write(root.join("empty.txt"), "").unwrap();
    std::fs::write(root.join("sub/a b.txt"), "spaced").unwrap();
    std::fs::write(base.join("outside/secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(base.join("outside/secret.txt"), root.join("escape.txt")).unwrap();
    std::os::unix::fs::symlink(base.join("outside"), root.join("escape-dir")).unwrap();
    std::os::unix::fs::symlink("index.html", root.join("alias.html")).unwrap();
    root
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn big_file(path: &Path, len: usize) -> u64 {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(path, &data).unwrap();
    fnv1a(&data)
}

/// Waits (bounded) for `cond`.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn serves_files_with_type_and_length() {
    let root = tree("files");
    let server = Server::start(&root);
    for (path, body, mime) in [
        (
            "/index.html",
            &b"<h1>hello</h1>\n"[..],
            "text/html; charset=utf-8",
        ),
        ("/style.css", b"body{}", "text/css; charset=utf-8"),
        ("/data.json", b"{\"a\":1}", "application/json"),
        ("/blob.bin", &[0, 1, 2, 255], "application/octet-stream"),
        ("/empty.txt", b"", "text/plain; charset=utf-8"),
        (
            "/sub/a%20b.txt?query=1",
            b"spaced",
            "text/plain; charset=utf-8",
        ),
        (
            "/alias.html",
            b"<h1>hello</h1>\n",
            "text/html; charset=utf-8",
        ),
        ("//sub/./a%20b.txt", b"spaced", "text/plain; charset=utf-8"),
    ] {
        let r = server.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body, body, "{path}");
        assert_eq!(r.header("content-type"), Some(mime), "{path}");
        assert_eq!(r.header("content-length"), Some(&*body.len().to_string()));
        assert_eq!(r.header("connection"), Some("close"));
    }
    let r = server.exchange(b"HEAD /index.html HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("15"));
    // HEAD has no body: the connection ends right after the head.
    let mut s = server.connect();
    s.write_all(b"HEAD /index.html HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    assert!(
        all.ends_with(b"\r\n\r\n"),
        "{}",
        String::from_utf8_lossy(&all)
    );
    drop(s);
    eventually("connections closed", || server.counters.connections() == 0);
    assert!(server.counters.connections_total() >= 10);
    assert!(server.counters.bytes_sent() > 0);
    assert!(server.counters.bytes_received() > 0);
}

#[test]
fn error_statuses() {
    let root = tree("errors");
    let server = Server::start(&root);
    assert_eq!(server.get("/missing.html").status, 404);
    assert_eq!(server.get("/index.html/x").status, 404);
    for escape in [
        "/../outside/secret.txt",
        "/sub/../../outside/secret.txt",
        "/%2e%2e/outside/secret.txt",
        "/%2E%2e%2Foutside%2Fsecret.txt",
        "/escape.txt",
        "/escape-dir/secret.txt",
        "/sub/dir",
        "/sub/",
        "/",
    ] {
        let r = server.get(escape);
        assert_eq!(r.status, 403, "{escape}");
        assert!(!r.body.starts_with(b"secret"));
    }
    let r = server.exchange(b"POST /index.html HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    for garbage in [
        &b"garbage\r\n\r\n"[..],
        b"GET /%zz HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET / HTTP/3\r\n\r\n",
    ] {
        let r = server.exchange(garbage);
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(garbage));
        assert_eq!(r.header("connection"), Some("close"));
    }
    let mut huge = b"GET /index.html HTTP/1.1\r\nX-Big: ".to_vec();
    huge.resize(40 * 1024, b'a');
    huge.extend_from_slice(b"\r\n\r\n");
    // A head over 16 KiB: 431 Request Header Fields Too Large (RFC 6585), as /metrics answers.
    assert_eq!(server.exchange(&huge).status, 431);
    let r = server.exchange(b"GET /index.html HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(r.status, 413);
    let r =
        server.exchange(b"GET /index.html HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(r.status, 413);
}

#[test]
fn keep_alive_pipelining_and_http10() {
    let root = tree("keepalive");
    let server = Server::start(&root);
    // Two requests, one after the other, on one connection.
    let s = server.connect();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    for path in ["/index.html", "/style.css"] {
        w.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let resp = read_response(&mut r, false);
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("connection"), Some("keep-alive"));
    }
    // Pipelined: four requests in one write, answered in order (errors included).
    w.write_all(
        b"GET /data.json HTTP/1.1\r\n\r\nHEAD /index.html HTTP/1.1\r\n\r\n\
          GET /nope HTTP/1.1\r\n\r\nGET /style.css HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let a = read_response(&mut r, false);
    assert_eq!((a.status, &a.body[..]), (200, &b"{\"a\":1}"[..]));
    let b = read_response(&mut r, true);
    assert_eq!((b.status, b.header("content-length")), (200, Some("15")));
    assert_eq!(read_response(&mut r, false).status, 404);
    let d = read_response(&mut r, false);
    assert_eq!((d.status, &d.body[..]), (200, &b"body{}"[..]));
    assert_eq!(d.header("connection"), Some("close"));
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "the server closed after Connection: close");

    // HTTP/1.0 closes unless keep-alive is asked for.
    let mut s = server.connect();
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    assert!(all.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(all.ends_with(b"<h1>hello</h1>\n"));
    let s = server.connect();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    for _ in 0..2 {
        w.write_all(b"GET /index.html HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let resp = read_response(&mut r, false);
        assert_eq!(resp.header("connection"), Some("keep-alive"));
    }
}

#[test]
fn a_50_mb_file_arrives_intact() {
    let root = tree("big");
    let len = 50 * 1024 * 1024;
    let sum = big_file(&root.join("big.bin"), len);
    let server = Server::start(&root);
    let started = Instant::now();
    let r = server.get("/big.bin");
    let took = started.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), len);
    assert_eq!(fnv1a(&r.body), sum);
    eprintln!("50 MB in {took:?} ({:.0} MB/s)", 50.0 / took.as_secs_f64());
    eventually("connection closed", || server.counters.connections() == 0);
    assert!(server.counters.bytes_sent() >= len as u64);
}

/// Whether some open file descriptor of this process points at `path`.
fn fd_open_to(path: &Path) -> bool {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| std::fs::read_link(e.path()).is_ok_and(|p| p == path))
}

#[test]
fn a_client_leaving_mid_response_is_cleaned_up() {
    let root = tree("leave");
    let big = root.join("big.bin");
    big_file(&big, 50 * 1024 * 1024);
    let big = std::fs::canonicalize(big).unwrap();
    let server = Server::start(&root);
    for _ in 0..3 {
        let mut s = server.connect();
        s.write_all(b"GET /big.bin HTTP/1.1\r\n\r\n").unwrap();
        let mut got = vec![0; 1024 * 1024];
        s.read_exact(&mut got).unwrap();
        assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
        drop(s);
    }
    eventually("connections closed", || server.counters.connections() == 0);
    eventually("file closed", || !fd_open_to(&big));
    // The server still serves.
    let r = server.get("/index.html");
    assert_eq!((r.status, &r.body[..]), (200, &b"<h1>hello</h1>\n"[..]));
}

#[test]
fn concurrent_keep_alive_clients() {
    let root = tree("concurrent");
    let sum = big_file(&root.join("mid.bin"), 300_000);
    let server = Server::start(&root);
    let addr = server.addr;
    let clients: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut w = s;
                for n in 0..40 {
                    let path = if (i + n) % 2 == 0 {
                        "/mid.bin"
                    } else {
                        "/index.html"
                    };
                    w.write_all(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes())
                        .unwrap();
                    let resp = read_response(&mut r, false);
                    assert_eq!(resp.status, 200);
                    if path == "/mid.bin" {
                        assert_eq!(fnv1a(&resp.body), sum);
                    } else {
                        assert_eq!(resp.body, b"<h1>hello</h1>\n");
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    eventually("connections closed", || server.counters.connections() == 0);
    assert_eq!(server.counters.connections_total(), 8);
}

#[test]
fn handles_are_labelled() {
    let root = tree("labels");
    let server = Server::start(&root);
    let s = server.connect();
    let peer = s.local_addr().unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    w.write_all(b"GET /index.html HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut r, false).status, 200);
    let want_peer = format!("http peer {peer}");
    let want_listen = format!("http listen {}", server.addr);
    eventually("labels in the handle list", || {
        server.observer.request_details();
        let snap = server.observer.snapshot();
        let labels: Vec<_> = snap
            .handle_list
            .iter()
            .filter_map(|h| h.label.as_deref().map(str::to_string))
            .collect();
        labels.contains(&want_peer) && labels.contains(&want_listen)
    });
}

#[test]
fn a_slow_reader_stalls_the_stream_instead_of_buffering_it() {
    let root = tree("slow");
    let len = 50 * 1024 * 1024;
    let sum = big_file(&root.join("big.bin"), len);
    let server = Server::start(&root);
    let mut s = server.connect();
    s.write_all(b"GET /big.bin HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    // Not reading: the server fills the socket buffers, then waits for the write callback
    // before reading more of the file.
    let mut last = u64::MAX;
    eventually("the stream to stall", || {
        std::thread::sleep(Duration::from_millis(100));
        let now = server.counters.bytes_sent();
        std::mem::replace(&mut last, now) == now && now > 0
    });
    eprintln!("stalled after {last} bytes");
    assert!(
        last < (len / 4) as u64,
        "{last} bytes sent to a peer that reads nothing"
    );
    let r = read_response(&mut BufReader::new(s), false);
    assert_eq!(r.status, 200);
    assert_eq!(fnv1a(&r.body), sum);
}
