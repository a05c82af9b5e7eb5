//! Starts a real `loopd` with a config of the test's choosing, reads the bound addresses from
//! its JSON logs, and kills it on drop.

#![allow(dead_code)] // shared by several test binaries; each uses a part

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Generous: debug builds on a loaded 2-core machine.
pub const STARTUP: Duration = Duration::from_secs(30);

/// Path of a workspace binary next to this test executable.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

/// Path of an example of the `loopd` crate (`loopd/examples/NAME.rs`), built by
/// `cargo build --workspace --all-targets`.
pub fn example(name: &str) -> PathBuf {
    let path = binary("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: build the examples first (cargo build --workspace --all-targets)",
        path.display()
    );
    path
}

/// Waits (up to [`STARTUP`]) for a program's control socket to appear, then connects.
pub fn wait_for_socket(path: &Path) -> Control {
    let deadline = Instant::now() + STARTUP;
    while !path.exists() {
        assert!(Instant::now() < deadline, "no socket at {}", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
    Control::connect_path(path)
}

/// `promtool check metrics` on a scraped page: `Err` with promtool's words when it rejects
/// it. promtool must be installed (scripts/test.sh installs Debian's `prometheus`).
pub fn promtool_check(page: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is needed (scripts/test.sh installs prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A TCP port free on loopback right now (for a program that takes its port as a flag).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "loopd-e2e-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        // 0755 whatever the umask: loopd refuses a control directory others can write to.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How [`Daemon::launch`] starts loopd, beyond its config.
#[derive(Default)]
pub struct Launch<'a> {
    /// Extra command-line arguments.
    pub args: &'a [&'a str],
    /// Extra environment variables.
    pub env: &'a [(&'a str, &'a str)],
    /// The open-file limit (soft and hard), set by `sh -c 'ulimit -n N; exec loopd …'`.
    pub nofile: Option<u64>,
    /// The control socket where loopd puts it by default (see [`Daemon::start_default_control`]).
    pub default_control: bool,
    /// No `--log info` (and no `LOOPD_LOG`/`RUST_LOG`): the config's `log` decides; it must
    /// keep INFO lines on, which startup is read from.
    pub log_from_file: bool,
    /// Another program built on the loopd library (e.g. [`example`]`("custom-service")`)
    /// instead of `loopd`; it takes loopd's flags.
    pub program: Option<PathBuf>,
}

/// A running daemon.
pub struct Daemon {
    child: Child,
    /// Bound address per service name (`seq`, `prime`, `http`, …).
    pub services: HashMap<String, SocketAddr>,
    pub metrics: Option<SocketAddr>,
    pub control: PathBuf,
    pub dir: TempDir,
    logs: Arc<Mutex<Vec<serde_json::Value>>>,
    log_rx: Mutex<mpsc::Receiver<serde_json::Value>>,
}

fn field<'a>(line: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    line.get("fields")?.get(name)?.as_str()
}

impl Daemon {
    /// The three services on free ports (`prime` in `mode`), metrics on a free port.
    pub fn start_services(prime_mode: &str) -> Daemon {
        Daemon::start(&format!(
            "[[service]]\nkind = \"seq\"\nbind = \"127.0.0.1:0\"\n\
             [[service]]\nkind = \"prime\"\nbind = \"127.0.0.1:0\"\nmode = \"{prime_mode}\"\n\
             [[service]]\nkind = \"http\"\nbind = \"127.0.0.1:0\"\nroot = \"@DIR@/www\"\n"
        ))
    }

    /// Starts loopd with `services_toml` (`@DIR@` is replaced by the test's temp dir),
    /// metrics on a free port and the control socket in the temp dir.
    pub fn start(services_toml: &str) -> Daemon {
        Daemon::start_with_args(services_toml, &[])
    }

    pub fn start_with_args(services_toml: &str, args: &[&str]) -> Daemon {
        Daemon::launch(
            services_toml,
            Launch {
                args,
                ..Launch::default()
            },
        )
    }

    /// Like [`Daemon::start`], but the control socket goes where loopd puts it by default
    /// (DESIGN §5): no `control` in the config, `$XDG_RUNTIME_DIR` set to the test's temp dir,
    /// so the socket is `<temp dir>/loopd/control.sock` in a directory loopd creates.
    pub fn start_default_control(services_toml: &str) -> Daemon {
        Daemon::launch(
            services_toml,
            Launch {
                default_control: true,
                ..Launch::default()
            },
        )
    }

    /// Like [`Daemon::start`], with loopd's open-file limit (soft and hard) set to `nofile`
    /// by `sh -c 'ulimit -n N; exec loopd …'` (so `pid()` is loopd's own after the exec).
    pub fn start_with_nofile(services_toml: &str, nofile: u64) -> Daemon {
        Daemon::launch(
            services_toml,
            Launch {
                nofile: Some(nofile),
                ..Launch::default()
            },
        )
    }

    /// Starts loopd with `services_toml` as [`Daemon::start`] does, launched as `how` says.
    pub fn launch(services_toml: &str, how: Launch<'_>) -> Daemon {
        let Launch {
            args,
            env,
            nofile,
            default_control,
            log_from_file,
            program,
        } = how;
        let program = program.unwrap_or_else(|| binary("loopd"));
        let dir = TempDir::new("daemon");
        std::fs::create_dir_all(dir.0.join("www")).unwrap();
        let (control, control_line) = if default_control {
            (dir.0.join("loopd").join("control.sock"), String::new())
        } else {
            let path = dir.0.join("control.sock");
            let line = format!("control = \"{}\"\n", path.display());
            (path, line)
        };
        let config = format!(
            "metrics_addr = \"127.0.0.1:0\"\n{control_line}{}",
            services_toml.replace("@DIR@", &dir.0.display().to_string())
        );
        let config_path = dir.0.join("loopd.toml");
        std::fs::write(&config_path, config).unwrap();
        let expected = services_toml.matches("[[service]]").count();
        let mut command = match nofile {
            None => Command::new(&program),
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(&program);
                c
            }
        };
        command
            .arg("--config")
            .arg(&config_path)
            .args(["--log-format", "json"]);
        if log_from_file {
            command.env_remove("LOOPD_LOG").env_remove("RUST_LOG");
        } else {
            command.args(["--log", "info"]);
        }
        let mut child = command
            .args(args)
            .envs(env.iter().copied())
            .env_remove("LOOPD_SOCKET")
            .env("XDG_RUNTIME_DIR", &dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let keep = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "raw": line }));
                keep.lock().unwrap().push(value.clone());
                let _ = tx.send(value);
            }
        });
        let mut d = Daemon {
            child,
            services: HashMap::new(),
            metrics: None,
            control,
            dir,
            logs,
            log_rx: Mutex::new(rx),
        };
        let deadline = Instant::now() + STARTUP;
        let mut without_listener = 0;
        loop {
            let line = d
                .next_log(deadline)
                .unwrap_or_else(|| panic!("loopd did not start; logs: {:?}", d.logs()));
            match field(&line, "message") {
                Some("service started (no listener)") => without_listener += 1,
                Some("service listening") => {
                    let name = field(&line, "service").unwrap().to_string();
                    let addr = field(&line, "addr").unwrap().parse().unwrap();
                    d.services.insert(name, addr);
                }
                Some("metrics endpoint listening") => {
                    d.metrics = field(&line, "addr").and_then(|a| a.parse().ok());
                }
                Some("loopd running") => break,
                _ => {}
            }
        }
        assert_eq!(
            d.services.len() + without_listener,
            expected,
            "every service started"
        );
        d
    }

    fn next_log(&self, deadline: Instant) -> Option<serde_json::Value> {
        let rx = self.log_rx.lock().unwrap();
        let left = deadline.checked_duration_since(Instant::now())?;
        rx.recv_timeout(left).ok()
    }

    /// Waits for a log line whose message contains `text`.
    pub fn wait_log(&self, text: &str, within: Duration) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            match self.next_log(deadline) {
                Some(line) if field(&line, "message").is_some_and(|m| m.contains(text)) => {
                    return line
                }
                Some(_) => continue,
                None => panic!("no log line with {text:?}; logs: {:?}", self.logs()),
            }
        }
    }

    pub fn logs(&self) -> Vec<serde_json::Value> {
        self.logs.lock().unwrap().clone()
    }

    pub fn addr(&self, service: &str) -> SocketAddr {
        self.services[service]
    }

    /// True while the process has not exited.
    pub fn is_alive(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "loopd did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A plain HTTP/1.0 GET against the metrics endpoint: (status, body).
    pub fn scrape(&self, path: &str) -> (u16, String) {
        http_get(self.metrics.expect("metrics enabled"), path)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `loopd` with `args` to completion: (exit code, stderr).
pub fn run_loopd(args: &[&str]) -> (i32, String) {
    run_program(&binary("loopd"), args)
}

/// A config file in a fresh temp dir, with no metrics endpoint, the control socket in that
/// dir, and `rest` (services, …): (the dir, kept alive by the caller; the file).
pub fn config_file(tag: &str, rest: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new(tag);
    let path = dir.0.join("loopd.toml");
    let text = format!(
        "metrics_addr = \"off\"\ncontrol = \"{}/c.sock\"\n{rest}",
        dir.0.display()
    );
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// `loopctl --socket SOCKET --color never ARGS…`, started with its output piped.
pub fn spawn_loopctl(socket: &Path, args: &[&str]) -> std::process::Child {
    Command::new(binary("loopctl"))
        .arg("--socket")
        .arg(socket)
        .args(["--color", "never"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs `program` (loopd, or a program built on its library) with `args` to completion:
/// (exit code, stderr).
pub fn run_program(program: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(program)
        .args(args)
        .env_remove("LOOPD_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A client connection with a read timeout, so a broken server fails the test, not hangs it.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads exactly `n` bytes.
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).unwrap();
    buf
}

/// Reads one line (without the newline).
pub fn read_line(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    loop {
        s.read_exact(&mut b).unwrap();
        if b[0] == b'\n' {
            return String::from_utf8(out).unwrap();
        }
        out.push(b[0]);
    }
}

/// A sample's value in a Prometheus text page, by the start of its line (name and labels),
/// e.g. `metric(page, "loopd_service_connections{service=\"seq\"}")`.
pub fn metric(page: &str, name_and_labels: &str) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Resident set size of process `pid`, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A plain HTTP/1.0 GET: (status, body); names the request if reading fails or times out.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = connect(addr);
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    if let Err(e) = s.read_to_end(&mut raw) {
        panic!("GET {path} from {addr}: {e} after {} bytes", raw.len());
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The shared deterministic generator (`testkit`).
#[allow(unused_imports)] // shared by several test binaries; each uses a part
pub use testkit::Rng;

/// A JSON-RPC client of the control socket.
pub struct Control {
    /// The socket's read side (for tests that read raw lines).
    pub reader: BufReader<std::os::unix::net::UnixStream>,
    /// The socket's write side (for tests that send raw bytes).
    pub writer: std::os::unix::net::UnixStream,
    next_id: u64,
    /// The daemon's `hello` notification.
    pub hello: serde_json::Value,
}

impl Control {
    /// Connects and reads the `hello` (asserted to be one).
    pub fn connect(d: &Daemon) -> Control {
        Control::connect_path(&d.control)
    }

    /// Connects to the control socket at `path` (a program observed with
    /// `loopd::observe_loops`, an example, …) and reads its `hello`.
    pub fn connect_path(path: &Path) -> Control {
        let s = std::os::unix::net::UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let writer = s.try_clone().unwrap();
        let mut c = Control {
            reader: BufReader::new(s),
            writer,
            next_id: 1,
            hello: serde_json::Value::Null,
        };
        c.hello = c.read_message();
        assert_eq!(c.hello["method"], "hello", "{}", c.hello);
        c
    }

    /// The next line from the daemon, parsed.
    pub fn read_message(&mut self) -> serde_json::Value {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).unwrap();
        assert!(n > 0, "control socket closed");
        serde_json::from_str(&line).unwrap()
    }

    /// Sends a raw line and returns the next response (notifications skipped).
    pub fn raw(&mut self, line: &[u8]) -> serde_json::Value {
        self.writer.write_all(line).unwrap();
        self.writer.write_all(b"\n").unwrap();
        loop {
            let m = self.read_message();
            if m.get("id").is_some() {
                return m;
            }
        }
    }

    /// Calls `method`; its result (panics on an error answer).
    pub fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let id = self.next_id;
        self.next_id += 1;
        let req =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let resp = self.raw(req.to_string().as_bytes());
        assert_eq!(resp["id"], serde_json::json!(id));
        if let Some(e) = resp.get("error") {
            panic!("{method} failed: {e}");
        }
        resp["result"].clone()
    }
}
