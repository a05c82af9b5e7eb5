//! Shared helpers of the `observe_*` tests: a real loop on its own thread, `Observe` on free
//! ports and a temporary socket, and small clients for the control socket and HTTP.
//! (Also built as its own, empty, test binary.)
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use loopd_engine::instrument::LoopObserver;
use loopd_engine::{Async, AsyncSender, Handle, Loop, LoopOptions, RunMode, ThreadPool};
use loopd_observe::{
    Observe, ObserveHandle, ObserveInput, ObserveOptions, ServiceRegistry, StaticConfig,
};
use serde_json::{json, Value};

type Command = Box<dyn FnOnce(&mut Loop) + Send>;

/// A loop running on its own thread, driven by commands.
pub struct TestLoop {
    commands: Arc<Mutex<VecDeque<Command>>>,
    sender: AsyncSender,
    thread: Option<JoinHandle<()>>,
    pub observer: Arc<LoopObserver>,
    pub pool: Arc<ThreadPool>,
}

impl TestLoop {
    pub fn start() -> TestLoop {
        let pool = Arc::new(ThreadPool::new(2));
        let commands: Arc<Mutex<VecDeque<Command>>> = Arc::default();
        let (tx, rx) = mpsc::channel();
        let (cmds, p) = (commands.clone(), pool.clone());
        let thread = std::thread::Builder::new()
            .name("test-loop".into())
            .spawn(move || {
                let mut lp = Loop::with_options(LoopOptions {
                    pool: Some(p),
                    ..LoopOptions::default()
                })
                .unwrap();
                let a = Async::new(&mut lp, move |lp, _| loop {
                    let next = cmds.lock().unwrap().pop_front();
                    match next {
                        Some(c) => c(lp),
                        None => break,
                    }
                });
                a.set_label(&mut lp, "test commands");
                tx.send((lp.observer(), a.sender(&lp).unwrap())).unwrap();
                lp.run(RunMode::Default);
            })
            .unwrap();
        let (observer, sender) = rx.recv().unwrap();
        TestLoop {
            commands,
            sender,
            thread: Some(thread),
            observer,
            pool,
        }
    }

    /// Runs `f` on the loop (in its poll phase, as the async handle's callback).
    pub fn run(&self, f: impl FnOnce(&mut Loop) + Send + 'static) {
        self.commands.lock().unwrap().push_back(Box::new(f));
        self.sender.send();
    }

    /// Runs `f` on the loop and returns its result.
    pub fn call<T: Send + 'static>(&self, f: impl FnOnce(&mut Loop) -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        self.run(move |lp| {
            let _ = tx.send(f(lp));
        });
        rx.recv_timeout(Duration::from_secs(30)).unwrap()
    }
}

impl Drop for TestLoop {
    fn drop(&mut self) {
        self.run(|lp| lp.stop());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A fresh private directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "loopd-obs-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A test loop with `Observe` serving it.
pub struct Harness {
    pub observe: ObserveHandle,
    pub lp: TestLoop,
    pub services: ServiceRegistry,
    pub dir: TempDir,
}

pub struct Setup {
    pub stall_threshold: Duration,
    pub health_threshold: Duration,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            stall_threshold: Duration::from_millis(100),
            health_threshold: Duration::from_secs(1),
        }
    }
}

impl Harness {
    pub fn start() -> Harness {
        Harness::with(Setup::default())
    }

    pub fn with(setup: Setup) -> Harness {
        let lp = TestLoop::start();
        let dir = TempDir::new();
        let services = ServiceRegistry::default();
        let config = proto::ConfigResult {
            log_filter: "info".into(),
            ..Default::default()
        };
        let observe = Observe::start(ObserveOptions {
            metrics_addr: Some("127.0.0.1:0".parse().unwrap()),
            control_path: Some(dir.0.join("control.sock")),
            control_name: None,
            control: true,
            stall_threshold: setup.stall_threshold,
            health_threshold: setup.health_threshold,
            input: ObserveInput::from_engine(
                vec![lp.observer.clone()],
                lp.pool.clone(),
                services.clone(),
            ),
            config: Arc::new(StaticConfig(config)),
            ..ObserveOptions::default()
        })
        .unwrap();
        Harness {
            observe,
            lp,
            services,
            dir,
        }
    }

    pub fn socket(&self) -> &Path {
        self.observe.control_path().unwrap()
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.observe.metrics_addr().unwrap()
    }

    pub fn client(&self) -> Client {
        Client::connect(self.socket())
    }

    pub fn loop_index(&self) -> usize {
        self.lp.observer.index()
    }
}

/// A control-socket client (blocking, with timeouts).
pub struct Client {
    pub writer: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: i64,
    pub hello: Value,
    /// Notifications read while waiting for a response.
    pub notifications: VecDeque<Value>,
}

impl Client {
    pub fn connect(path: &Path) -> Client {
        let stream = UnixStream::connect(path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut c = Client {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
            next_id: 1,
            hello: Value::Null,
            notifications: VecDeque::new(),
        };
        c.hello = c.read_line().expect("hello");
        assert_eq!(c.hello["method"], "hello", "{}", c.hello);
        c
    }

    /// The next message, or `None` at end of stream.
    pub fn read_line(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))),
        }
    }

    /// The next line as text (not parsed), or `None` at end of stream.
    pub fn read_raw_line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line),
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// Sends a request and returns the whole response object.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut req = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if !params.is_null() {
            req["params"] = params;
        }
        let mut line = serde_json::to_vec(&req).unwrap();
        line.push(b'\n');
        self.send_raw(&line);
        self.response_to(json!(id))
    }

    /// Reads until the response with `id`, keeping notifications aside.
    pub fn response_to(&mut self, id: Value) -> Value {
        loop {
            let msg = self
                .read_line()
                .expect("connection closed before the response");
            if msg.get("method").is_some() && msg.get("id").is_none() {
                self.notifications.push_back(msg);
                continue;
            }
            assert_eq!(msg["id"], id, "{msg}");
            return msg;
        }
    }

    /// The result of a call that must succeed.
    pub fn result(&mut self, method: &str, params: Value) -> Value {
        let r = self.call(method, params);
        assert!(r.get("error").is_none(), "{method}: {r}");
        r["result"].clone()
    }

    /// The error code of a call that must fail.
    pub fn error_code(&mut self, method: &str, params: Value) -> i64 {
        let r = self.call(method, params);
        r["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("{method} should fail: {r}"))
    }

    /// The next notification named `method`, within `timeout`.
    pub fn notification(&mut self, method: &str, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        if let Some(i) = self
            .notifications
            .iter()
            .position(|n| n["method"] == method)
        {
            return self.notifications.remove(i);
        }
        while Instant::now() < deadline {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            self.reader.get_ref().set_read_timeout(Some(left)).unwrap();
            let msg = self.read_line();
            self.reader
                .get_ref()
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            match msg {
                Some(m) if m["method"] == method => return Some(m),
                Some(m) => self.notifications.push_back(m),
                None => return None,
            }
        }
        None
    }
}

/// One HTTP exchange: `(status, body, how long it took)`.
pub fn http(addr: SocketAddr, request: &str) -> (u16, String, Duration) {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let took = t0.elapsed();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body, took)
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let Some((size, rest)) = body.split_once("\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            return out;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
}

/// `GET path`.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String, Duration) {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    )
}

/// The value of the sample `name{labels}` in a Prometheus text page (labels as written).
pub fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}

/// Polls `f` until it returns `Some`, for at most `timeout`.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
