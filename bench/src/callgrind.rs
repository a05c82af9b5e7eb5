//! `--callgrind`: instructions per operation of each network scenario (round trip,
//! connection, MiB), counted by `valgrind --tool=callgrind` in the server process.
//!
//! Each peer's echo server runs under callgrind twice per scenario, with the scenario's
//! client: once at the measured size and once at a baseline size, the smallest that
//! still exercises the same setup (1 round trip on 1 connection; for `pingpong100` one
//! round trip on each of its 100 connections; 1 connection for `pound`; 1 MiB for
//! `pump`). Instructions per op = (Ir(n) − Ir(base)) / (n − base n), so start-up,
//! connection set-up and tear-down cancel out. Unlike CPU time this does not depend on
//! the machine's load, which makes it the number to compare on a busy machine; it
//! counts user-space instructions only (the kernel's share, most of it, is invisible to
//! it).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Map, Value};

use crate::net::Client;
use crate::peer::{Peer, Programs};
use crate::run::{self, NetRun, Outcome};
use crate::scenario::Scenario;
use crate::versus::{self, Row, Versus};

/// The peers measured: Node is left out (its JIT warms up during the run, so the
/// difference of two runs is not a per-op cost).
pub const PEERS: &[Peer] = &[
    Peer::LoopdOn,
    Peer::LoopdOff,
    Peer::Libuv,
    Peer::LibuvTuned,
    Peer::Tokio,
    Peer::Mio,
];

/// One run's size: the client's `n` (round trips, connections or MiB) and the
/// connections the server is told to serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    /// Ops of the run.
    pub n: u64,
    /// Connections the server serves (`--conns`).
    pub conns: u64,
}

impl Size {
    const fn new(n: u64, conns: u64) -> Size {
        Size { n, conns }
    }

    /// `n=20000` or `n=2000 conns=100`: the connections only when there are several.
    pub fn label(self) -> String {
        if self.conns > 1 && self.conns != self.n {
            format!("n={} conns={}", self.n, self.conns)
        } else {
            format!("n={}", self.n)
        }
    }
}

/// How one network scenario is measured under callgrind.
#[derive(Debug)]
pub struct Plan {
    /// The scenario's name in [`crate::scenario::SCENARIOS`].
    pub scenario: &'static str,
    /// The baseline run: the same set-up, the fewest ops.
    pub base: Size,
    /// The measured run.
    pub full: Size,
    /// The measured run with `--quick`.
    pub quick: Size,
}

impl Plan {
    /// The measured run's size.
    pub fn size(&self, quick: bool) -> Size {
        if quick {
            self.quick
        } else {
            self.full
        }
    }
}

/// The ping-pong client's pause after each echo under callgrind: enough for a server
/// slowed down ~50× to go back to `epoll_wait` before the next request (see
/// [`Client::PingPongPaced`]), so every round trip costs what it costs at full speed
/// when the client is not faster than the server.
pub const PINGPONG_PAUSE_US: u64 = 1_000;

/// The network scenarios measured by `--callgrind`, in the order they run. The sizes
/// keep a whole run at a few minutes on a 2-core machine (under callgrind a server runs
/// some 50 times slower).
pub const PLANS: &[Plan] = &[
    Plan {
        // Paced (see [`PINGPONG_PAUSE_US`]): deterministic, so fewer round trips do.
        scenario: "pingpong",
        base: Size::new(1, 1),
        full: Size::new(5_000, 1),
        quick: Size::new(1_000, 1),
    },
    Plan {
        // One round trip per connection in the baseline, so the 100 connections'
        // set-up cancels out.
        scenario: "pingpong100",
        base: Size::new(100, 100),
        full: Size::new(20_000, 100),
        quick: Size::new(2_000, 100),
    },
    Plan {
        scenario: "pound",
        base: Size::new(1, 1),
        full: Size::new(2_000, 2_000),
        quick: Size::new(200, 200),
    },
    Plan {
        scenario: "pump",
        base: Size::new(1, 1),
        full: Size::new(64, 1),
        quick: Size::new(8, 1),
    },
];

/// Network scenarios `--callgrind` does not measure, and why.
pub const SKIPPED: &[(&str, &str)] = &[(
    "idle_memory",
    "its op is an idle connection's memory, not a unit of work (the instructions are \
     connection set-up, which pound counts)",
)];

/// The plans for the scenarios named on the command line (all of [`PLANS`] when none
/// is); an error names a scenario that `--callgrind` does not measure, and why.
pub fn plans(scenarios: &[&Scenario]) -> Result<Vec<&'static Plan>> {
    if scenarios.is_empty() {
        return Ok(PLANS.iter().collect());
    }
    let mut out: Vec<&'static Plan> = Vec::new();
    for s in scenarios {
        let Some(plan) = PLANS.iter().find(|p| p.scenario == s.name) else {
            if let Some((_, why)) = SKIPPED.iter().find(|(name, _)| *name == s.name) {
                bail!("--callgrind does not measure {}: {why}", s.name);
            }
            bail!(
                "--callgrind measures the network scenarios only ({}), not {}",
                PLANS
                    .iter()
                    .map(|p| p.scenario)
                    .collect::<Vec<_>>()
                    .join(", "),
                s.name
            );
        };
        if !out.iter().any(|p| std::ptr::eq(*p, plan)) {
            out.push(plan);
        }
    }
    Ok(out)
}

/// One peer's counts in one scenario.
#[derive(Debug)]
pub struct Count {
    /// The peer.
    pub peer: Peer,
    /// Size of the baseline run.
    pub base: Size,
    /// Size of the measured run.
    pub full: Size,
    /// Instructions of the baseline run.
    pub base_ir: u64,
    /// Instructions of the measured run.
    pub full_ir: u64,
    /// The measured run's callgrind output file.
    pub file: PathBuf,
}

impl Count {
    /// Instructions per op, the baseline subtracted: (Ir(n) − Ir(base)) / (n − base n).
    /// Negative only if something is badly wrong (the baseline counted more).
    pub fn per_op(&self) -> f64 {
        let ops = self.full.n.saturating_sub(self.base.n).max(1);
        (self.full_ir as f64 - self.base_ir as f64) / ops as f64
    }
}

/// One scenario's counts.
#[derive(Debug)]
pub struct ScenarioCounts {
    /// The scenario.
    pub scenario: &'static Scenario,
    /// Its sizes.
    pub plan: &'static Plan,
    /// The measured run's size (the plan's, `--quick` or not).
    pub full: Size,
    /// The peers that were measured.
    pub counts: Vec<Count>,
    /// The peers whose runs failed, and why.
    pub failed: Vec<(Peer, String)>,
}

/// Checks that valgrind is there.
pub fn check_valgrind() -> Result<String> {
    let out = Command::new("valgrind")
        .arg("--version")
        .output()
        .context("cannot run `valgrind` (Debian: apt-get install -y valgrind)")?;
    if !out.status.success() {
        bail!("`valgrind --version` failed");
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A peer's command line with its size arguments (`--n`, `--conns`) replaced by `size`.
pub fn sized_args<'a>(args: impl IntoIterator<Item = &'a OsStr>, size: Size) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        if a == "--n" || a == "--conns" {
            args.next();
        } else {
            out.push(a.to_owned());
        }
    }
    for (k, v) in [("--n", size.n), ("--conns", size.conns)] {
        out.push(k.into());
        out.push(v.to_string().into());
    }
    out
}

/// Runs one peer's server under callgrind at `size`; returns its Ir (without
/// [`NOT_COUNTED`]) and the output file.
fn measure(
    programs: &Programs,
    peer: Peer,
    scenario: &Scenario,
    size: Size,
    out_dir: &Path,
    timeout: Duration,
) -> Result<(u64, PathBuf)> {
    let client = match scenario.client {
        // Paced, so that every round trip takes the same path through the server.
        Some(Client::PingPong) => Client::PingPongPaced {
            pause_us: PINGPONG_PAUSE_US,
        },
        Some(c) => c,
        None => bail!("{} is not a network scenario", scenario.name),
    };
    let Some(cmd) = programs.command(peer, scenario, true)? else {
        bail!("peer {} has no echo server", peer.name());
    };
    let file = out_dir.join(format!("{}-{}-{}.out", peer.name(), scenario.name, size.n));
    let mut vg = Command::new("valgrind");
    vg.arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", file.display()))
        .arg(cmd.get_program())
        .args(sized_args(cmd.get_args(), size));
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            vg.env(k, v);
        }
    }
    let net = NetRun {
        client,
        n: size.n,
        conns: size.conns,
    };
    match run::run_net(vg, net, timeout) {
        Outcome::Ok(_) => {}
        Outcome::Unsupported => bail!("peer {} has no echo server", peer.name()),
        Outcome::Failed(why) => bail!(
            "{} under callgrind, {} {}: {why}",
            peer.name(),
            scenario.name,
            size.label()
        ),
    }
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let total = total_ir(&text)?;
    let agent_extra: &[&str] = if peer == Peer::LibuvAgent {
        NOT_COUNTED_AGENT
    } else {
        &[]
    };
    let not_counted: u64 = NOT_COUNTED
        .iter()
        .chain(agent_extra)
        .map(|f| inclusive_ir(&text, f))
        .sum();
    Ok((total.saturating_sub(not_counted), file))
}

/// Not counted, because their cost follows wall time, not work, and valgrind runs the
/// program ~50× slower than it runs (both functions are never inlined):
/// - the TSC calibration at loopd's start-up (once per process): it spins for a stretch
///   of wall time, so its instruction count varies from run to run by millions;
/// - loopd's snapshot publication (every 100 ms of wall time): under valgrind a run sees
///   ~50× more publications per operation than it would at full speed, which made
///   loopd-on's count swing between ~400 and ~900 Ir per round trip from run to run.
///   At full speed it is 10 publications a second whatever the load.
const NOT_COUNTED: &[&str] = &[
    "loopd_engine::clock::calibrate",
    "loopd_engine::stats::<impl loopd_engine::Loop>::publish",
];

/// Also not counted for the `libuv-agent` peer, for the same reason: the agent's snapshot
/// publication (every 100 ms) and its threads — the watchdog (polls every 5 ms), the control
/// server, the symbolizer — all Rust threads entered through `thread_start`, none of them on
/// the echo server's path (libuv's own workers are C threads and stay counted).
const NOT_COUNTED_AGENT: &[&str] = &[
    "<std::sys::thread::unix::Thread>::new::thread_start",
    "loopd_agent::loop_agent::LoopAgent::publish",
];

/// The inclusive Ir of every function named `name` (self cost plus the inclusive cost
/// of its calls), from a callgrind output file; for a function that is not recursive.
pub fn inclusive_ir(text: &str, name: &str) -> u64 {
    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut in_target = false;
    let mut sum = 0u64;
    for line in text.lines() {
        if let Some(spec) = line.strip_prefix("fn=") {
            in_target = resolve(&mut names, spec) == name;
        } else if let Some(spec) = line.strip_prefix("cfn=") {
            resolve(&mut names, spec);
        } else if in_target && line.starts_with(|c: char| c.is_ascii_digit() || "+-*".contains(c)) {
            // A cost line: its own instructions, or (after a `calls=` line) the
            // inclusive cost of that call. Both count.
            sum += line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    sum
}

/// Resolves callgrind's name compression: `(id) name` defines, `(id)` refers.
fn resolve<'a>(names: &mut HashMap<&'a str, &'a str>, spec: &'a str) -> &'a str {
    let spec = spec.trim();
    let Some((id, given)) = spec.strip_prefix('(').and_then(|r| r.split_once(')')) else {
        return spec;
    };
    let given = given.trim();
    if given.is_empty() {
        names.get(id).copied().unwrap_or("")
    } else {
        names.insert(id, given);
        given
    }
}

/// The total Ir of a callgrind output file (its `totals:` or `summary:` line).
pub fn total_ir(text: &str) -> Result<u64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no totals line in the callgrind output")
}

/// Measures every peer in every planned scenario; prints progress on stderr. A peer
/// whose run fails is reported in [`ScenarioCounts::failed`] and the rest go on.
pub fn run_all(
    programs: &Programs,
    peers: &[Peer],
    plans: &[&'static Plan],
    quick: bool,
    out_dir: &Path,
    timeout: Duration,
) -> Result<Vec<ScenarioCounts>> {
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let mut all = Vec::new();
    for &plan in plans {
        let scenario = Scenario::find(plan.scenario)
            .with_context(|| format!("no scenario {:?} in the registry", plan.scenario))?;
        let (base, full) = (plan.base, plan.size(quick));
        eprintln!(
            "-- {}: Ir({}) and Ir({}) per peer",
            scenario.name,
            base.label(),
            full.label()
        );
        let mut sc = ScenarioCounts {
            scenario,
            plan,
            full,
            counts: Vec::new(),
            failed: Vec::new(),
        };
        for &peer in peers {
            let started = std::time::Instant::now();
            let measured = measure(programs, peer, scenario, base, out_dir, timeout).and_then(
                |(base_ir, _)| {
                    let (full_ir, file) =
                        measure(programs, peer, scenario, full, out_dir, timeout)?;
                    Ok((base_ir, full_ir, file))
                },
            );
            match measured {
                Ok((base_ir, full_ir, file)) => {
                    let c = Count {
                        peer,
                        base,
                        full,
                        base_ir,
                        full_ir,
                        file,
                    };
                    eprintln!(
                        "  {:<10} Ir(base) {:>12}  Ir(full) {:>13}  {:>11.0} Ir/{}  ({:.1} s)",
                        peer.name(),
                        base_ir,
                        full_ir,
                        c.per_op(),
                        scenario.op,
                        started.elapsed().as_secs_f64()
                    );
                    sc.counts.push(c);
                }
                Err(e) => {
                    eprintln!("  {:<10} FAILED: {e:#}", peer.name());
                    sc.failed.push((peer, format!("{e:#}")));
                }
            }
        }
        all.push(sc);
    }
    Ok(all)
}

/// The comparisons: (a, b) reads "a ÷ b" = b's Ir per op ÷ a's (> 1: a needs fewer
/// instructions). The stronger libuv is the libuv peer with fewer Ir per op.
const RATIOS: &[(Peer, Versus)] = &[
    (Peer::LoopdOn, Versus::Peer(Peer::Libuv)),
    (Peer::LoopdOn, Versus::Peer(Peer::LibuvTuned)),
    (Peer::LoopdOn, Versus::StrongerLibuv),
    (Peer::LoopdOff, Versus::Peer(Peer::Libuv)),
    (Peer::LoopdOff, Versus::Peer(Peer::LibuvTuned)),
    (Peer::LoopdOff, Versus::StrongerLibuv),
    (Peer::LoopdOn, Versus::Peer(Peer::LoopdOff)),
    (Peer::LibuvTuned, Versus::Peer(Peer::Libuv)),
    (Peer::LoopdOn, Versus::Peer(Peer::Tokio)),
    (Peer::LoopdOn, Versus::Peer(Peer::Mio)),
    (Peer::LoopdOff, Versus::Peer(Peer::Mio)),
    (Peer::Libuv, Versus::Peer(Peer::Mio)),
    (Peer::LibuvTuned, Versus::Peer(Peer::Mio)),
];

fn ratios(counts: &[Count]) -> Vec<Row<f64>> {
    let get = |p: Peer| counts.iter().find(|c| c.peer == p);
    versus::rows(
        RATIOS,
        |p| Some(-get(p)?.per_op()),
        |a, b| Some(get(b)?.per_op() / get(a)?.per_op()),
    )
}

/// The human tables, one per scenario.
pub fn table(all: &[ScenarioCounts]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for sc in all {
        let (base, full, op) = (sc.plan.base, sc.full, sc.scenario.op);
        let per_op = format!("Ir/{op}");
        let _ = writeln!(
            out,
            "== callgrind {}: instructions (Ir) per {op} in the server process, lower is \
             better\n   (Ir({}) − Ir({})) / {}; user space only (the kernel's share is not \
             counted); loopd's TSC calibration and snapshot publication (wall-time driven) left out",
            sc.scenario.name,
            full.label(),
            base.label(),
            full.n.saturating_sub(base.n)
        );
        let _ = writeln!(
            out,
            "{:<11} {:>20} {:>20} {:>14}",
            "peer",
            format!("Ir({})", base.label()),
            format!("Ir({})", full.label()),
            per_op
        );
        for c in &sc.counts {
            let _ = writeln!(
                out,
                "{:<11} {:>20} {:>20} {:>14.0}",
                c.peer.name(),
                c.base_ir,
                c.full_ir,
                c.per_op()
            );
        }
        for (peer, why) in &sc.failed {
            let _ = writeln!(out, "{:<11} FAILED: {why}", peer.name());
        }
        let rs = ratios(&sc.counts);
        if !rs.is_empty() {
            let _ = writeln!(out, "{:<40} {:>14}", "ratio (>1: first better)", per_op);
            for row in rs {
                let _ = writeln!(out, "{:<40} {:>14.3}", row.label(), row.ratio);
            }
        }
        let _ = writeln!(out);
    }
    let files: Vec<String> = all
        .iter()
        .flat_map(|sc| sc.counts.iter().map(|c| c.file.display().to_string()))
        .collect();
    if !files.is_empty() {
        let _ = writeln!(
            out,
            "profiles: {}  (callgrind_annotate FILE | head -40)",
            files.join(" ")
        );
    }
    out
}

fn size_json(s: Size) -> Value {
    json!({ "n": s.n, "conns": s.conns })
}

/// One scenario's JSON section.
fn scenario_json(sc: &ScenarioCounts) -> Value {
    json!({
        "op": sc.scenario.op,
        "base": size_json(sc.plan.base),
        "full": size_json(sc.full),
        "peers": sc.counts.iter().map(|c| json!({
            "peer": c.peer.name(),
            "n": c.full.n,
            "conns": c.full.conns,
            "base_n": c.base.n,
            "base_conns": c.base.conns,
            "base_ir": c.base_ir,
            "full_ir": c.full_ir,
            "ir_per_op": c.per_op(),
            "file": c.file.display().to_string(),
        })).collect::<Vec<_>>(),
        "ratios": ratios(&sc.counts).iter().map(|row| json!({
            "a": row.a.name(),
            "b": row.b.name(),
            "b_is_stronger_libuv": row.stronger_libuv,
            "ir_per_op": row.ratio,
        })).collect::<Vec<_>>(),
        "failed": sc.failed.iter().map(|(p, why)| json!({
            "peer": p.name(), "error": why,
        })).collect::<Vec<_>>(),
    })
}

/// The JSON of the counts: `scenarios.<name>` per scenario; `peers` and `ratios` at the
/// top are pingpong's in the shape they had when `--callgrind` measured only pingpong
/// (`round_trips`, `ir_per_round_trip`), present when pingpong was measured.
pub fn json(all: &[ScenarioCounts]) -> Value {
    let mut doc = Map::new();
    doc.insert("not_counted".into(), json!(NOT_COUNTED));
    doc.insert(
        "scenarios".into(),
        Value::Object(
            all.iter()
                .map(|sc| (sc.scenario.name.to_owned(), scenario_json(sc)))
                .collect(),
        ),
    );
    if let Some(pp) = all.iter().find(|sc| sc.scenario.name == "pingpong") {
        doc.insert(
            "peers".into(),
            pp.counts
                .iter()
                .map(|c| {
                    json!({
                        "peer": c.peer.name(),
                        "round_trips": c.full.n,
                        "base_ir": c.base_ir,
                        "full_ir": c.full_ir,
                        "ir_per_round_trip": c.per_op(),
                        "file": c.file.display().to_string(),
                    })
                })
                .collect(),
        );
        doc.insert(
            "ratios".into(),
            ratios(&pp.counts)
                .iter()
                .map(|row| {
                    json!({
                        "a": row.a.name(),
                        "b": row.b.name(),
                        "b_is_stronger_libuv": row.stronger_libuv,
                        "ir_per_round_trip": row.ratio,
                    })
                })
                .collect(),
        );
    }
    Value::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::SCENARIOS;

    #[test]
    fn reads_totals() {
        let text = "version: 1\ncmd: x\nevents: Ir\nsummary: 12345\nfn=main\n1 2\ntotals: 12345\n";
        assert_eq!(total_ir(text).unwrap(), 12345);
        assert!(total_ir("events: Ir\n").is_err());
    }

    #[test]
    fn inclusive_cost_of_a_function() {
        let text = "events: Ir\nfn=(1) main\n1 10\ncfn=(2) calib\ncalls=1 5\n2 100\n\
                    fn=(2)\n5 60\ncfn=(3) clock\ncalls=3 7\n6 40\nfn=(3)\n7 40\n\
                    totals: 150\n";
        assert_eq!(inclusive_ir(text, "calib"), 100);
        assert_eq!(inclusive_ir(text, "main"), 110);
        assert_eq!(inclusive_ir(text, "nope"), 0);
    }

    fn count(peer: Peer, base: Size, full: Size, base_ir: u64, per_op: u64) -> Count {
        Count {
            peer,
            base,
            full,
            base_ir,
            full_ir: base_ir + (full.n - base.n) * per_op,
            file: PathBuf::new(),
        }
    }

    #[test]
    fn per_op_subtracts_the_baseline() {
        let one = Size::new(1, 1);
        let c = count(Peer::Mio, one, Size::new(100, 1), 1_000, 50);
        assert_eq!(c.full_ir, 1_000 + 99 * 50);
        assert_eq!(c.per_op(), 50.0);
        let l = count(Peer::LoopdOn, one, Size::new(100, 1), 0, 100);
        let r = ratios(&[l, c]);
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].a, r[0].b, r[0].ratio),
            (Peer::LoopdOn, Peer::Mio, 0.5)
        );
    }

    #[test]
    fn per_op_divides_by_the_ops_beyond_the_baseline() {
        // pingpong100: the baseline is one round trip on each of the 100 connections.
        let c = Count {
            peer: Peer::Libuv,
            base: Size::new(100, 100),
            full: Size::new(2_000, 100),
            base_ir: 5_000_000,
            full_ir: 5_000_000 + 1_900 * 700,
            file: PathBuf::new(),
        };
        assert_eq!(c.per_op(), 700.0);
        // A baseline that counted more shows as negative, not as 0.
        let odd = Count {
            full_ir: 4_999_000,
            ..c
        };
        assert!(odd.per_op() < 0.0);
    }

    #[test]
    fn tokio_is_measured_and_compared() {
        assert!(PEERS.contains(&Peer::Tokio));
        assert!(!PEERS.contains(&Peer::Node));
        let one = Size::new(1, 1);
        let full = Size::new(201, 1);
        let r = ratios(&[
            count(Peer::LoopdOn, one, full, 10, 400),
            count(Peer::Tokio, one, full, 10, 1_000),
        ]);
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].a, r[0].b, r[0].ratio),
            (Peer::LoopdOn, Peer::Tokio, 2.5)
        );
    }

    #[test]
    fn both_libuv_peers_are_measured_and_the_stronger_has_fewer_instructions() {
        assert!(PEERS.contains(&Peer::Libuv) && PEERS.contains(&Peer::LibuvTuned));
        let one = Size::new(1, 1);
        let full = Size::new(201, 1);
        let rs = ratios(&[
            count(Peer::LoopdOn, one, full, 10, 400),
            count(Peer::Libuv, one, full, 10, 800),
            count(Peer::LibuvTuned, one, full, 10, 500),
        ]);
        let got: Vec<(String, f64)> = rs.iter().map(|r| (r.label(), r.ratio)).collect();
        assert_eq!(
            got,
            [
                ("loopd-on ÷ libuv".to_owned(), 2.0),
                ("loopd-on ÷ libuv-tuned".to_owned(), 1.25),
                ("loopd-on ÷ stronger libuv (libuv-tuned)".to_owned(), 1.25),
                ("libuv-tuned ÷ libuv".to_owned(), 1.6),
            ]
        );
    }

    #[test]
    fn every_network_scenario_is_planned_or_skipped() {
        for s in SCENARIOS.iter().filter(|s| s.client.is_some()) {
            let planned = PLANS.iter().filter(|p| p.scenario == s.name).count();
            let skipped = SKIPPED.iter().filter(|(n, _)| *n == s.name).count();
            assert_eq!(planned + skipped, 1, "{}", s.name);
        }
        for p in PLANS {
            let s = Scenario::find(p.scenario).unwrap();
            assert!(s.client.is_some(), "{}", p.scenario);
            for full in [p.full, p.quick] {
                assert!(full.n > p.base.n, "{}", p.scenario);
                // The same set-up: a persistent-connection scenario keeps its
                // connections; pound serves one connection per op.
                if s.name == "pound" {
                    assert_eq!((full.conns, p.base.conns), (full.n, p.base.n));
                } else {
                    assert_eq!(full.conns, p.base.conns, "{}", p.scenario);
                }
            }
            assert!(p.quick.n < p.full.n);
        }
        assert_eq!(
            PLANS.iter().map(|p| p.scenario).collect::<Vec<_>>(),
            ["pingpong", "pingpong100", "pound", "pump"]
        );
    }

    #[test]
    fn pingpong100_baseline_is_one_round_trip_per_connection() {
        let p = PLANS.iter().find(|p| p.scenario == "pingpong100").unwrap();
        assert_eq!(p.base, Size::new(100, 100));
        let s = Scenario::find("pingpong100").unwrap();
        assert_eq!(s.size("conns", false), Some(p.base.conns));
    }

    #[test]
    fn choosing_scenarios() {
        let names = |v: Vec<&Plan>| v.iter().map(|p| p.scenario).collect::<Vec<_>>();
        assert_eq!(plans(&[]).unwrap().len(), PLANS.len());
        let find = |n: &str| Scenario::find(n).unwrap();
        assert_eq!(
            names(plans(&[find("pump"), find("pound"), find("pump")]).unwrap()),
            ["pump", "pound"]
        );
        let e = plans(&[find("idle_memory")]).unwrap_err().to_string();
        assert!(
            e.contains("idle_memory") && e.contains("not a unit of work"),
            "{e}"
        );
        let e = plans(&[find("timers")]).unwrap_err().to_string();
        assert!(e.contains("network scenarios only"), "{e}");
    }

    #[test]
    fn size_arguments_are_replaced() {
        let args = ["echo", "--no-instrument", "--n", "10000", "--conns", "1"].map(OsStr::new);
        let got = sized_args(args, Size::new(200, 200));
        assert_eq!(
            got,
            ["echo", "--no-instrument", "--n", "200", "--conns", "200"].map(OsString::from)
        );
        let got = sized_args([OsStr::new("echo")], Size::new(8, 1));
        assert_eq!(
            got,
            ["echo", "--n", "8", "--conns", "1"].map(OsString::from)
        );
    }

    #[test]
    fn json_keeps_pingpong_at_the_top() {
        let pp = Scenario::find("pingpong").unwrap();
        let pound = Scenario::find("pound").unwrap();
        let plan = |n: &str| PLANS.iter().find(|p| p.scenario == n).unwrap();
        let one = Size::new(1, 1);
        let all = [
            ScenarioCounts {
                scenario: pp,
                plan: plan("pingpong"),
                full: Size::new(2_000, 1),
                counts: vec![count(Peer::LoopdOn, one, Size::new(2_000, 1), 100, 500)],
                failed: vec![],
            },
            ScenarioCounts {
                scenario: pound,
                plan: plan("pound"),
                full: Size::new(200, 200),
                counts: vec![count(Peer::Libuv, one, Size::new(200, 200), 100, 30_000)],
                failed: vec![(Peer::Tokio, "boom".into())],
            },
        ];
        let v = json(&all);
        assert_eq!(v["peers"][0]["peer"], "loopd-on");
        assert_eq!(v["peers"][0]["round_trips"], 2_000);
        assert_eq!(v["peers"][0]["ir_per_round_trip"], 500.0);
        assert_eq!(v["scenarios"]["pound"]["op"], "connection");
        assert_eq!(v["scenarios"]["pound"]["peers"][0]["ir_per_op"], 30_000.0);
        assert_eq!(v["scenarios"]["pound"]["base"]["n"], 1);
        assert_eq!(v["scenarios"]["pound"]["failed"][0]["peer"], "tokio");
        let t = table(&all);
        assert!(
            t.contains("Ir/connection") && t.contains("FAILED: boom"),
            "{t}"
        );
        // Without pingpong there is nothing at the top.
        let v = json(&all[1..]);
        assert!(v.get("peers").is_none());
    }
}
