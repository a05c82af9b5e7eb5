//! `--callgrind`: instructions per ping-pong round trip, counted by
//! `valgrind --tool=callgrind` in the server process.
//!
//! Each peer's echo server runs under callgrind twice with the `pingpong` client: once
//! for `n` round trips and once for 1 (the baseline: start-up, one connection, exit).
//! Instructions per round trip = (Ir(n) − Ir(1)) / (n − 1), so start-up and tear-down
//! cancel out. Unlike CPU time this does not depend on the machine's load, which makes
//! it the number to compare on a busy machine; it counts user-space instructions only
//! (the kernel's share of a round trip, most of it, is invisible to it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

use crate::net::Client;
use crate::peer::{Peer, Programs};
use crate::run::{self, NetRun, Outcome};
use crate::scenario::Scenario;

/// The peers measured: Node is left out (its JIT warms up during the run, so the
/// difference of two runs is not a per-round-trip cost).
pub const PEERS: &[Peer] = &[Peer::LoopdOn, Peer::LoopdOff, Peer::Libuv, Peer::Mio];

/// Round trips of the measured run.
pub fn round_trips(quick: bool) -> u64 {
    if quick {
        2_000
    } else {
        20_000
    }
}

/// One peer's counts.
#[derive(Debug)]
pub struct Count {
    /// The peer.
    pub peer: Peer,
    /// Instructions of the baseline run (1 round trip).
    pub base_ir: u64,
    /// Instructions of the run with `n` round trips.
    pub full_ir: u64,
    /// Round trips of the full run.
    pub n: u64,
    /// The full run's callgrind output file.
    pub file: PathBuf,
}

impl Count {
    /// Instructions per round trip, the baseline subtracted.
    pub fn per_round_trip(&self) -> f64 {
        self.full_ir.saturating_sub(self.base_ir) as f64 / (self.n - 1) as f64
    }
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

/// Runs one peer's server under callgrind with `n` round trips; returns total Ir.
fn measure(
    programs: &Programs,
    peer: Peer,
    scenario: &Scenario,
    n: u64,
    out_dir: &Path,
    timeout: Duration,
) -> Result<(u64, PathBuf)> {
    let Some(cmd) = programs.command(peer, scenario, true)? else {
        bail!("peer {} has no echo server", peer.name());
    };
    let file = out_dir.join(format!("{}-pingpong-{n}.out", peer.name()));
    let mut vg = Command::new("valgrind");
    vg.arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", file.display()))
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            vg.env(k, v);
        }
    }
    let net = NetRun {
        client: Client::PingPong,
        n,
        conns: 1,
    };
    match run::run_net(vg, net, timeout) {
        Outcome::Ok(_) => {}
        Outcome::Unsupported => bail!("peer {} has no echo server", peer.name()),
        Outcome::Failed(why) => bail!("{} under callgrind, n = {n}: {why}", peer.name()),
    }
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let total = total_ir(&text)?;
    Ok((total.saturating_sub(inclusive_ir(&text, NOT_COUNTED)), file))
}

/// Not counted: the TSC calibration at loopd's start-up (once per process, in a function
/// never inlined). It spins for a stretch of wall time, so under valgrind its instruction
/// count varies from run to run by millions, more than thousands of round trips cost.
const NOT_COUNTED: &str = "loopd::engine::clock::calibrate";

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

/// Measures every peer; prints progress on stderr.
pub fn run_all(
    programs: &Programs,
    peers: &[Peer],
    scenario: &Scenario,
    quick: bool,
    out_dir: &Path,
    timeout: Duration,
) -> Result<Vec<Count>> {
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let n = round_trips(quick);
    let mut counts = Vec::new();
    for &peer in peers {
        let (base_ir, _) = measure(programs, peer, scenario, 1, out_dir, timeout)?;
        let (full_ir, file) = measure(programs, peer, scenario, n, out_dir, timeout)?;
        let c = Count {
            peer,
            base_ir,
            full_ir,
            n,
            file,
        };
        eprintln!(
            "  {:<10} Ir(1) {:>12}  Ir({n}) {:>13}  {:>9.0} Ir/round trip",
            peer.name(),
            base_ir,
            full_ir,
            c.per_round_trip()
        );
        counts.push(c);
    }
    Ok(counts)
}

/// The comparisons: (a, b) reads "a ÷ b" = b's Ir per round trip ÷ a's (> 1: a needs
/// fewer instructions).
const RATIOS: &[(Peer, Peer)] = &[
    (Peer::LoopdOn, Peer::Libuv),
    (Peer::LoopdOff, Peer::Libuv),
    (Peer::LoopdOn, Peer::LoopdOff),
    (Peer::LoopdOn, Peer::Mio),
    (Peer::LoopdOff, Peer::Mio),
    (Peer::Libuv, Peer::Mio),
];

fn ratios(counts: &[Count]) -> Vec<(Peer, Peer, f64)> {
    let get = |p: Peer| counts.iter().find(|c| c.peer == p);
    RATIOS
        .iter()
        .filter_map(|&(a, b)| {
            let (ca, cb) = (get(a)?, get(b)?);
            Some((a, b, cb.per_round_trip() / ca.per_round_trip()))
        })
        .collect()
}

/// The human table.
pub fn table(counts: &[Count]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let n = counts.first().map_or(0, |c| c.n);
    let _ = writeln!(
        out,
        "== callgrind: instructions (Ir) per pingpong round trip in the server process, \
         lower is better\n   (Ir(n={n}) − Ir(n=1)) / {}; user space only (the kernel's \
         share is not counted); loopd's one-off TSC calibration left out",
        n.saturating_sub(1)
    );
    let _ = writeln!(
        out,
        "{:<10} {:>14} {:>14} {:>14}",
        "peer",
        "Ir(n=1)",
        format!("Ir(n={n})"),
        "Ir/round trip"
    );
    for c in counts {
        let _ = writeln!(
            out,
            "{:<10} {:>14} {:>14} {:>14.0}",
            c.peer.name(),
            c.base_ir,
            c.full_ir,
            c.per_round_trip()
        );
    }
    let rs = ratios(counts);
    if !rs.is_empty() {
        let _ = writeln!(out, "{:<26} {:>8}", "ratio (>1: first better)", "Ir/rt");
        for (a, b, r) in rs {
            let _ = writeln!(
                out,
                "{:<26} {:>8.3}",
                format!("{} ÷ {}", a.name(), b.name()),
                r
            );
        }
    }
    let _ = writeln!(
        out,
        "profiles: {}  (callgrind_annotate FILE | head -40)",
        counts
            .iter()
            .map(|c| c.file.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    out
}

/// The JSON of the counts.
pub fn json(counts: &[Count]) -> Value {
    json!({
        "peers": counts.iter().map(|c| json!({
            "peer": c.peer.name(),
            "round_trips": c.n,
            "base_ir": c.base_ir,
            "full_ir": c.full_ir,
            "ir_per_round_trip": c.per_round_trip(),
            "file": c.file.display().to_string(),
        })).collect::<Vec<_>>(),
        "ratios": ratios(counts).iter().map(|(a, b, r)| json!({
            "a": a.name(), "b": b.name(), "ir_per_round_trip": r,
        })).collect::<Vec<_>>(),
        "not_counted": NOT_COUNTED,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn per_round_trip_subtracts_the_baseline() {
        let c = Count {
            peer: Peer::Mio,
            base_ir: 1_000,
            full_ir: 1_000 + 99 * 50,
            n: 100,
            file: PathBuf::new(),
        };
        assert_eq!(c.per_round_trip(), 50.0);
        let l = Count {
            peer: Peer::LoopdOn,
            base_ir: 0,
            full_ir: 99 * 100,
            n: 100,
            file: PathBuf::new(),
        };
        let r = ratios(&[l, c]);
        assert_eq!(r, vec![(Peer::LoopdOn, Peer::Mio, 0.5)]);
    }
}
