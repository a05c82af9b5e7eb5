//! `--daemon`: measures the real `loopd` binary rather than an engine peer.
//!
//! - **ping-pong at `--loops 1` and `--loops 2`**: a daemon with only the `seq` service on
//!   a free port, 100 connections speaking the sequence protocol (read `*`, send `^`, then
//!   each round trip sends one byte `b` and expects `b + 1`), driven by one mio loop in the
//!   harness; round trips per second and the daemon's CPU (from `/proc/PID/stat`, before
//!   and after the round trips, so start-up is not in it). The two configurations
//!   alternate over the repetitions, a fresh daemon each run.
//! - **observing**: one daemon (`--loops 1`) with 10 and then 10,000 idle connections open
//!   to `seq`: `/metrics` scrape time (a fresh HTTP connection per scrape, as Prometheus
//!   without keep-alive) and `status` over the control socket (one connection), median and
//!   p99 of each.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};

use crate::net;
use crate::report::{median, thousands};
use crate::sys;

/// Connections of the ping-pong.
pub const PINGPONG_CONNS: usize = 100;

/// Idle connections held open while observing.
pub const OBSERVE_CONNS: [usize; 2] = [10, 10_000];

/// Sizes of a run.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Round trips per ping-pong run.
    pub round_trips: u64,
    /// Scrapes (and `status` calls) per connection count.
    pub samples: usize,
}

impl Sizes {
    /// Full or `--quick` sizes.
    pub fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                round_trips: 10_000,
                samples: 20,
            }
        } else {
            Sizes {
                round_trips: 100_000,
                samples: 50,
            }
        }
    }
}

/// One ping-pong run against a daemon.
#[derive(Clone, Debug)]
pub struct PingPongRun {
    /// `--loops`.
    pub loops: usize,
    /// Repetition, from 1.
    pub rep: usize,
    /// Round trips.
    pub round_trips: u64,
    /// The client's wall seconds for them.
    pub seconds: f64,
    /// The daemon's user CPU seconds meanwhile.
    pub user_seconds: f64,
    /// The daemon's system CPU seconds meanwhile.
    pub sys_seconds: f64,
}

impl PingPongRun {
    fn rate(&self) -> f64 {
        self.round_trips as f64 / self.seconds
    }

    fn cpu_per_100k(&self) -> f64 {
        (self.user_seconds + self.sys_seconds) * 100_000.0 / self.round_trips as f64
    }
}

/// What observing cost with some number of idle connections open.
#[derive(Clone, Debug)]
pub struct ObserveRun {
    /// Idle connections open to `seq`.
    pub connections: usize,
    /// `loopd_service_connections{service="seq"}` in the last scrape.
    pub connections_seen: Option<f64>,
    /// Milliseconds per `/metrics` scrape, in the order taken.
    pub scrape_ms: Vec<f64>,
    /// Size of the last `/metrics` body, bytes.
    pub body_bytes: usize,
    /// Milliseconds per `status` call, in the order taken.
    pub status_ms: Vec<f64>,
}

/// Everything `--daemon` measured.
#[derive(Debug)]
pub struct Results {
    /// The ping-pong runs, in run order.
    pub pingpong: Vec<PingPongRun>,
    /// Observing, per connection count.
    pub observe: Vec<ObserveRun>,
    /// Round trips per run.
    pub sizes: Sizes,
}

/// Runs both measurements with `loopd` at `exe`.
pub fn run_all(exe: &Path, reps: usize, quick: bool, timeout: Duration) -> Result<Results> {
    let sizes = Sizes::new(quick);
    let mut pingpong = Vec::new();
    for rep in 1..=reps {
        for loops in [1, 2] {
            let run = pingpong_run(exe, loops, rep, sizes.round_trips, timeout)
                .with_context(|| format!("ping-pong at --loops {loops}, rep {rep}"))?;
            eprintln!(
                "  [{rep}/{reps}] --loops {loops}  {:>10.0} round trips/s  daemon cpu {:.3} s \
                 (user {:.3} sys {:.3})",
                run.rate(),
                run.user_seconds + run.sys_seconds,
                run.user_seconds,
                run.sys_seconds
            );
            pingpong.push(run);
        }
    }
    let observe = observe(exe, sizes.samples, timeout).context("observing")?;
    Ok(Results {
        pingpong,
        observe,
        sizes,
    })
}

/// A running `loopd` in its own temporary directory; killed and cleaned up on drop.
struct Daemon {
    child: Child,
    dir: PathBuf,
    seq: SocketAddr,
    metrics: SocketAddr,
    control: PathBuf,
}

impl Daemon {
    fn start(exe: &Path, loops: usize, timeout: Duration) -> Result<Daemon> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "loopd-bench-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let control = dir.join("control.sock");
        let config = format!(
            "metrics_addr = \"127.0.0.1:0\"\ncontrol = \"{}\"\n\n[[service]]\nkind = \"seq\"\n\
             bind = \"127.0.0.1:0\"\n",
            control.display()
        );
        let config_path = dir.join("loopd.toml");
        std::fs::write(&config_path, config)
            .with_context(|| format!("writing {}", config_path.display()))?;
        let mut child = Command::new(exe)
            .arg("--config")
            .arg(&config_path)
            .args(["--loops", &loops.to_string()])
            .args(["--log-format", "json", "--log", "info"])
            .env_remove("LOOPD_SOCKET")
            .env("XDG_RUNTIME_DIR", &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        // The log is read to its end on a thread (a full pipe would block the daemon);
        // start-up lines come through the channel.
        let (tx, rx) = mpsc::channel::<Value>();
        if let Some(stderr) = child.stderr.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let v = serde_json::from_str(&line).unwrap_or_else(|_| json!({ "raw": line }));
                    let _ = tx.send(v);
                }
            });
        }
        let mut daemon = Daemon {
            child,
            dir,
            seq: SocketAddr::from(([0, 0, 0, 0], 0)),
            metrics: SocketAddr::from(([0, 0, 0, 0], 0)),
            control,
        };
        let deadline = Instant::now() + timeout.min(Duration::from_secs(30));
        let (mut seq, mut metrics) = (None, None);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                bail!(
                    "loopd did not start (no \"loopd running\" log line); its log: {}",
                    seen.join(" | ")
                );
            };
            let field = |name: &str| line.get("fields")?.get(name)?.as_str();
            match field("message") {
                Some("service listening") if field("service") == Some("seq") => {
                    seq = field("addr").and_then(|a| a.parse().ok());
                }
                Some("metrics endpoint listening") => {
                    metrics = field("addr").and_then(|a| a.parse().ok());
                }
                Some("loopd running") => break,
                _ => {}
            }
            seen.push(line.to_string());
        }
        daemon.seq = seq.context("loopd logged no seq address")?;
        daemon.metrics = metrics.context("loopd logged no metrics address")?;
        Ok(daemon)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then up to 10 s for the drain; SIGKILL after that.
    fn stop(mut self) -> Result<()> {
        let _ = sys::terminate(self.pid());
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Some(status) = self.child.try_wait()? {
                ensure!(status.success(), "loopd exited with {status}");
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!("loopd did not exit within 10 s of SIGTERM")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// User and system CPU seconds of process `pid` so far (all its threads), from
/// `/proc/PID/stat` (clock ticks, 10 ms).
fn cpu_seconds(pid: u32) -> Result<(f64, f64)> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("unexpected {path}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let tick = |i: usize| -> Result<f64> {
        let v: u64 = fields
            .get(i - 3)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("no field {i} in {path}"))?;
        Ok(v as f64 / sys::clock_ticks_per_second() as f64)
    };
    Ok((tick(14)?, tick(15)?))
}

struct Pinger {
    stream: mio::net::TcpStream,
    /// The byte sent last; its answer is this + 1.
    sent: u8,
}

/// The next byte a connection sends: `a`..`z` in turn (never `$`, which ends a message).
fn next_byte(b: u8) -> u8 {
    if b >= b'z' {
        b'a'
    } else {
        b + 1
    }
}

fn pingpong_run(
    exe: &Path,
    loops: usize,
    rep: usize,
    n: u64,
    timeout: Duration,
) -> Result<PingPongRun> {
    let daemon = Daemon::start(exe, loops, timeout)?;
    let deadline = Instant::now() + timeout;
    let mut poll = Poll::new()?;
    let mut pingers = Vec::with_capacity(PINGPONG_CONNS);
    for i in 0..PINGPONG_CONNS {
        let mut s = std::net::TcpStream::connect(daemon.seq)
            .with_context(|| format!("connect {}", daemon.seq))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(net::remaining(deadline)?))?;
        let mut star = [0u8; 1];
        s.read_exact(&mut star).context("reading the greeting")?;
        ensure!(star == *b"*", "seq greeted with {star:?}, not `*`");
        s.write_all(b"^").context("send")?;
        s.set_nonblocking(true)?;
        let mut stream = mio::net::TcpStream::from_std(s);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)?;
        pingers.push(Pinger { stream, sent: b'a' });
    }
    let mut events = Events::with_capacity(1024);
    let (user0, sys0) = cpu_seconds(daemon.pid())?;
    let start = Instant::now();
    let (mut sent, mut done) = (0u64, 0u64);
    for p in &mut pingers {
        if sent < n {
            p.stream.write_all(&[p.sent]).context("send")?;
            sent += 1;
        }
    }
    let mut buf = [0u8; 64];
    while done < n {
        net::poll_once(&mut poll, &mut events, deadline)?;
        for ev in events.iter() {
            let Some(p) = pingers.get_mut(ev.token().0) else {
                continue;
            };
            loop {
                let k = match p.stream.read(&mut buf) {
                    Ok(0) => bail!("loopd closed connection {}", ev.token().0),
                    Ok(k) => k,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e).context("read"),
                };
                // One byte in flight per connection: exactly one answer comes back.
                ensure!(
                    k == 1 && buf[0] == p.sent + 1,
                    "connection {}: answered {:?} to {:?}",
                    ev.token().0,
                    &buf[..k],
                    p.sent
                );
                done += 1;
                if sent < n {
                    p.sent = next_byte(p.sent);
                    p.stream.write_all(&[p.sent]).context("send")?;
                    sent += 1;
                }
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let (user1, sys1) = cpu_seconds(daemon.pid())?;
    drop(pingers);
    daemon.stop()?;
    Ok(PingPongRun {
        loops,
        rep,
        round_trips: n,
        seconds,
        user_seconds: user1 - user0,
        sys_seconds: sys1 - sys0,
    })
}

/// One `GET /metrics` on a fresh connection: (milliseconds, body).
fn scrape(addr: SocketAddr) -> Result<(f64, String)> {
    let start = Instant::now();
    let mut s = std::net::TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    s.read_to_end(&mut response).context("reading /metrics")?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let text = String::from_utf8_lossy(&response).into_owned();
    ensure!(
        text.starts_with("HTTP/1.1 200"),
        "/metrics answered {:?}",
        text.lines().next().unwrap_or("")
    );
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    Ok((ms, body))
}

/// The value of `loopd_service_connections{service="seq"...}` in a scrape.
fn seq_connections(body: &str) -> Option<f64> {
    body.lines()
        .filter(|l| l.starts_with("loopd_service_connections{") && l.contains("service=\"seq\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

/// A control-socket client: the `hello` read, then one request and answer at a time.
struct Control {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    id: u64,
}

impl Control {
    fn connect(path: &Path) -> Result<Control> {
        let s = UnixStream::connect(path).with_context(|| format!("connect {}", path.display()))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let writer = s.try_clone()?;
        let mut reader = BufReader::new(s);
        let mut hello = String::new();
        reader.read_line(&mut hello).context("reading hello")?;
        ensure!(hello.contains("hello"), "no hello from loopd: {hello:?}");
        Ok(Control {
            reader,
            writer,
            id: 0,
        })
    }

    /// Calls `method`; returns the milliseconds to the whole answer line, and its result.
    fn call(&mut self, method: &str) -> Result<(f64, Value)> {
        self.id += 1;
        let req = json!({ "jsonrpc": "2.0", "id": self.id, "method": method });
        let start = Instant::now();
        self.writer.write_all(format!("{req}\n").as_bytes())?;
        let mut line = String::new();
        loop {
            line.clear();
            ensure!(
                self.reader.read_line(&mut line)? > 0,
                "loopd closed the control connection"
            );
            let v: Value = serde_json::from_str(&line).context("answer is not JSON")?;
            if v.get("id") == Some(&json!(self.id)) {
                let ms = start.elapsed().as_secs_f64() * 1e3;
                if let Some(e) = v.get("error") {
                    bail!("{method}: {e}");
                }
                return Ok((ms, v.get("result").cloned().unwrap_or(Value::Null)));
            }
        }
    }
}

fn observe(exe: &Path, samples: usize, timeout: Duration) -> Result<Vec<ObserveRun>> {
    let daemon = Daemon::start(exe, 1, timeout)?;
    let mut control = Control::connect(&daemon.control)?;
    let mut out = Vec::new();
    for n in OBSERVE_CONNS {
        let deadline = Instant::now() + timeout;
        let conns = net::open_confirmed(daemon.seq, n, 100, (b"", b'*'), deadline)
            .with_context(|| format!("opening {n} connections to seq"))?;
        // Two snapshot publications, so that the counts include the new connections.
        std::thread::sleep(Duration::from_millis(1500));
        let (mut scrape_ms, mut status_ms) = (Vec::new(), Vec::new());
        let mut last = String::new();
        for _ in 0..samples {
            let (ms, body) = scrape(daemon.metrics)?;
            scrape_ms.push(ms);
            last = body;
        }
        for _ in 0..samples {
            status_ms.push(control.call("status")?.0);
        }
        let run = ObserveRun {
            connections: n,
            connections_seen: seq_connections(&last),
            scrape_ms,
            body_bytes: last.len(),
            status_ms,
        };
        eprintln!(
            "  {n:>6} connections: scrape median {:.2} ms, status median {:.2} ms",
            median(run.scrape_ms.clone()),
            median(run.status_ms.clone())
        );
        out.push(run);
        drop(conns);
        // Let the daemon close them before the next count.
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(control);
    daemon.stop()?;
    Ok(out)
}

/// The `q`-quantile (0..=1) of `xs`, nearest rank.
fn quantile(mut xs: Vec<f64>, q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let rank = (q * xs.len() as f64).ceil() as usize;
    xs[rank.clamp(1, xs.len()) - 1]
}

/// Medians of the ping-pong runs of one configuration.
struct PingPongSummary {
    runs: usize,
    rate: f64,
    spread: f64,
    user: f64,
    sys: f64,
    cpu_per_100k: f64,
}

fn summarize(runs: &[PingPongRun], loops: usize) -> Option<PingPongSummary> {
    let mine: Vec<&PingPongRun> = runs.iter().filter(|r| r.loops == loops).collect();
    if mine.is_empty() {
        return None;
    }
    let rates: Vec<f64> = mine.iter().map(|r| r.rate()).collect();
    let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = rates.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let rate = median(rates);
    Some(PingPongSummary {
        runs: mine.len(),
        rate,
        spread: if rate > 0.0 { (hi - lo) / rate } else { 0.0 },
        user: median(mine.iter().map(|r| r.user_seconds).collect()),
        sys: median(mine.iter().map(|r| r.sys_seconds).collect()),
        cpu_per_100k: median(mine.iter().map(|r| r.cpu_per_100k()).collect()),
    })
}

/// The human table.
pub fn table(r: &Results, exe: &Path) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== daemon ping-pong: the real loopd ({}), seq service, {PINGPONG_CONNS} connections, \
         n={} round trips per run, configurations alternating, a fresh daemon per run\n   \
         daemon CPU from /proc/PID/stat (10 ms ticks) over the round trips only",
        exe.display(),
        r.sizes.round_trips
    );
    let _ = writeln!(
        out,
        "{:<10} {:>14} {:>7} {:>8} {:>8} {:>8} {:>12} {:>5}",
        "config", "round trips/s", "spread", "cpu-s", "user-s", "sys-s", "cpu-s/100k", "runs"
    );
    let sums: Vec<(usize, Option<PingPongSummary>)> =
        [1, 2].map(|l| (l, summarize(&r.pingpong, l))).into();
    for (loops, s) in &sums {
        match s {
            Some(s) => {
                let _ = writeln!(
                    out,
                    "{:<10} {:>14} {:>6.1}% {:>8.3} {:>8.3} {:>8.3} {:>12.3} {:>5}",
                    format!("--loops {loops}"),
                    thousands(s.rate),
                    s.spread * 100.0,
                    s.user + s.sys,
                    s.user,
                    s.sys,
                    s.cpu_per_100k,
                    s.runs
                );
            }
            None => {
                let _ = writeln!(out, "--loops {loops}  not run");
            }
        }
    }
    if let [(_, Some(one)), (_, Some(two))] = sums.as_slice() {
        let _ = writeln!(
            out,
            "ratio --loops 2 ÷ --loops 1 (>1: 2 loops better): round trips/s {:.3}, cpu/op {:.3}",
            two.rate / one.rate,
            one.cpu_per_100k / two.cpu_per_100k
        );
    }
    let samples = r.observe.first().map_or(0, |o| o.scrape_ms.len());
    let _ = writeln!(
        out,
        "\n== daemon observing: N idle connections open to seq (--loops 1); {samples} /metrics \
         scrapes (a fresh connection each) and {samples} control `status` calls (one connection)"
    );
    let _ = writeln!(
        out,
        "{:>11} {:>10} {:>11} {:>9} {:>9} {:>10} {:>11}",
        "connections", "scrape ms", "scrape p99", "body KiB", "seq seen", "status ms", "status p99"
    );
    for o in &r.observe {
        let _ = writeln!(
            out,
            "{:>11} {:>10.2} {:>11.2} {:>9.1} {:>9} {:>10.2} {:>11.2}",
            o.connections,
            median(o.scrape_ms.clone()),
            quantile(o.scrape_ms.clone(), 0.99),
            o.body_bytes as f64 / 1024.0,
            o.connections_seen
                .map_or_else(|| "?".to_owned(), |c| format!("{c:.0}")),
            median(o.status_ms.clone()),
            quantile(o.status_ms.clone(), 0.99)
        );
    }
    let _ = writeln!(
        out,
        "(ms columns are medians; `seq seen` = loopd_service_connections{{service=\"seq\"}} in \
         the last scrape)"
    );
    out
}

/// The JSON of the results.
pub fn json(r: &Results) -> Value {
    let configs: Vec<Value> = [1, 2]
        .into_iter()
        .filter_map(|l| {
            let s = summarize(&r.pingpong, l)?;
            Some(json!({
                "loops": l,
                "runs": s.runs,
                "round_trips_per_second": s.rate,
                "spread": s.spread,
                "user_seconds": s.user,
                "sys_seconds": s.sys,
                "cpu_seconds_per_100k": s.cpu_per_100k,
            }))
        })
        .collect();
    let runs: Vec<Value> = r
        .pingpong
        .iter()
        .map(|p| {
            json!({
                "loops": p.loops,
                "rep": p.rep,
                "round_trips": p.round_trips,
                "seconds": p.seconds,
                "user_seconds": p.user_seconds,
                "sys_seconds": p.sys_seconds,
            })
        })
        .collect();
    let observe: Vec<Value> = r
        .observe
        .iter()
        .map(|o| {
            json!({
                "connections": o.connections,
                "connections_seen": o.connections_seen,
                "scrape_ms_median": median(o.scrape_ms.clone()),
                "scrape_ms_p99": quantile(o.scrape_ms.clone(), 0.99),
                "scrape_ms": o.scrape_ms,
                "metrics_body_bytes": o.body_bytes,
                "status_ms_median": median(o.status_ms.clone()),
                "status_ms_p99": quantile(o.status_ms.clone(), 0.99),
                "status_ms": o.status_ms,
            })
        })
        .collect();
    json!({
        "pingpong": {
            "service": "seq",
            "connections": PINGPONG_CONNS,
            "round_trips_per_run": r.sizes.round_trips,
            "cpu_source": "/proc/PID/stat utime+stime over the round trips",
            "configs": configs,
            "runs": runs,
        },
        "observe": observe,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let xs: Vec<f64> = (1..=50).map(f64::from).collect();
        assert_eq!(quantile(xs.clone(), 0.99), 50.0);
        assert_eq!(quantile(xs.clone(), 0.5), 25.0);
        assert_eq!(quantile(vec![3.0], 0.99), 3.0);
        assert!(quantile(vec![], 0.5).is_nan());
    }

    #[test]
    fn seq_bytes_never_end_the_message() {
        let mut b = b'a';
        for _ in 0..100 {
            b = next_byte(b);
            assert!(b.is_ascii_lowercase() && b != b'$');
        }
    }

    #[test]
    fn reads_the_seq_connection_gauge() {
        let body = "# TYPE loopd_service_connections gauge\n\
                    loopd_service_connections{loop=\"0\",service=\"seq\"} 7\n\
                    loopd_service_connections{loop=\"1\",service=\"seq\"} 3\n\
                    loopd_service_connections{loop=\"0\",service=\"http\"} 1\n";
        assert_eq!(seq_connections(body), Some(10.0));
        assert_eq!(seq_connections("nothing"), None);
    }
}
