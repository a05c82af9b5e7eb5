//! `loopd-bench`: runs loopd's engine side by side with libuv (and Node.js) on the same
//! scenarios, each run a separate process, peers alternating, and reports medians and
//! ratios.
//!
//! ```text
//! cargo run --release -p loopd-bench -- [--reps N] [--quick] [--json FILE]
//!     [--peers loopd-on,loopd-off,libuv,libuv-tuned,node,tokio,mio] [--timeout SECS] [--list]
//!     [SCENARIO...]
//! ```
//! Exit codes: 0 every run succeeded, 1 some run failed or the harness could not
//! start, 2 usage.
#![allow(clippy::print_stdout)]

mod callgrind;
mod daemon;
mod datafile;
mod net;
mod peer;
mod prepare;
mod report;
mod run;
mod scenario;
mod sys;
mod versus;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde_json::json;

use peer::{Peer, Programs, ALL_PEERS};
use report::RunRecord;
use run::Outcome;
use scenario::{Metric, Scenario, SCENARIOS};

const USAGE: &str = "\
usage: loopd-bench [OPTIONS] [SCENARIO...]

Runs each scenario in every peer, alternating peers, each run a separate process,
and prints medians and ratios (> 1.0 = loopd better).

options:
  --reps N            repetitions per peer (default 5; 1 with --quick)
  --quick             smaller sizes and 1 repetition (for development)
  --json FILE         also write every run, the medians and the ratios as JSON
  --peers LIST        comma-separated subset of:
                      loopd-on,loopd-off,libuv,libuv-tuned,libuv-agent,node,tokio,mio
                      (libuv-tuned: the tuned libuv echo server, network scenarios only;
                       libuv-agent: the libuv peer with loopd's agent preloaded)
  --threadpool-size N thread-pool size for every peer (default 4)
  --timeout SECS      kill a run after this long (default 300)
  --callgrind [SCENARIO...]
                      instead of the scenarios: instructions per op (round trip,
                      connection, MiB) of each echo server under valgrind
                      --tool=callgrind, in the network scenarios given (default all:
                      pingpong 20k round trips, pingpong100 20k, pound 2k connections,
                      pump 64 MiB; --quick: 2k, 2k, 200, 8 MiB; not idle_memory), each
                      minus a baseline run (1 round trip, 100, 1 connection, 1 MiB);
                      peers loopd-on,loopd-off,libuv,libuv-tuned,tokio,mio
  --daemon            instead of the scenarios: the real loopd binary (seq service):
                      ping-pong with 100 connections at --loops 1 and --loops 2
                      (alternating, --reps each), and /metrics scrape and control
                      `status` time with 10 and 10,000 idle connections
  --list              list the scenarios and exit
  -h, --help          this help

Build and run with: cargo run --release -p loopd-bench -- [OPTIONS] [SCENARIO...]";

/// What the command line asked for.
#[derive(Debug)]
struct Options {
    reps: usize,
    quick: bool,
    json: Option<PathBuf>,
    peers: Option<Vec<Peer>>,
    threadpool_size: u32,
    timeout: Duration,
    list: bool,
    help: bool,
    callgrind: bool,
    daemon: bool,
    scenarios: Vec<&'static Scenario>,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Options> {
    let mut reps = None;
    let mut opts = Options {
        reps: 5,
        quick: false,
        json: None,
        peers: None,
        threadpool_size: 4,
        timeout: Duration::from_secs(300),
        list: false,
        help: false,
        callgrind: false,
        daemon: false,
        scenarios: Vec::new(),
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--reps" => {
                let n: usize = value("--reps")?.parse().context("--reps: not a number")?;
                if n == 0 {
                    bail!("--reps must be at least 1");
                }
                reps = Some(n);
            }
            "--quick" => opts.quick = true,
            "--json" => opts.json = Some(PathBuf::from(value("--json")?)),
            "--peers" => {
                let list = value("--peers")?;
                let mut peers = Vec::new();
                for name in list.split(',').filter(|s| !s.is_empty()) {
                    let p = Peer::parse(name).with_context(|| {
                        format!("unknown peer {name:?} (peers: {})", Peer::all_names())
                    })?;
                    if !peers.contains(&p) {
                        peers.push(p);
                    }
                }
                if peers.is_empty() {
                    bail!("--peers: no peer given");
                }
                opts.peers = Some(peers);
            }
            "--threadpool-size" => {
                opts.threadpool_size = value("--threadpool-size")?
                    .parse()
                    .context("--threadpool-size: not a number")?;
                if !(1..=1024).contains(&opts.threadpool_size) {
                    bail!("--threadpool-size must be in 1..=1024");
                }
            }
            "--timeout" => {
                let secs: u64 = value("--timeout")?
                    .parse()
                    .context("--timeout: not a number of seconds")?;
                opts.timeout = Duration::from_secs(secs.max(1));
            }
            "--list" => opts.list = true,
            "--callgrind" => opts.callgrind = true,
            "--daemon" => opts.daemon = true,
            "-h" | "--help" => opts.help = true,
            flag if flag.starts_with('-') => bail!("unknown option {flag}"),
            name => {
                let s = Scenario::find(name)
                    .with_context(|| format!("unknown scenario {name:?} (see --list)"))?;
                if !opts.scenarios.iter().any(|t| std::ptr::eq(*t, s)) {
                    opts.scenarios.push(s);
                }
            }
        }
    }
    opts.reps = reps.unwrap_or(if opts.quick { 1 } else { 5 });
    if opts.callgrind {
        // Fails for a scenario it does not measure; none named: all it measures.
        callgrind::plans(&opts.scenarios)?;
    } else if opts.scenarios.is_empty() {
        opts.scenarios = SCENARIOS.iter().collect();
    }
    Ok(opts)
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loopd-bench: {e:#}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loopd-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: &Options) -> Result<ExitCode> {
    if opts.help {
        println!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    if opts.list {
        for s in SCENARIOS {
            println!("{:<18} {}", s.name, s.about);
            println!(
                "{:<18} sizes: {}   quick: {}   node: {}",
                "",
                s.size_label(false),
                s.size_label(true),
                s.node_script.unwrap_or("-")
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if cfg!(debug_assertions) {
        eprintln!(
            "loopd-bench: WARNING: this is a debug build, and so is loopd-peer; \
             use `cargo run --release -p loopd-bench`"
        );
    }

    if opts.callgrind {
        return run_callgrind(opts);
    }
    if opts.daemon {
        return run_daemon(opts);
    }
    let (mut programs, peers) = prepare_programs(opts)?;
    if let Some(size) = opts
        .scenarios
        .iter()
        .find_map(|s| s.data_file_size(opts.quick))
    {
        let dir = prepare::data_dir()?;
        eprintln!(
            "writing the fs_read data file ({} MiB) in {}",
            size >> 20,
            dir.display()
        );
        programs.data_file = Some(datafile::DataFile::create(&dir, size)?);
    }
    let meta = metadata(opts, &programs, &peers);
    let load_at_start = load_average();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if load_at_start.is_some_and(|l| l > cpus as f64 * 0.5) {
        eprintln!(
            "loopd-bench: WARNING: the machine is busy (1-minute load {:.2} on {cpus} CPUs): \
             expect noisy results",
            load_at_start.unwrap_or(0.0)
        );
    }

    if opts
        .scenarios
        .iter()
        .any(|s| s.client == Some(net::Client::IdleMemory))
    {
        raise_nofile_limit()?;
    }

    let mut runs: Vec<RunRecord> = Vec::new();
    for &scenario in &opts.scenarios {
        eprintln!(
            "== {} ({}): {} rep(s) of {}",
            scenario.name,
            scenario.size_label(opts.quick),
            opts.reps,
            peers
                .iter()
                .map(|p| p.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut skip: Vec<Peer> = Vec::new();
        for rep in 1..=opts.reps {
            for &peer in &peers {
                if skip.contains(&peer) {
                    continue;
                }
                let outcome = match programs.command(peer, scenario, opts.quick)? {
                    Some(cmd) => match net_run(scenario, opts.quick) {
                        Some(net) => run::run_net(cmd, net, opts.timeout),
                        None => run::run(cmd, scenario.peer_scenario, opts.timeout),
                    },
                    None => Outcome::Unsupported,
                };
                eprintln!(
                    "  [{rep}/{}] {:<10} {}",
                    opts.reps,
                    peer.name(),
                    progress(scenario, &outcome)
                );
                if matches!(outcome, Outcome::Unsupported) {
                    skip.push(peer);
                }
                runs.push(RunRecord {
                    scenario,
                    peer,
                    rep,
                    outcome,
                });
            }
        }
    }

    let reports = report::summarize(&opts.scenarios, &peers, &runs);
    println!("\n{}", report::table(&reports, opts.quick, opts.reps));
    let fmt_load = |l: Option<f64>| l.map_or_else(|| "?".to_owned(), |l| format!("{l:.2}"));
    println!(
        "1-minute load average on {cpus} CPUs: {} at start, {} at end",
        fmt_load(load_at_start),
        fmt_load(load_average())
    );
    if let Some(path) = &opts.json {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut meta = meta;
        meta["loadavg_at_end"] = json!(std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.trim().to_owned())
            .ok());
        let doc = report::json(&reports, &runs, meta);
        let text = serde_json::to_string_pretty(&doc).context("encoding the JSON")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    let failed = runs
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
        .count();
    if failed > 0 {
        eprintln!("loopd-bench: {failed} run(s) failed (see above)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Builds or finds every peer program; returns them and the peers that will run.
/// A peer asked for explicitly must be available; of the default set, only Node may
/// be missing (it is then left out with a note).
fn prepare_programs(opts: &Options) -> Result<(Programs, Vec<Peer>)> {
    let explicit = opts.peers.is_some();
    let mut peers = opts.peers.clone().unwrap_or_else(|| ALL_PEERS.to_vec());
    prepare::build_siblings()?;
    let mut programs = Programs {
        threadpool_size: opts.threadpool_size,
        ..Programs::default()
    };
    if peers
        .iter()
        .any(|p| matches!(p, Peer::LoopdOn | Peer::LoopdOff))
    {
        programs.loopd_peer = Some(prepare::loopd_peer()?);
    }
    if peers.contains(&Peer::Mio) {
        programs.mio_peer = Some(prepare::mio_peer()?);
    }
    if peers.contains(&Peer::Tokio) {
        programs.tokio_peer = Some(prepare::tokio_peer()?);
    }
    if peers.contains(&Peer::LibuvAgent) {
        programs.agent = Some(prepare::agent()?);
    }
    if peers.iter().any(|p| p.runs_libuv_peer()) {
        eprintln!("building the libuv peers (peers/build/libuv-peer)");
        programs.libuv_peer = Some(prepare::libuv_peer()?);
    }
    if peers.contains(&Peer::Node) {
        programs.node = prepare::node();
        if programs.node.is_none() {
            if explicit {
                bail!(
                    "peer node: `node` not found: {}",
                    prepare::unavailable_hint(Peer::Node)
                );
            }
            eprintln!(
                "loopd-bench: note: `node` not found, leaving the node peer out ({})",
                prepare::unavailable_hint(Peer::Node)
            );
            peers.retain(|p| *p != Peer::Node);
        }
    }
    Ok((programs, peers))
}

/// `--callgrind`: instructions per op of each peer's echo server in the network
/// scenarios (see `callgrind.rs`).
fn run_callgrind(opts: &Options) -> Result<ExitCode> {
    let plans = callgrind::plans(&opts.scenarios)?;
    let version = callgrind::check_valgrind()?;
    let mut peers: Vec<Peer> = match &opts.peers {
        Some(p) => p.clone(),
        None => callgrind::PEERS.to_vec(),
    };
    if peers.contains(&Peer::Node) {
        eprintln!(
            "loopd-bench: note: --callgrind leaves node out (its JIT warms up during the run)"
        );
        peers.retain(|p| *p != Peer::Node);
    }
    if peers.is_empty() {
        bail!("--callgrind: no peer to measure");
    }
    let mut o = Options {
        peers: Some(peers.clone()),
        ..parse_args(Vec::new())?
    };
    o.threadpool_size = opts.threadpool_size;
    let (programs, peers) = prepare_programs(&o)?;
    let out_dir = prepare::bench_dir().join("out/callgrind");
    eprintln!(
        "== callgrind ({version}): {}; echo servers under callgrind, a baseline and a \
         measured run per peer; profiles in {}",
        plans
            .iter()
            .map(|p| format!("{} {}", p.scenario, p.size(opts.quick).label()))
            .collect::<Vec<_>>()
            .join(", "),
        out_dir.display()
    );
    let load_at_start = load_average();
    let results = callgrind::run_all(
        &programs,
        &peers,
        &plans,
        opts.quick,
        &out_dir,
        opts.timeout,
    )?;
    println!("\n{}", callgrind::table(&results));
    if let Some(path) = &opts.json {
        let mut meta = metadata(opts, &programs, &peers);
        meta["valgrind"] = json!(version);
        meta["loadavg_at_start"] = json!(load_at_start);
        meta["loadavg_at_end"] = json!(load_average());
        let doc = json!({ "meta": meta, "callgrind": callgrind::json(&results) });
        let text = serde_json::to_string_pretty(&doc).context("encoding the JSON")?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    if results.iter().any(|r| !r.failed.is_empty()) {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `--daemon`: the real loopd binary (see `daemon.rs`).
fn run_daemon(opts: &Options) -> Result<ExitCode> {
    let exe = prepare::loopd_daemon()?;
    raise_nofile_limit()?;
    let sizes = daemon::Sizes::new(opts.quick);
    eprintln!(
        "== daemon ({}): ping-pong, {} connections to seq, n={}, --loops 1 and 2 alternating, \
         {} rep(s); then observing with {:?} idle connections",
        exe.display(),
        daemon::PINGPONG_CONNS,
        sizes.round_trips,
        opts.reps,
        daemon::OBSERVE_CONNS
    );
    let load_at_start = load_average();
    let results = daemon::run_all(&exe, opts.reps, opts.quick, opts.timeout)?;
    println!("\n{}", daemon::table(&results, &exe));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let fmt_load = |l: Option<f64>| l.map_or_else(|| "?".to_owned(), |l| format!("{l:.2}"));
    println!(
        "1-minute load average on {cpus} CPUs: {} at start, {} at end",
        fmt_load(load_at_start),
        fmt_load(load_average())
    );
    if let Some(path) = &opts.json {
        let mut meta = metadata(opts, &Programs::default(), &[]);
        meta["loopd"] = json!(exe.display().to_string());
        meta["loadavg_at_end"] = json!(std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.trim().to_owned())
            .ok());
        let doc = json!({ "meta": meta, "daemon": daemon::json(&results) });
        let text = serde_json::to_string_pretty(&doc).context("encoding the JSON")?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The client side of a network scenario, `None` for the others.
fn net_run(scenario: &Scenario, quick: bool) -> Option<run::NetRun> {
    Some(run::NetRun {
        client: scenario.client?,
        n: scenario.size("n", quick)?,
        conns: scenario.size("conns", quick)?,
    })
}

/// Open files the many-connection runs need (10,000 connections and some to spare), in
/// this process and in the servers it starts (which inherit the limit).
const NOFILE_WANTED: u64 = 12_000;

/// Raises RLIMIT_NOFILE for `idle_memory` and `--daemon`; fails if the hard limit is too low.
fn raise_nofile_limit() -> Result<()> {
    let got = sys::raise_nofile_limit(NOFILE_WANTED).context("raising RLIMIT_NOFILE")?;
    if got < NOFILE_WANTED {
        bail!(
            "the open-files limit is {got}, 10,000 connections need {NOFILE_WANTED} \
             (raise the hard limit: `ulimit -Hn`)"
        );
    }
    Ok(())
}

/// The 1-minute load average, from `/proc/loadavg`.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// One progress line for stderr.
fn progress(scenario: &Scenario, outcome: &Outcome) -> String {
    match outcome {
        Outcome::Ok(m) => {
            let headline = match scenario.metric {
                Metric::Throughput => {
                    format!("{:>12.0} {}", m.ops_per_second(), scenario.per_second())
                }
                Metric::Duration => format!("{:>8.3} s", m.seconds),
                Metric::BytesPerOp => format!(
                    "{:>8.0} bytes/{}",
                    m.extra
                        .get("bytes_per_op")
                        .and_then(serde_json::Value::as_f64)
                        .unwrap_or(f64::NAN),
                    scenario.op
                ),
            };
            format!(
                "{headline}  cpu {:.3} s (user {:.3} sys {:.3})  rss {:.1} MiB",
                m.cpu_seconds(),
                m.user_seconds,
                m.sys_seconds,
                m.max_rss_kib as f64 / 1024.0
            )
        }
        Outcome::Unsupported => "n/a: the peer has no such scenario".to_owned(),
        Outcome::Failed(why) => format!("FAILED: {why}"),
    }
}

/// What the JSON records about this machine and run.
fn metadata(opts: &Options, programs: &Programs, peers: &[Peer]) -> serde_json::Value {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_owned()).ok();
    let cpu_model = read("/proc/cpuinfo").and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|m| m.trim().to_owned())
    });
    let git = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(prepare::bench_dir())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(prepare::bench_dir())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| !o.stdout.is_empty());
    let unix_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    json!({
        "harness": "loopd-bench",
        "unix_time": unix_time,
        "git_commit": git,
        "git_dirty": dirty,
        "loadavg_at_start": read("/proc/loadavg"),
        "reps": opts.reps,
        "quick": opts.quick,
        "threadpool_size": opts.threadpool_size,
        "peers": peers.iter().map(|p| p.name()).collect::<Vec<_>>(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": cpu_model,
        "kernel": read("/proc/sys/kernel/osrelease"),
        "libuv_version": programs.libuv_peer.as_ref().and_then(|_| prepare::libuv_version()),
        "node_version": programs.node.as_ref().and_then(|(n, _)| prepare::node_version(n)),
        "ratio_orientation": "> 1.0 means the first peer is better (faster, or less CPU per op)",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults() {
        let o = parse(&[]).unwrap();
        assert_eq!(o.reps, 5);
        assert!(!o.quick);
        assert_eq!(o.scenarios.len(), SCENARIOS.len());
        assert_eq!(o.peers, None);
    }

    #[test]
    fn quick_means_one_rep_unless_told() {
        assert_eq!(parse(&["--quick"]).unwrap().reps, 1);
        assert_eq!(parse(&["--quick", "--reps", "3"]).unwrap().reps, 3);
    }

    #[test]
    fn scenarios_and_peers() {
        let o = parse(&["timers", "async1", "timers", "--peers", "libuv,loopd-on"]).unwrap();
        let names: Vec<_> = o.scenarios.iter().map(|s| s.name).collect();
        assert_eq!(names, ["timers", "async1"]);
        assert_eq!(o.peers, Some(vec![Peer::Libuv, Peer::LoopdOn]));
        let o = parse(&["pump", "--peers", "libuv-tuned,libuv"]).unwrap();
        assert_eq!(o.peers, Some(vec![Peer::LibuvTuned, Peer::Libuv]));
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(parse(&["nope"]).is_err());
        assert!(parse(&["--reps", "0"]).is_err());
        assert!(parse(&["--reps"]).is_err());
        assert!(parse(&["--peers", "rust"]).is_err());
        let e = parse(&["--peers", "rust"]).unwrap_err().to_string();
        assert!(e.contains("libuv-tuned"), "{e}");
        assert!(parse(&["--frobnicate"]).is_err());
    }

    #[test]
    fn callgrind_scenarios() {
        let o = parse(&["--callgrind", "--quick"]).unwrap();
        assert!(o.callgrind && o.quick);
        assert!(o.scenarios.is_empty());
        let all = callgrind::plans(&o.scenarios).unwrap();
        let names: Vec<_> = all.iter().map(|p| p.scenario).collect();
        assert_eq!(names, ["pingpong", "pingpong100", "pound", "pump"]);

        let o = parse(&["--callgrind", "pound", "pingpong100"]).unwrap();
        let names: Vec<_> = callgrind::plans(&o.scenarios)
            .unwrap()
            .iter()
            .map(|p| p.scenario)
            .collect();
        assert_eq!(names, ["pound", "pingpong100"]);
        // Scenario names may come before the flag too.
        assert_eq!(parse(&["pump", "--callgrind"]).unwrap().scenarios.len(), 1);

        assert!(parse(&["--callgrind", "idle_memory"]).is_err());
        assert!(parse(&["--callgrind", "timers"]).is_err());
        assert!(parse(&["--callgrind", "nope"]).is_err());
        // Without --callgrind the same names are ordinary scenarios.
        assert_eq!(parse(&["idle_memory"]).unwrap().scenarios.len(), 1);
    }
}
