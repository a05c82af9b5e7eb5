//! What sampling a stalled loop costs (issue #17): per sample, the sampler's wait (signal,
//! the handler's unwind, the wake-up), the blocked thread's lost time, and symbolization
//! (first time and from the cache); a CPU-bound thread stands for the stalled loop.
//!
//! `cargo run --release -p loopd-bench --bin stall-sampling -- [--seconds S] [--interval-us U]`

#![allow(clippy::print_stdout)] // a report on stdout is this program's output

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use loopd::engine::instrument::LoopObserver;
use loopd::observe::watchdog::{sample_stack, symbolize, symbolize_cached, SymbolCache};

/// A stalled callback's stand-in: a few nested frames, then a tight loop that counts.
#[inline(never)]
fn stalled_callback(count: &AtomicU64, stop: &AtomicBool) {
    nested_work(count, stop);
}

#[inline(never)]
fn nested_work(count: &AtomicU64, stop: &AtomicBool) {
    let mut x = 1u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..1_000 {
            x = black_box(
                x.wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407),
            );
        }
        count.fetch_add(1, Ordering::Relaxed);
    }
}

/// The worker's identity, once it noted it.
fn noted_thread(observer: &LoopObserver) -> loopd::engine::instrument::ThreadIdentity {
    loop {
        if let Some(t) = observer.thread() {
            return t;
        }
        std::thread::yield_now();
    }
}

struct Run {
    /// Work units per second done by the "loop".
    rate: f64,
    /// Sampler-side time per sample, ns, sorted.
    waits: Vec<u64>,
}

/// Runs the busy thread for `secs`; samples it every `interval` when given.
fn run(secs: f64, interval: Option<Duration>) -> Run {
    let observer = Arc::new(LoopObserver::new(0));
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (o, c, s) = (observer.clone(), count.clone(), stop.clone());
    let worker = std::thread::spawn(move || {
        o.note_thread();
        stalled_callback(&c, &s);
    });
    let thread = noted_thread(&observer);
    std::thread::sleep(Duration::from_millis(100)); // warm up
    let start_count = count.load(Ordering::Relaxed);
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(secs);
    let mut waits = Vec::new();
    let mut next = started;
    while Instant::now() < end {
        match interval {
            Some(i) => {
                if Instant::now() >= next {
                    let t = Instant::now();
                    if sample_stack(thread, Duration::from_millis(200)).is_ok() {
                        waits.push(t.elapsed().as_nanos() as u64);
                    }
                    next += i;
                }
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let done = count.load(Ordering::Relaxed) - start_count;
    stop.store(true, Ordering::Relaxed);
    let _ = worker.join();
    waits.sort_unstable();
    Run {
        rate: done as f64 / elapsed,
        waits,
    }
}

fn pct(v: &[u64], p: f64) -> u64 {
    v.get(((v.len() as f64 - 1.0) * p) as usize)
        .copied()
        .unwrap_or(0)
}

fn main() {
    let mut secs = 3.0;
    let mut interval_us = 1_000u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--seconds", Some(v)) => secs = v.parse().unwrap_or(secs),
            ("--interval-us", Some(v)) => interval_us = v.parse().unwrap_or(interval_us),
            _ => {
                eprintln!("usage: stall-sampling [--seconds S] [--interval-us U]");
                std::process::exit(2);
            }
        }
    }
    if cfg!(debug_assertions) {
        eprintln!("stall-sampling: WARNING: a debug build; use --release");
    }
    // Alternate plain and sampled runs, three each: the machine's noise shows in the spread.
    let mut plain = Vec::new();
    let mut sampled = Vec::new();
    for _ in 0..3 {
        plain.push(run(secs, None));
        sampled.push(run(secs, Some(Duration::from_micros(interval_us))));
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let rate_plain = med(plain.iter().map(|r| r.rate).collect());
    let rate_sampled = med(sampled.iter().map(|r| r.rate).collect());
    let waits: Vec<u64> = {
        let mut w: Vec<u64> = sampled
            .iter()
            .flat_map(|r| r.waits.iter().copied())
            .collect();
        w.sort_unstable();
        w
    };
    let samples_per_s = waits.len() as f64 / (3.0 * secs);
    // Time the "loop" lost per second, shared out over the samples taken in that second.
    let lost_ns_per_sample = (1.0 - rate_sampled / rate_plain) * 1e9 / samples_per_s;

    // Symbolization: one sample resolved cold, then 1,000 more through the cache.
    let observer = Arc::new(LoopObserver::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (o, s) = (observer.clone(), stop.clone());
    let worker = std::thread::spawn(move || {
        o.note_thread();
        stalled_callback(&AtomicU64::new(0), &s);
    });
    let thread = noted_thread(&observer);
    let first = match sample_stack(thread, Duration::from_millis(200)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stall-sampling: {e}");
            std::process::exit(1);
        }
    };
    let t = Instant::now();
    let frames = symbolize(&first);
    let cold = t.elapsed();
    let mut cache = SymbolCache::new();
    let _ = symbolize_cached(&first, &mut cache);
    let more: Vec<_> = (0..1_000)
        .filter_map(|_| sample_stack(thread, Duration::from_millis(200)).ok())
        .collect();
    let t = Instant::now();
    for s in &more {
        black_box(symbolize_cached(s, &mut cache));
    }
    let cached = t.elapsed() / more.len().max(1) as u32;
    stop.store(true, Ordering::Relaxed);
    let _ = worker.join();

    println!("stall sampling, {secs} s × 3 runs each, interval {interval_us} µs");
    println!(
        "  samples taken: {} ({samples_per_s:.0}/s), {} frames each",
        waits.len(),
        frames.len()
    );
    println!(
        "  sampler wait per sample: p50 {} ns, p99 {} ns",
        pct(&waits, 0.5),
        pct(&waits, 0.99)
    );
    println!(
        "  stalled thread: {rate_plain:.0} units/s plain, {rate_sampled:.0} sampled → ratio {:.3}, ≈ {lost_ns_per_sample:.0} ns lost per sample",
        rate_sampled / rate_plain
    );
    println!(
        "  symbolize: first sample {} µs (cold), then {} ns per sample from the cache",
        cold.as_micros(),
        cached.as_nanos()
    );
    println!(
        "  at the default 10 ms interval: {:.3} % of the stalled thread",
        lost_ns_per_sample / 10e6 * 100.0
    );
}
