//! Stall profiles through the real binaries (issue #17): `prime` inline blocks the loop on a
//! large prime; the stall's samples name the primality function, and `loopctl stalls
//! --profile/--folded/--speedscope` and `trace --stall` show them.
//!
//! Build the binaries first (`cargo build --workspace`). Every wait polls with a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "e2e/support.rs"]
mod support;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{binary, connect, metric, read_line, Control, Daemon};

/// 2^61 − 1: trial division blocks a debug build's loop for seconds.
const VERY_SLOW_PRIME: &str = "2305843009213693951";

const PRIME_INLINE: &str =
    "[[service]]\nkind = \"prime\"\nbind = \"127.0.0.1:0\"\nmode = \"inline\"\n";

/// `loopctl --socket S ARGS…`: (exit code, stdout, stderr).
fn loopctl(d: &Daemon, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary("loopctl"))
        .arg("--socket")
        .arg(&d.control)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Blocks the daemon's loop on the slow prime and waits for the stall to close (its
/// `closed` event: every sample of it is in its profile by then); returns the stall id.
fn one_long_stall(d: &Daemon) -> u64 {
    let mut events = Control::connect(d);
    events.call("subscribe", json!({"topics": ["stalls"]}));
    let mut s = connect(d.addr("prime"));
    writeln!(s, "{VERY_SLOW_PRIME}").unwrap();
    assert_eq!(read_line(&mut s), "prime");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "no stall closed");
        let m = events.read_message();
        if m["method"] == "stalls" && m["params"]["event"] == "closed" {
            return m["params"]["stall"]["id"].as_u64().unwrap();
        }
    }
}

#[test]
fn an_inline_prime_stall_has_a_profile_that_names_the_primality_function() {
    let d = Daemon::start(PRIME_INLINE);
    let id = one_long_stall(&d);
    let ids = id.to_string();

    // The profile through the protocol: at least 50 samples, kept in order.
    let mut c = Control::connect(&d);
    let r = c.call("stalls", json!({"id": id, "profile": true}));
    let stall = &r["recent"][0];
    let samples = stall["samples"].as_u64().unwrap();
    assert!(
        samples >= 50,
        "{samples} samples in {}",
        stall["duration_seconds"]
    );
    assert_eq!(
        stall["profile"]["samples"].as_array().unwrap().len() as u64,
        samples
    );
    assert!(
        stall["hot_frame"].as_str().unwrap().contains("is_prime"),
        "{}",
        stall["hot_frame"]
    );

    // --folded: the primality function in most samples.
    let (code, folded, err) = loopctl(&d, &["stalls", "--folded", &ids]);
    assert_eq!(code, 0, "{err}");
    let (mut total, mut in_prime) = (0u64, 0u64);
    for line in folded.lines() {
        let (stack, n) = line.rsplit_once(' ').unwrap();
        let n: u64 = n.parse().unwrap();
        total += n;
        if stack.contains("is_prime") {
            in_prime += n;
        }
        assert!(stack.split(';').count() > 3, "{stack}");
    }
    assert_eq!(total, samples);
    assert!(in_prime * 2 > total, "{in_prime} of {total} in is_prime");

    // --speedscope: a file speedscope reads, with as many samples.
    let file = d.dir.0.join("stall.speedscope.json");
    let path = file.display().to_string();
    let (code, out, err) = loopctl(&d, &["stalls", "--speedscope", &ids, "-o", &path]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("speedscope"), "{out}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        v["$schema"],
        "https://www.speedscope.app/file-format-schema.json"
    );
    let p = &v["profiles"][0];
    assert_eq!(p["type"], "sampled");
    assert_eq!(p["samples"].as_array().unwrap().len() as u64, samples);
    assert_eq!(p["weights"].as_array().unwrap().len() as u64, samples);
    let frames = v["shared"]["frames"].as_array().unwrap().len() as u64;
    assert!(p["samples"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s.as_array().unwrap())
        .all(|f| f.as_u64().unwrap() < frames));

    // --svg: inferno's flame graph.
    let svg_file = d.dir.0.join("stall.svg");
    let svg_path = svg_file.display().to_string();
    let (code, _, err) = loopctl(&d, &["stalls", "--svg", &ids, "-o", &svg_path]);
    assert_eq!(code, 0, "{err}");
    let svg = std::fs::read_to_string(&svg_file).unwrap();
    assert!(svg.contains("<svg") && svg.contains("is_prime"));

    // --profile: the primality function first by self time.
    let (code, table, err) = loopctl(&d, &["stalls", "--profile", &ids]);
    assert_eq!(code, 0, "{err}");
    let first = table
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("SELF"))
        .nth(1)
        .unwrap_or_else(|| panic!("{table}"));
    assert!(first.contains("is_prime"), "{table}");
    assert!(
        table.contains(&format!("{samples} samples every 10 ms")),
        "{table}"
    );

    // trace --stall: the window and the samples.
    let trace_file = d.dir.0.join("stall.trace.json");
    let trace_path = trace_file.display().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, _, err) = loopctl(&d, &["trace", "--stall", &ids, "-o", &trace_path]);
        if code == 0 {
            break;
        }
        assert!(err.contains("not found"), "{err}");
        assert!(Instant::now() < deadline, "{err}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let t: Value = serde_json::from_str(&std::fs::read_to_string(&trace_file).unwrap()).unwrap();
    let events = t["traceEvents"].as_array().unwrap();
    assert!(events
        .iter()
        .any(|e| e["cat"] == "sample" && e["name"].as_str().unwrap().contains("is_prime")));
    assert_eq!(t["otherData"]["stall_window"]["stall"], id);

    // The metrics count the samples; an unknown stall is a clear error.
    let page = d.scrape("/metrics").1;
    assert_eq!(
        metric(&page, "loopd_stall_samples_total{loop=\"0\"}"),
        Some(samples as f64)
    );
    let (code, _, err) = loopctl(&d, &["stalls", "--profile", "999"]);
    assert_ne!(code, 0);
    assert!(err.contains("no stall 999"), "{err}");
}

#[test]
fn the_sampling_interval_is_set_live_and_checked() {
    let d = Daemon::start(PRIME_INLINE);
    let (code, out, err) = loopctl(&d, &["config", "set", "stall_sample_interval_ms", "25"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("stall_sample_interval_ms  25"), "{out}");
    let (code, _, err) = loopctl(&d, &["config", "set", "stall_sample_interval_ms", "0"]);
    assert_eq!(code, 2, "{err}");
    let mut c = Control::connect(&d);
    let r = c.raw(br#"{"jsonrpc":"2.0","id":1,"method":"config.set","params":{"stall_sample_interval_ms":5000}}"#);
    assert_eq!(r["error"]["code"], -32005, "{r}");
    let id = one_long_stall(&d);
    let r = c.call("stalls", json!({"id": id, "profile": true}));
    assert_eq!(r["recent"][0]["profile"]["interval_ms"], 25);
}
