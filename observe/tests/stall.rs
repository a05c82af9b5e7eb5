//! A blocked loop is seen while it is blocked, explained (attribution and stack), and served
//! over the control socket and the metrics endpoint all along.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use loopd_engine::{Handle, Timer};
use serde_json::{json, Value};
use support::{get, sample, wait_for, Harness, Setup};

/// Blocks the calling thread until `release` is set or `cap` passes; its name must show up
/// in the stall's stack.
#[inline(never)]
fn block_the_loop_in_a_distinctively_named_function(release: &AtomicBool, cap: Duration) {
    let until = Instant::now() + cap;
    while !release.load(Ordering::Relaxed) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
        std::hint::black_box(());
    }
}

/// Blocks for `d` (the stall is over by itself).
fn block_for(d: Duration) {
    block_the_loop_in_a_distinctively_named_function(&AtomicBool::new(false), d);
}

#[test]
fn a_blocked_loop_is_seen_attributed_and_sampled_while_it_is_blocked() {
    let h = Harness::with(Setup {
        stall_threshold: Duration::from_millis(100),
        health_threshold: Duration::from_millis(500),
    });
    let index = h.loop_index();
    let series = format!("loopd_stall_in_progress_seconds{{loop=\"{index}\"}}");

    // Before: healthy, no stall, the gauge exists at 0.
    let (code, body, _) = get(h.metrics_addr(), "/metrics");
    assert_eq!(code, 200);
    assert_eq!(sample(&body, &series), Some(0.0), "{series} missing");
    assert_eq!(get(h.metrics_addr(), "/healthz").0, 200);

    let mut watcher = h.client();
    watcher.result("subscribe", json!({"topics": ["stalls"]}));
    let mut c = h.client();

    // A timer whose callback blocks the loop until the test has seen all it must see while
    // the loop is blocked (at most 30 s): no window tuned to one machine's speed.
    let (tx, rx) = mpsc::channel();
    let release = Arc::new(AtomicBool::new(false));
    let held = release.clone();
    let sent = Instant::now();
    h.lp.run(move |lp| {
        let t = Timer::new(lp);
        t.set_label(lp, "stall test timer");
        t.start(
            lp,
            Duration::from_millis(10),
            Duration::ZERO,
            move |_, _| {
                block_the_loop_in_a_distinctively_named_function(&held, Duration::from_secs(30))
            },
        )
        .unwrap();
        tx.send(t.id().get()).unwrap();
    });
    let timer_id = rx.recv().unwrap();

    // `status` shows the stall in progress, attributed.
    let stall = wait_for(Duration::from_secs(10), || {
        let st = c.result("status", Value::Null);
        let s = st["loops"][0]["stall_in_progress"].clone();
        (!s.is_null()).then_some(s)
    })
    .expect("status shows the stall while the loop is blocked");
    eprintln!("stall visible in status after {:?}", sent.elapsed());
    assert_eq!(stall["handle_id"], timer_id, "{stall}");
    assert_eq!(stall["phase"], "timers");
    assert_eq!(stall["type"], "timer");
    assert_eq!(stall["label"], "stall test timer");
    assert_eq!(stall["in_progress"], true);
    assert_eq!(stall["threshold_ms"], 100);
    let latency = h.observe.last_stall_detection_latency().unwrap();
    eprintln!("stall detection latency past the threshold: {latency:?}");
    assert!(latency < Duration::from_millis(250), "{latency:?}");

    // The metrics endpoint answers fast while the loop is blocked and shows the stall.
    // Best of three: one descheduled test thread on a loaded machine must not fail it; a
    // scrape that waited for the loop would never come back before the release.
    let mut fastest = Duration::MAX;
    let mut body = String::new();
    for _ in 0..3 {
        let (code, b, took) = get(h.metrics_addr(), "/metrics");
        assert_eq!(code, 200);
        fastest = fastest.min(took);
        if body.is_empty() {
            body = b;
        }
    }
    eprintln!("fastest scrape during the stall took {fastest:?}");
    assert!(
        fastest < Duration::from_millis(100),
        "scrape took {fastest:?}"
    );
    let open = sample(&body, &series).unwrap();
    assert!(open > 0.0, "{series} = {open}");

    // /healthz turns 503 past the health threshold, naming the stall.
    let (code, body) = wait_for(Duration::from_secs(10), || {
        let (code, body, _) = get(h.metrics_addr(), "/healthz");
        (code == 503).then_some((code, body))
    })
    .expect("healthz 503 while stalled past the health threshold");
    assert_eq!(code, 503);
    assert!(body.contains("stalled") && body.contains("timer"), "{body}");

    // Everything seen while blocked: let the callback return.
    let blocked_for = sent.elapsed();
    release.store(true, Ordering::Relaxed);

    // The subscriber hears the stall open (with its stack) and close.
    let opened = watcher
        .notification("stalls", Duration::from_secs(60))
        .expect("opened event");
    assert_eq!(opened["params"]["event"], "opened", "{opened}");
    let closed = watcher
        .notification("stalls", Duration::from_secs(60))
        .expect("closed event");
    assert_eq!(closed["params"]["event"], "closed", "{closed}");
    let duration = closed["params"]["stall"]["duration_seconds"]
        .as_f64()
        .unwrap();
    // Past the health threshold (it turned /healthz 503), and no longer than the test held it
    // plus the time to hear of the release.
    let most = sent.elapsed().as_secs_f64();
    assert!(
        duration > 0.5 && duration <= most,
        "duration {duration}, held {blocked_for:?}, {most} s in all"
    );

    // Afterwards `stalls` holds it, with a stack naming the blocking function.
    let r = c.result("stalls", json!({"limit": 5}));
    assert!(r["in_progress"].as_array().unwrap().is_empty(), "{r}");
    let recent = &r["recent"][0];
    assert_eq!(recent["handle_id"], timer_id);
    assert_eq!(recent["in_progress"], false);
    let stack = recent["stack"].as_array().unwrap();
    let names: Vec<&str> = stack
        .iter()
        .map(|f| f["function"].as_str().unwrap())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.contains("block_the_loop_in_a_distinctively_named_function")),
        "stack: {names:#?} error: {}",
        recent["stack_error"]
    );
    assert!(r["total"].as_u64().unwrap() >= 1);

    // Healthy again; the counters moved.
    assert_eq!(get(h.metrics_addr(), "/healthz").0, 200);
    let (_, body, _) = get(h.metrics_addr(), "/metrics");
    assert_eq!(sample(&body, &series), Some(0.0));
    assert_eq!(
        sample(&body, &format!("loopd_stalls_total{{loop=\"{index}\"}}")),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &body,
            &format!("loopd_stall_duration_seconds_count{{loop=\"{index}\"}}")
        ),
        Some(1.0)
    );
}

#[test]
fn the_stall_threshold_is_live_settable() {
    let h = Harness::with(Setup {
        stall_threshold: Duration::from_secs(10),
        ..Setup::default()
    });
    let mut c = h.client();
    let cfg = c.result("config.set", json!({"stall_threshold_ms": 30}));
    assert_eq!(cfg["stall_threshold_ms"], 30);
    assert_eq!(h.observe.stall_threshold(), Duration::from_millis(30));
    h.lp.call(|_| block_for(Duration::from_millis(300)));
    let r = wait_for(Duration::from_secs(5), || {
        let r = c.result("stalls", Value::Null);
        (r["total"] == 1).then_some(r)
    })
    .expect("a 300 ms callback is a stall at a 30 ms threshold");
    let s = &r["recent"][0];
    assert_eq!(s["threshold_ms"], 30);
    assert_eq!(s["type"], "async");
    assert_eq!(s["label"], "test commands");
    assert_eq!(s["phase"], "poll");
}
