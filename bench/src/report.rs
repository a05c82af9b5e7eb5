//! Medians, ratios, the table and the JSON file.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::peer::Peer;
use crate::run::{Measurement, Outcome};
use crate::scenario::{Metric, Scenario};
use crate::versus::{self, Row, Versus};

/// One run of one peer in one scenario.
#[derive(Debug)]
pub struct RunRecord {
    /// The scenario.
    pub scenario: &'static Scenario,
    /// The peer.
    pub peer: Peer,
    /// Repetition number, from 1.
    pub rep: usize,
    /// What happened.
    pub outcome: Outcome,
}

/// Medians over the successful runs of one peer in one scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Successful runs.
    pub runs: usize,
    /// Operations per run.
    pub ops: u64,
    /// Median of the peer's own seconds.
    pub seconds: f64,
    /// Median ops per second.
    pub ops_per_second: f64,
    /// (max − min) / median of the headline value (seconds or ops/s).
    pub spread: f64,
    /// Lowest headline value (seconds or ops/s).
    pub min: f64,
    /// Highest headline value (seconds or ops/s).
    pub max: f64,
    /// Median wall seconds of the whole process.
    pub process_seconds: f64,
    /// Median user + system CPU seconds of the whole process.
    pub cpu_seconds: f64,
    /// Median user CPU seconds.
    pub user_seconds: f64,
    /// Median system CPU seconds.
    pub sys_seconds: f64,
    /// Median CPU microseconds per operation.
    pub cpu_us_per_op: f64,
    /// Median user CPU seconds per 100,000 operations (the engine's own share: on loopback
    /// network scenarios most of `cpu-s` is the kernel's).
    pub user_s_per_100k: f64,
    /// Median peak RSS, MiB.
    pub max_rss_mib: f64,
    /// Median of the runs' `extra.bytes_per_op` (NaN when they have none): the headline
    /// of a [`Metric::BytesPerOp`] scenario.
    pub bytes_per_op: f64,
}

impl Summary {
    /// Summarizes the measurements; `None` when there are none.
    pub fn of(metric: Metric, ms: &[&Measurement]) -> Option<Summary> {
        if ms.is_empty() {
            return None;
        }
        let med = |f: &dyn Fn(&Measurement) -> f64| median(ms.iter().map(|m| f(m)).collect());
        let headline: Vec<f64> = ms
            .iter()
            .map(|m| match metric {
                Metric::Throughput => m.ops_per_second(),
                Metric::Duration => m.seconds,
                Metric::BytesPerOp => bytes_per_op(m),
            })
            .collect();
        let lo = headline.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = headline.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mid = median(headline);
        Some(Summary {
            runs: ms.len(),
            ops: ms[0].ops,
            seconds: med(&|m| m.seconds),
            ops_per_second: med(&|m| m.ops_per_second()),
            spread: if mid > 0.0 { (hi - lo) / mid } else { 0.0 },
            min: lo,
            max: hi,
            process_seconds: med(&|m| m.process_seconds),
            cpu_seconds: med(&|m| m.cpu_seconds()),
            user_seconds: med(&|m| m.user_seconds),
            sys_seconds: med(&|m| m.sys_seconds),
            cpu_us_per_op: med(&|m| m.cpu_seconds() * 1e6 / m.ops.max(1) as f64),
            user_s_per_100k: med(&|m| m.user_seconds * 1e5 / m.ops.max(1) as f64),
            max_rss_mib: med(&|m| m.max_rss_kib as f64 / 1024.0),
            bytes_per_op: med(&bytes_per_op),
        })
    }

    /// How good the headline result is: higher is better for every metric.
    fn performance(&self, metric: Metric) -> f64 {
        match metric {
            Metric::Throughput => self.ops_per_second,
            Metric::Duration => 1.0 / self.seconds,
            Metric::BytesPerOp => 1.0 / self.bytes_per_op,
        }
    }
}

/// A run's `extra.bytes_per_op`, NaN when it has none.
fn bytes_per_op(m: &Measurement) -> f64 {
    m.extra
        .get("bytes_per_op")
        .and_then(Value::as_f64)
        .unwrap_or(f64::NAN)
}

/// The median (mean of the middle two for an even count).
pub fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// The comparisons printed for every scenario: (a, b) reads "a ÷ b". Each loopd peer is
/// compared with both libuv peers and with the stronger of them in the scenario (the one
/// an "ahead of libuv" claim is stated against); `libuv-tuned ÷ libuv` is what tuning
/// buys libuv.
pub const RATIOS: &[(Peer, Versus)] = &[
    (Peer::LoopdOn, Versus::Peer(Peer::Libuv)),
    (Peer::LoopdOn, Versus::Peer(Peer::LibuvTuned)),
    (Peer::LoopdOn, Versus::StrongerLibuv),
    (Peer::LoopdOff, Versus::Peer(Peer::Libuv)),
    (Peer::LoopdOff, Versus::Peer(Peer::LibuvTuned)),
    (Peer::LoopdOff, Versus::StrongerLibuv),
    (Peer::LoopdOn, Versus::Peer(Peer::LoopdOff)),
    (Peer::LibuvTuned, Versus::Peer(Peer::Libuv)),
    (Peer::LoopdOn, Versus::Peer(Peer::Node)),
    (Peer::LoopdOn, Versus::Peer(Peer::Tokio)),
    (Peer::LoopdOn, Versus::Peer(Peer::Mio)),
    (Peer::LoopdOff, Versus::Peer(Peer::Mio)),
    (Peer::Libuv, Versus::Peer(Peer::Mio)),
    (Peer::LibuvTuned, Versus::Peer(Peer::Mio)),
];

/// A ratio between two peers' summaries, oriented so that > 1.0 means `a` is better.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ratio {
    /// The headline result: a's ops/s ÷ b's (or b's seconds ÷ a's).
    pub result: f64,
    /// CPU per operation: b's ÷ a's (> 1.0: a spends less CPU).
    pub cpu: f64,
    /// For [`Metric::BytesPerOp`]: a's bytes per op − b's (negative: a needs less).
    pub bytes_diff: Option<f64>,
}

impl Ratio {
    fn between(metric: Metric, a: &Summary, b: &Summary) -> Ratio {
        Ratio {
            result: a.performance(metric) / b.performance(metric),
            cpu: b.cpu_us_per_op / a.cpu_us_per_op,
            bytes_diff: (metric == Metric::BytesPerOp).then_some(a.bytes_per_op - b.bytes_per_op),
        }
    }
}

/// Everything about one scenario, ready to print.
#[derive(Debug)]
pub struct ScenarioReport {
    /// The scenario.
    pub scenario: &'static Scenario,
    /// Per peer, in run order: its summary, or why there is none.
    pub peers: Vec<(Peer, Result<Summary, String>)>,
    /// The ratios of [`RATIOS`] that both sides have data for.
    pub ratios: Vec<Row<Ratio>>,
}

/// Builds the per-scenario reports from the runs.
pub fn summarize(
    scenarios: &[&'static Scenario],
    peers: &[Peer],
    runs: &[RunRecord],
) -> Vec<ScenarioReport> {
    scenarios
        .iter()
        .map(|&scenario| {
            let mut rows = Vec::new();
            for &peer in peers {
                let mine: Vec<&RunRecord> = runs
                    .iter()
                    .filter(|r| r.peer == peer && std::ptr::eq(r.scenario, scenario))
                    .collect();
                let ok: Vec<&Measurement> = mine
                    .iter()
                    .filter_map(|r| match &r.outcome {
                        Outcome::Ok(m) => Some(m),
                        _ => None,
                    })
                    .collect();
                let row = match Summary::of(scenario.metric, &ok) {
                    Some(s) => Ok(s),
                    None if mine.is_empty() => Err("not run".to_owned()),
                    None if mine
                        .iter()
                        .all(|r| matches!(r.outcome, Outcome::Unsupported)) =>
                    {
                        Err("n/a (peer has no such scenario)".to_owned())
                    }
                    None => Err("failed".to_owned()),
                };
                rows.push((peer, row));
            }
            let get = |p: Peer| {
                rows.iter()
                    .find(|(q, _)| *q == p)
                    .and_then(|(_, s)| s.as_ref().ok())
            };
            let ratios = versus::rows(
                RATIOS,
                |p| Some(get(p)?.performance(scenario.metric)),
                |a, b| Some(Ratio::between(scenario.metric, get(a)?, get(b)?)),
            );
            ScenarioReport {
                scenario,
                peers: rows,
                ratios,
            }
        })
        .collect()
}

/// The human table.
pub fn table(reports: &[ScenarioReport], quick: bool, reps: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "loopd-bench: medians of {reps} run(s) per peer, peers alternating, each run a separate \
         process{}",
        if quick { " (--quick sizes)" } else { "" }
    );
    let _ = writeln!(
        out,
        "result = the peer's own timing of the work; process-s = wall time of the whole process; \
         cpu = user+sys of the whole process;\nspread = (max-min)/median of the result."
    );
    let _ = writeln!(
        out,
        "Ratios are oriented so that > 1.0 means the first peer is better (faster / less CPU per op)."
    );
    for r in reports {
        let s = r.scenario;
        let (unit, lower_better) = match s.metric {
            Metric::Throughput => (s.per_second(), "higher is better"),
            Metric::Duration => ("seconds".to_owned(), "lower is better"),
            Metric::BytesPerOp => (format!("bytes/{}", s.op), "lower is better"),
        };
        let _ = writeln!(
            out,
            "\n== {} ({}): {unit}, {lower_better}\n   {}",
            s.name,
            s.size_label(quick),
            s.about
        );
        let _ = writeln!(
            out,
            "{:<11} {:>14} {:>7} {:>10} {:>8} {:>8} {:>8} {:>10} {:>11} {:>9} {:>5}",
            "peer",
            unit,
            "spread",
            "process-s",
            "cpu-s",
            "user-s",
            "sys-s",
            "cpu-µs/op",
            "user-s/100k",
            "rss-MiB",
            "runs"
        );
        for (peer, row) in &r.peers {
            match row {
                Ok(m) => {
                    let headline = match s.metric {
                        Metric::Throughput => thousands(m.ops_per_second),
                        Metric::Duration => format!("{:.3}", m.seconds),
                        Metric::BytesPerOp => thousands(m.bytes_per_op),
                    };
                    let _ = writeln!(
                        out,
                        "{:<11} {:>14} {:>6.1}% {:>10.3} {:>8.3} {:>8.3} {:>8.3} {:>10.3} {:>11.4} {:>9.1} {:>5}",
                        peer.name(),
                        headline,
                        m.spread * 100.0,
                        m.process_seconds,
                        m.cpu_seconds,
                        m.user_seconds,
                        m.sys_seconds,
                        m.cpu_us_per_op,
                        m.user_s_per_100k,
                        m.max_rss_mib,
                        m.runs
                    );
                }
                Err(why) => {
                    let _ = writeln!(out, "{:<11} {why}", peer.name());
                }
            }
        }
        if !r.ratios.is_empty() {
            let _ = writeln!(
                out,
                "{:<40} {:>8} {:>10}{}",
                "ratio (>1: first better)",
                "result",
                "cpu/op",
                if s.metric == Metric::BytesPerOp {
                    format!(" {:>14}", format!("{unit} a-b"))
                } else {
                    String::new()
                }
            );
            for row in &r.ratios {
                let ratio = row.ratio;
                let _ = writeln!(
                    out,
                    "{:<40} {:>8.3} {:>10.3}{}",
                    row.label(),
                    ratio.result,
                    ratio.cpu,
                    ratio
                        .bytes_diff
                        .map_or_else(String::new, |d| format!(" {:>+14.0}", d))
                );
            }
        }
    }
    out
}

/// The JSON document: metadata, per-scenario summaries and ratios, and every run.
pub fn json(reports: &[ScenarioReport], runs: &[RunRecord], meta: Value) -> Value {
    let scenarios: Vec<Value> = reports
        .iter()
        .map(|r| {
            let peers: serde_json::Map<String, Value> = r
                .peers
                .iter()
                .map(|(p, row)| {
                    let v = match row {
                        Ok(m) => json!({
                            "runs": m.runs,
                            "ops": m.ops,
                            "seconds": m.seconds,
                            "ops_per_second": m.ops_per_second,
                            "spread": m.spread,
                            "min": m.min,
                            "max": m.max,
                            "process_seconds": m.process_seconds,
                            "cpu_seconds": m.cpu_seconds,
                            "user_seconds": m.user_seconds,
                            "user_seconds_per_100k_ops": m.user_s_per_100k,
                            "sys_seconds": m.sys_seconds,
                            "cpu_us_per_op": m.cpu_us_per_op,
                            "max_rss_mib": m.max_rss_mib,
                            "bytes_per_op": m.bytes_per_op.is_finite().then_some(m.bytes_per_op),
                        }),
                        Err(why) => json!({ "error": why }),
                    };
                    (p.name().to_owned(), v)
                })
                .collect();
            let ratios: Vec<Value> = r
                .ratios
                .iter()
                .map(|row| {
                    json!({
                        "a": row.a.name(),
                        "b": row.b.name(),
                        "b_is_stronger_libuv": row.stronger_libuv,
                        "result": row.ratio.result,
                        "cpu_per_op": row.ratio.cpu,
                        "bytes_per_op_diff": row.ratio.bytes_diff,
                    })
                })
                .collect();
            json!({
                "name": r.scenario.name,
                "peer_scenario": r.scenario.peer_scenario,
                "about": r.scenario.about,
                "metric": match r.scenario.metric {
                    Metric::Throughput => "ops_per_second",
                    Metric::Duration => "seconds",
                    Metric::BytesPerOp => "bytes_per_op",
                },
                "peers": peers,
                "ratios": ratios,
            })
        })
        .collect();
    let runs: Vec<Value> = runs
        .iter()
        .map(|r| {
            let mut v = json!({
                "scenario": r.scenario.name,
                "peer": r.peer.name(),
                "rep": r.rep,
            });
            match &r.outcome {
                Outcome::Ok(m) => {
                    v["ops"] = json!(m.ops);
                    v["seconds"] = json!(m.seconds);
                    v["process_seconds"] = json!(m.process_seconds);
                    v["user_seconds"] = json!(m.user_seconds);
                    v["sys_seconds"] = json!(m.sys_seconds);
                    v["max_rss_kib"] = json!(m.max_rss_kib);
                    v["extra"] = m.extra.clone();
                }
                Outcome::Unsupported => v["error"] = json!("unsupported"),
                Outcome::Failed(why) => v["error"] = json!(why),
            }
            v
        })
        .collect();
    json!({ "meta": meta, "scenarios": scenarios, "runs": runs })
}

/// `1234567.8` → `"1,234,568"`.
pub fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 {
        out.insert(0, '-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(ops: u64, seconds: f64, cpu: f64) -> Measurement {
        Measurement {
            ops,
            seconds,
            process_seconds: seconds + 0.01,
            user_seconds: cpu,
            sys_seconds: 0.0,
            max_rss_kib: 2048,
            extra: Value::Null,
        }
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.8), "1,234,568");
    }

    #[test]
    fn ratios_say_better_as_above_one() {
        // Throughput: a does twice the ops/s with half the CPU per op.
        let a = Summary::of(Metric::Throughput, &[&m(100, 1.0, 0.5)]).unwrap();
        let b = Summary::of(Metric::Throughput, &[&m(100, 2.0, 1.0)]).unwrap();
        let r = Ratio::between(Metric::Throughput, &a, &b);
        assert_eq!((r.result, r.cpu), (2.0, 2.0));
        // Duration: a takes half the time.
        let a = Summary::of(Metric::Duration, &[&m(100, 1.0, 1.0)]).unwrap();
        let b = Summary::of(Metric::Duration, &[&m(100, 2.0, 1.0)]).unwrap();
        let r = Ratio::between(Metric::Duration, &a, &b);
        assert_eq!((r.result, r.cpu), (2.0, 1.0));
    }

    #[test]
    fn bytes_per_op_ratios_say_better_as_above_one_and_give_the_difference() {
        let with = |bytes: f64| {
            let mut x = m(100, 1.0, 1.0);
            x.extra = json!({ "bytes_per_op": bytes });
            x
        };
        let a = Summary::of(
            Metric::BytesPerOp,
            &[&with(1000.0), &with(1200.0), &with(900.0)],
        )
        .unwrap();
        assert_eq!(a.bytes_per_op, 1000.0);
        assert_eq!(a.spread, 0.3);
        let b = Summary::of(Metric::BytesPerOp, &[&with(2000.0)]).unwrap();
        let r = Ratio::between(Metric::BytesPerOp, &a, &b);
        assert_eq!((r.result, r.bytes_diff), (2.0, Some(-1000.0)));
        assert_eq!(Ratio::between(Metric::Duration, &a, &b).bytes_diff, None);
    }

    #[test]
    fn loopd_is_compared_with_both_libuv_peers_and_the_stronger() {
        let pump = Scenario::find("pump").unwrap();
        let timers = Scenario::find("timers").unwrap();
        let rec = |scenario, peer, outcome| RunRecord {
            scenario,
            peer,
            rep: 1,
            outcome,
        };
        // pump: libuv-tuned does 200 MiB/s, libuv 100, loopd-on 150.
        let runs = vec![
            rec(pump, Peer::LoopdOn, Outcome::Ok(m(150, 1.0, 0.5))),
            rec(pump, Peer::Libuv, Outcome::Ok(m(100, 1.0, 0.5))),
            rec(pump, Peer::LibuvTuned, Outcome::Ok(m(200, 1.0, 0.5))),
            rec(timers, Peer::LoopdOn, Outcome::Ok(m(100, 1.0, 1.0))),
            rec(timers, Peer::Libuv, Outcome::Ok(m(100, 2.0, 1.0))),
            rec(timers, Peer::LibuvTuned, Outcome::Unsupported),
        ];
        let peers = [Peer::LoopdOn, Peer::Libuv, Peer::LibuvTuned];
        let reports = summarize(&[pump, timers], &peers, &runs);
        let find = |r: &ScenarioReport, label: &str| {
            r.ratios
                .iter()
                .find(|row| row.label() == label)
                .map(|row| row.ratio.result)
        };
        assert_eq!(find(&reports[0], "loopd-on ÷ libuv"), Some(1.5));
        assert_eq!(find(&reports[0], "loopd-on ÷ libuv-tuned"), Some(0.75));
        assert_eq!(
            find(&reports[0], "loopd-on ÷ stronger libuv (libuv-tuned)"),
            Some(0.75)
        );
        assert_eq!(find(&reports[0], "libuv-tuned ÷ libuv"), Some(2.0));
        // timers: the tuned peer has no equivalent, the stronger libuv is libuv.
        assert!(matches!(&reports[1].peers[2], (Peer::LibuvTuned, Err(e)) if e.starts_with("n/a")));
        assert_eq!(find(&reports[1], "loopd-on ÷ libuv-tuned"), None);
        assert_eq!(
            find(&reports[1], "loopd-on ÷ stronger libuv (libuv)"),
            Some(2.0)
        );
        let t = table(&reports, false, 1);
        assert!(t.contains("loopd-on ÷ stronger libuv (libuv-tuned)"), "{t}");
        let v = json(&reports, &runs, Value::Null);
        let stronger: Vec<&Value> = v["scenarios"][0]["ratios"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["b_is_stronger_libuv"] == true)
            .collect();
        assert_eq!(stronger.len(), 1);
        assert_eq!(stronger[0]["b"], "libuv-tuned");
    }

    #[test]
    fn summary_takes_medians_and_spread() {
        let runs = [m(100, 1.0, 1.0), m(100, 2.0, 1.0), m(100, 4.0, 1.0)];
        let refs: Vec<&Measurement> = runs.iter().collect();
        let s = Summary::of(Metric::Duration, &refs).unwrap();
        assert_eq!(s.seconds, 2.0);
        assert_eq!(s.spread, 1.5);
        assert_eq!((s.min, s.max), (1.0, 4.0));
        assert_eq!(s.cpu_us_per_op, 10_000.0);
        assert_eq!(s.max_rss_mib, 2.0);
    }
}
