//! The dashboards and rules of `dashboards/`, proven against a real Prometheus scraping a real
//! `loopd`:
//!
//! - `promtool check rules`, `promtool test rules` and `dashboards/check.sh` pass;
//! - `promtool check metrics` accepts a real scrape of `/metrics`;
//! - with Prometheus scraping loopd every second while `seq`, `prime` and `http` carry load, every
//!   panel and recording-rule expression of the dashboard returns data and every alert expression
//!   evaluates;
//! - a stall provoked through `prime` in inline mode makes `LoopdLoopStalled` fire.
//!
//! Needs `prometheus` and `promtool` on PATH (Debian's `prometheus` package) and `python3`;
//! `bash scripts/test.sh` installs them. Build the binaries first (`cargo build --workspace`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "e2e/support.rs"]
mod support;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{connect, free_port, http_get, read_line, read_n, Daemon, TempDir};

/// How long the load runs before the expressions are queried.
const LOAD: Duration = Duration::from_secs(5);
/// How long an expression may stay empty while data accumulates.
const DATA_DEADLINE: Duration = Duration::from_secs(30);
/// How long the stall alert may take to show as firing.
const ALERT_DEADLINE: Duration = Duration::from_secs(45);
/// Blocks the loop for seconds when `prime` runs inline (≈4 s in a debug build).
const SLOW_PRIME: &str = "2305843009213693951";

// ------------------------------------------------------------------ tools and paths

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `name` on PATH, or a failure telling how to install it: a missing tool never passes silently.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not on PATH: run `bash scripts/test.sh`, which installs it \
                 (Debian package `prometheus`: apt-get install prometheus; python3 for exprs.py)"
            )
        })
}

fn output_text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` in the repository root and asserts it exits 0.
fn run_ok(what: &str, cmd: &mut Command) -> Output {
    let out = cmd.current_dir(repo_root()).output().unwrap();
    assert!(out.status.success(), "{what} failed: {}", output_text(&out));
    out
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            write!(out, "%{b:02X}").unwrap();
        }
    }
    out
}

// ------------------------------------------------------------------ promtool, offline

#[test]
fn rules_and_dashboard_pass_promtool_and_check_sh() {
    let promtool = tool("promtool");
    tool("python3");
    run_ok(
        "promtool check rules dashboards/loopd-rules.yml",
        Command::new(&promtool).args(["check", "rules", "dashboards/loopd-rules.yml"]),
    );
    run_ok(
        "promtool test rules dashboards/loopd-rules.test.yml",
        Command::new(&promtool).args(["test", "rules", "dashboards/loopd-rules.test.yml"]),
    );
    run_ok(
        "bash dashboards/check.sh",
        Command::new("bash").arg("dashboards/check.sh"),
    );
}

#[test]
fn a_real_scrape_passes_promtool_check_metrics() {
    let promtool = tool("promtool");
    let d = Daemon::start_services("pool");
    std::fs::write(d.dir.0.join("www/index.html"), "hello\n").unwrap();
    // One exchange per service, so the scrape carries traffic-dependent values too.
    seq_once(d.addr("seq"));
    prime_once(d.addr("prime"), "97");
    let (status, _) = http_get(d.addr("http"), "/index.html");
    assert_eq!(status, 200);

    let (status, body) = d.scrape("/metrics");
    assert_eq!(status, 200, "/metrics: {body}");
    assert!(body.contains("loopd_loop_iterations_total"), "{body}");
    if let Err(e) = support::promtool_check(&body) {
        panic!(
            "promtool check metrics rejects loopd's /metrics: {e} ({})",
            promtool.display()
        );
    }
}

// ------------------------------------------------------------------ load

fn seq_once(addr: SocketAddr) {
    let mut s = connect(addr);
    assert_eq!(read_n(&mut s, 1), b"*");
    s.write_all(b"^hello$").unwrap();
    assert_eq!(read_n(&mut s, 5), b"ifmmp");
}

fn prime_once(addr: SocketAddr, n: &str) -> String {
    let mut s = connect(addr);
    writeln!(s, "{n}").unwrap();
    read_line(&mut s)
}

/// `seq`, `prime` (small numbers: inline, they must not stall) and `http`, each from its own
/// client threads, until `stop`.
fn load(d: &Daemon, stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<usize>> {
    let mut threads = Vec::new();
    for i in 0..2 {
        let (seq, prime, http) = (d.addr("seq"), d.addr("prime"), d.addr("http"));
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                seq_once(seq);
                let answer = prime_once(prime, if i == 0 { "1000003" } else { "1000001" });
                assert!(answer == "prime" || answer == "composite", "{answer}");
                let (status, body) = http_get(http, "/index.html");
                assert_eq!((status, body.as_str()), (200, "hello from loopd\n"));
                n += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            n
        }));
    }
    threads
}

// ------------------------------------------------------------------ Prometheus

struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl Prometheus {
    /// Prometheus scraping `target` every second, evaluating `rules` every second.
    fn start(target: SocketAddr, rules: &str) -> Prometheus {
        let binary = tool("prometheus");
        let dir = TempDir::new("prometheus");
        let rules_path = dir.0.join("loopd-rules.yml");
        std::fs::write(&rules_path, rules).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules:?}\n\
             scrape_configs:\n  - job_name: loopd\n    metrics_path: /metrics\n    \
             static_configs:\n      - targets: [\"{target}\"]\n",
            rules = rules_path.display().to_string(),
        );
        let config_path = dir.0.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let storage = dir.0.join("data");
        let log = std::fs::File::create(dir.0.join("prometheus.log")).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", storage.display()))
            .arg(format!("--web.listen-address={addr}"))
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut p = Prometheus { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = p.child.try_wait().unwrap() {
                panic!("prometheus exited with {status}: {}", p.log());
            }
            if get(addr, "/-/ready").is_some_and(|(status, _)| status == 200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready: {}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("prometheus.log")).unwrap_or_default()
    }

    /// `GET path` → the JSON body (any status: Prometheus answers errors in JSON too).
    fn api(&self, path: &str) -> serde_json::Value {
        let (status, body) = get(self.addr, path)
            .unwrap_or_else(|| panic!("prometheus not answering {path}: {}", self.log()));
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path}: {status} with non-JSON body ({e}): {body}"))
    }

    /// An instant query: `Ok(result)` or `Err(description)`.
    fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>, String> {
        let v = self.api(&format!("/api/v1/query?query={}", url_encode(expr)));
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        match &v["data"]["result"] {
            serde_json::Value::Array(a) => Ok(a.clone()),
            // scalar / string results: a single value
            other => Ok(vec![other.clone()]),
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET that tolerates connection errors (Prometheus still starting).
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// The shipped rules with every `for:` of `LoopdLoopStalled` set to 0s, so a stall of a few
/// seconds fires it regardless of what the shipped file waits for.
fn test_rules() -> String {
    let shipped = std::fs::read_to_string(repo_root().join("dashboards/loopd-rules.yml")).unwrap();
    let mut out = String::new();
    let mut in_stalled = false;
    let mut saw = false;
    for line in shipped.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("- alert:").or(t.strip_prefix("- record:")) {
            in_stalled = t.starts_with("- alert:") && rest.trim() == "LoopdLoopStalled";
            saw |= in_stalled;
        }
        if in_stalled && t.starts_with("for:") {
            let indent = &line[..line.len() - t.len()];
            writeln!(out, "{indent}for: 0s").unwrap();
        } else {
            writeln!(out, "{line}").unwrap();
        }
    }
    assert!(
        saw,
        "dashboards/loopd-rules.yml has no LoopdLoopStalled alert"
    );
    out
}

/// `python3 dashboards/exprs.py`: (source, expr) for every panel, recording rule and alert.
fn expressions() -> Vec<(String, String)> {
    let out = run_ok(
        "python3 dashboards/exprs.py",
        Command::new(tool("python3")).arg("dashboards/exprs.py"),
    );
    let items: Vec<(String, String)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["source"].as_str().unwrap().to_string(),
                v["expr"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for kind in ["panel ", "record ", "alert "] {
        assert!(
            items.iter().any(|(s, _)| s.starts_with(kind)),
            "exprs.py printed no {kind}expressions"
        );
    }
    items
}

/// Metric names an expression selects (`loopd_*`, `process_*`, recording rules `loopd:*`).
fn metric_names(expr: &str) -> Vec<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find(|c: char| is_ident(c)) {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !is_ident(c)).unwrap_or(tail.len());
        let word = &tail[..end];
        let quoted = rest[..start].ends_with('"');
        if !quoted
            && ["loopd_", "loopd:", "process_"]
                .iter()
                .any(|p| word.starts_with(p))
        {
            names.push(word.to_string());
        }
        rest = &tail[end..];
    }
    names
}

fn alert_firing(p: &Prometheus, name: &str) -> Option<serde_json::Value> {
    let v = p.api("/api/v1/alerts");
    v["data"]["alerts"].as_array()?.iter().find_map(|a| {
        (a["labels"]["alertname"] == name && a["state"] == "firing").then(|| a.clone())
    })
}

#[test]
fn dashboard_and_alerts_work_against_a_real_prometheus() {
    let started = Instant::now();
    tool("promtool");
    let rules = test_rules();
    let d = Daemon::start_services("inline");
    std::fs::write(d.dir.0.join("www/index.html"), "hello from loopd\n").unwrap();
    let prom = Prometheus::start(d.metrics.expect("metrics enabled"), &rules);

    // Load on every service while Prometheus scrapes.
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(&d, &stop);
    std::thread::sleep(LOAD);
    stop.store(true, Ordering::Relaxed);
    let rounds: usize = clients.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(rounds > 0, "no load was generated");

    let target = prom.api("/api/v1/targets");

    // Prometheus discovers its targets a few seconds after it starts: wait until it has
    // scraped loopd (a fallback such as `or vector(0)` would otherwise pass before any data).
    let deadline = Instant::now() + DATA_DEADLINE;
    loop {
        let scraped = prom
            .query("count_over_time(loopd_loop_iterations_total{job=\"loopd\"}[1m])")
            .ok()
            .and_then(|r| r.first().cloned())
            .and_then(|v| v["value"][1].as_str().and_then(|x| x.parse::<f64>().ok()))
            .unwrap_or(0.0);
        if scraped >= 3.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped loopd: {}",
            prom.api("/api/v1/targets")
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Every panel and recording rule returns data; every alert expression evaluates.
    let mut pending = expressions();
    let total = pending.len();
    let deadline = Instant::now() + DATA_DEADLINE;
    let mut failures: Vec<String>;
    loop {
        failures = Vec::new();
        let mut still = Vec::new();
        for (source, expr) in pending {
            let must_have_data = !source.starts_with("alert ");
            match prom.query(&expr) {
                Ok(r) if r.is_empty() && must_have_data => {
                    failures.push(format!("{source}: empty result\n    {expr}"));
                    still.push((source, expr));
                }
                Ok(_) => {}
                Err(e) => {
                    failures.push(format!("{source}: query error {e}\n    {expr}"));
                    still.push((source, expr));
                }
            }
        }
        pending = still;
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    // Fallbacks such as `or vector(0)` keep a panel non-empty even when its metric is missing:
    // every metric an expression names must itself exist.
    let mut names: Vec<(String, String)> = expressions()
        .into_iter()
        .flat_map(|(source, expr)| {
            metric_names(&expr)
                .into_iter()
                .map(move |n| (n, source.clone()))
        })
        .collect();
    names.sort();
    names.dedup_by(|a, b| a.0 == b.0);
    assert!(names.len() > 10, "too few metric names found: {names:?}");
    // Recording rules appear an evaluation after the data: retry until the same deadline.
    loop {
        let missing: Vec<String> = names
            .iter()
            .filter_map(|(name, source)| {
                match prom.query(&format!("count({{__name__=\"{name}\", job=\"loopd\"}})")) {
                    Ok(r) if !r.is_empty() => None,
                    other => Some(format!(
                        "{source}: metric {name} not in Prometheus ({other:?})"
                    )),
                }
            })
            .collect();
        if missing.is_empty() || Instant::now() >= deadline {
            failures.extend(missing);
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        failures.is_empty(),
        "{} of {total} dashboard/rule expressions failed against Prometheus (after {:?}):\n{}\n\
         targets: {target}\nprometheus log:\n{}",
        failures.len(),
        started.elapsed(),
        failures.join("\n"),
        prom.log()
    );
    println!(
        "{total} expressions ok after {:?} ({rounds} load rounds)",
        started.elapsed()
    );

    // A stall: `prime` inline blocks the loop for seconds. Keep stalling (one slow number after
    // another) until the alert fires or the deadline passes.
    assert!(
        alert_firing(&prom, "LoopdLoopStalled").is_none(),
        "LoopdLoopStalled fires before any stall"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let staller = {
        let (stop, prime) = (stop.clone(), d.addr("prime"));
        std::thread::spawn(move || {
            // No asserts here: the daemon is killed while the last number runs.
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = std::net::TcpStream::connect(prime) else {
                    return;
                };
                let mut answer = [0u8; 16];
                if writeln!(s, "{SLOW_PRIME}").is_err() || s.read(&mut answer).unwrap_or(0) == 0 {
                    return;
                }
            }
        })
    };
    let stall_started = Instant::now();
    let deadline = stall_started + ALERT_DEADLINE;
    let fired = loop {
        if let Some(alert) = alert_firing(&prom, "LoopdLoopStalled") {
            break Some(alert);
        }
        if Instant::now() >= deadline || staller.is_finished() {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    stop.store(true, Ordering::Relaxed);
    let Some(alert) = fired else {
        let gauge = prom.query("max_over_time(loopd_stall_in_progress_seconds[2m])");
        panic!(
            "LoopdLoopStalled did not fire within {ALERT_DEADLINE:?} of stalling the loop; \
             max loopd_stall_in_progress_seconds: {gauge:?}; alerts: {}\nprometheus log:\n{}",
            prom.api("/api/v1/alerts"),
            prom.log()
        );
    };
    println!(
        "LoopdLoopStalled firing {:?} after the stall began: {alert}",
        stall_started.elapsed()
    );
    assert_eq!(alert["labels"]["job"], "loopd", "{alert}");
    assert_eq!(alert["labels"]["loop"], "0", "{alert}");
    assert_eq!(alert["labels"]["severity"], "critical", "{alert}");
    // Don't wait for the running slow number: dropping the daemon kills it.
    drop(d);
    let _ = staller.join();
    println!("total {:?}", started.elapsed());
}
