//! Stall profiles (issue #17): while a stall lasts its loop thread is sampled; the samples
//! form a profile that shows what the callback did and in what proportion, none from after
//! the stall, at most the bound (the rest counted); the flight recorder around the stall is
//! kept with it and exported alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use loopd_engine::{Handle, Timer};
use serde_json::{json, Value};
use support::{get, sample, wait_for, Harness};

/// Keeps the CPU busy until `until` (busy, not sleeping: the samples land in this frame).
#[inline(never)]
fn spin_until(until: Instant) {
    let mut x = 0u64;
    while Instant::now() < until {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

#[inline(never)]
fn first_part_of_the_block(d: Duration) {
    spin_until(Instant::now() + d);
}

#[inline(never)]
fn second_part_of_the_block(d: Duration) {
    spin_until(Instant::now() + d);
}

/// Blocks until `release` is set (at most `cap`).
#[inline(never)]
fn block_until_released(release: &AtomicBool, cap: Duration) {
    let until = Instant::now() + cap;
    while !release.load(Ordering::Relaxed) && Instant::now() < until {
        spin_until(Instant::now() + Duration::from_millis(1));
    }
}

/// Starts a one-shot timer on the harness loop whose callback runs `block`.
fn block_once(h: &Harness, block: impl FnOnce() + Send + 'static) {
    h.lp.run(move |lp| {
        let t = Timer::new(lp);
        t.set_label(lp, "profiled timer");
        let mut block = Some(block);
        t.start(
            lp,
            Duration::from_millis(5),
            Duration::ZERO,
            move |lp, t| {
                if let Some(b) = block.take() {
                    b();
                }
                t.close(lp);
            },
        )
        .unwrap();
    });
}

/// A client subscribed to stall events (before the stall starts).
fn watcher(h: &Harness) -> support::Client {
    let mut w = h.client();
    w.result("subscribe", json!({"topics": ["stalls"]}));
    w
}

/// The next stall to close, with its profile. The `closed` event comes after every sample
/// the stall's profile got (they are processed in order), so the profile is complete.
fn closed_stall(w: &mut support::Client, c: &mut support::Client) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    let id = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = w.notification("stalls", left).expect("a stall closed");
        if n["params"]["event"] == "closed" {
            break n["params"]["stall"]["id"].clone();
        }
    };
    let r = c.result("stalls", json!({"id": id, "profile": true}));
    r["recent"][0].clone()
}

/// Samples whose stack holds a frame whose function contains `name`.
fn samples_in(profile: &Value, name: &str) -> usize {
    let frames = profile["frames"].as_array().unwrap();
    let stacks = profile["stacks"].as_array().unwrap();
    let holds = |stack: &Value| {
        stack.as_array().unwrap().iter().any(|f| {
            frames[f.as_u64().unwrap() as usize]["function"]
                .as_str()
                .unwrap()
                .contains(name)
        })
    };
    profile["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| holds(&stacks[s["stack"].as_u64().unwrap() as usize]))
        .count()
}

#[test]
fn a_block_made_of_two_functions_shows_both_in_proportion_and_nothing_after_it() {
    let h = Harness::start();
    let mut c = h.client();
    let mut w = watcher(&h);
    let (first, second) = (Duration::from_millis(300), Duration::from_millis(600));
    block_once(&h, move || {
        first_part_of_the_block(first);
        second_part_of_the_block(second);
    });
    let stall = closed_stall(&mut w, &mut c);
    let profile = &stall["profile"];
    let samples = profile["samples"].as_array().unwrap();
    assert_eq!(stall["samples"], samples.len() as u64, "{stall}");
    assert_eq!(profile["interval_ms"], 10);
    // ~800 ms past the threshold at 10 ms: about 80 samples; far fewer on a loaded machine
    // would still say which part took longer.
    assert!(samples.len() >= 20, "{} samples", samples.len());
    let a = samples_in(profile, "first_part_of_the_block");
    let b = samples_in(profile, "second_part_of_the_block");
    assert!(a > 0 && b > 0, "both parts show: {a} / {b}");
    // The first 100 ms (the threshold) are not sampled: 200 ms of the first part, 600 of
    // the second: a quarter.
    let share = a as f64 / (a + b) as f64;
    assert!(
        (0.1..=0.45).contains(&share),
        "first part {a}, second part {b}: share {share:.2}"
    );
    // The hot frame is the innermost frame most samples were in (here the clock read of
    // the spin loop, resolved through the loader when it has no debug info).
    let frames = profile["frames"].as_array().unwrap();
    let stacks = profile["stacks"].as_array().unwrap();
    let mut leaves = std::collections::HashMap::<&str, usize>::new();
    for s in samples {
        let stack = &stacks[s["stack"].as_u64().unwrap() as usize];
        let leaf = &frames[stack[0].as_u64().unwrap() as usize]["function"];
        *leaves.entry(leaf.as_str().unwrap()).or_default() += 1;
    }
    let most = *leaves.values().max().unwrap();
    let hot = stall["hot_frame"].as_str().unwrap();
    assert!(
        leaves
            .iter()
            .any(|(leaf, n)| *n == most && hot.starts_with(leaf)),
        "hot frame {hot}, innermost frames: {leaves:?}"
    );
    assert!(!hot.starts_with("<unknown"), "{hot}");
    // No sample from after the callback returned.
    let duration_us = (stall["duration_seconds"].as_f64().unwrap() * 1e6) as u64;
    let last = samples.last().unwrap()["at_us"].as_u64().unwrap();
    assert!(
        last <= duration_us,
        "sample at {last} µs of {duration_us} µs"
    );
    let threshold_us = stall["threshold_ms"].as_u64().unwrap() * 1_000;
    assert!(samples[0]["at_us"].as_u64().unwrap() >= threshold_us);

    // Metrics count them; the stall's window is kept and exported alone.
    let body = get(h.metrics_addr(), "/metrics").1;
    let series = format!("loopd_stall_samples_total{{loop=\"{}\"}}", h.loop_index());
    assert_eq!(
        sample(&body, &series),
        Some(samples.len() as f64),
        "{series}"
    );
}

#[test]
fn a_stall_longer_than_the_bound_keeps_the_first_samples_and_counts_the_rest() {
    let h = Harness::start();
    let mut c = h.client();
    let mut w = watcher(&h);
    let config = c.result("config.set", json!({"stall_sample_interval_ms": 1}));
    assert_eq!(config["stall_sample_interval_ms"], 1);
    let release = Arc::new(AtomicBool::new(false));
    let held = release.clone();
    block_once(&h, move || {
        block_until_released(&held, Duration::from_secs(120))
    });
    // Block until the bound was reached and more samples were due: no guessed duration.
    let in_progress = wait_for(Duration::from_secs(120), || {
        let r = c.result("stalls", json!({}));
        let s = r["in_progress"].as_array()?.first()?.clone();
        (s["samples_dropped"].as_u64()? > 0).then_some(s)
    });
    release.store(true, Ordering::Relaxed);
    let in_progress = in_progress.expect("samples past the bound are counted");
    assert!(in_progress["hot_frame"].as_str().is_some(), "{in_progress}");
    let stall = closed_stall(&mut w, &mut c);
    let kept = stall["samples"].as_u64().unwrap();
    assert!((900..=1_000).contains(&kept), "{kept} samples kept");
    assert_eq!(
        stall["profile"]["samples"].as_array().unwrap().len() as u64,
        kept
    );
    assert!(stall["samples_dropped"].as_u64().unwrap() > 0);
    let body = get(h.metrics_addr(), "/metrics").1;
    let dropped = format!(
        "loopd_stall_samples_dropped_total{{loop=\"{}\"}}",
        h.loop_index()
    );
    assert!(sample(&body, &dropped).unwrap() > 0.0, "{dropped}");
}

#[test]
fn trace_of_a_stall_holds_its_window_its_samples_and_nothing_from_long_before() {
    let h = Harness::start();
    let mut c = h.client();
    let mut w = watcher(&h);
    assert_eq!(
        c.error_code("trace", json!({"stall": 1})),
        -32006,
        "no such stall yet"
    );
    // Three seconds of ordinary iterations first: the window must leave most out.
    let quiet_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < quiet_until {
        std::thread::sleep(Duration::from_millis(50));
    }
    block_once(&h, || second_part_of_the_block(Duration::from_millis(400)));
    let stall = closed_stall(&mut w, &mut c);
    let id = stall["id"].as_u64().unwrap();
    // The window is copied once the stall's iteration is recorded.
    let trace = wait_for(Duration::from_secs(30), || {
        let r = c.call("trace", json!({"stall": id}));
        r.get("result").cloned()
    })
    .expect("the stall's window is kept");
    let events = trace["traceEvents"].as_array().unwrap();
    let of = |cat: &str| -> Vec<&Value> { events.iter().filter(|e| e["cat"] == cat).collect() };
    let stalls = of("stall");
    assert_eq!(stalls.len(), 1, "only this stall");
    let stall_ts = stalls[0]["ts"].as_f64().unwrap();
    let iterations = of("loop");
    assert!(!iterations.is_empty());
    let earliest_end = iterations
        .iter()
        .map(|e| e["ts"].as_f64().unwrap() + e["dur"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    assert!(
        earliest_end >= stall_ts - 2_000_000.0,
        "an iteration ended {:.0} ms before the stall",
        (stall_ts - earliest_end) / 1e3
    );
    assert!(
        iterations
            .iter()
            .any(|e| e["ts"].as_f64().unwrap() < stall_ts - 1_000_000.0),
        "the window reaches back before the stall"
    );
    let samples = of("sample");
    assert!(
        samples.iter().any(|e| e["name"]
            .as_str()
            .unwrap()
            .contains("second_part_of_the_block")),
        "the samples are on the loop's track"
    );
    let stall_end = stall_ts + stalls[0]["dur"].as_f64().unwrap();
    for s in &samples {
        let ts = s["ts"].as_f64().unwrap();
        assert!(ts >= stall_ts && ts + s["dur"].as_f64().unwrap() <= stall_end + 1.0);
    }
    let window = &trace["otherData"]["stall_window"];
    assert_eq!(window["stall"], id);
    assert_eq!(window["samples"], stall["samples"]);
}
