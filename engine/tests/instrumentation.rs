//! What the loop records: idle time, lag, phases, panics, snapshots readable while the loop
//! is blocked, the current-callback slot, walks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use loopd_engine::{Handle, HandleType, Idle, Loop, Phase, RunMode, Site, Target, Timer};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn waiting_on_a_timer_counts_as_idle_time() {
    let mut lp = Loop::new().unwrap();
    let t = Timer::new(&mut lp);
    t.start(&mut lp, ms(200), Duration::ZERO, |_, _| {})
        .unwrap();
    lp.run(RunMode::Default);
    let snap = lp.observer().snapshot();
    assert!(
        snap.idle_ns_total >= 150_000_000,
        "idle {} ns",
        snap.idle_ns_total
    );
    assert!(snap.iterations >= 1);
    assert!(
        snap.utilization.last_1s < 0.5,
        "mostly idle: {:?}",
        snap.utilization
    );
}

#[test]
fn a_blocking_callback_shows_as_lag() {
    let mut lp = Loop::new().unwrap();
    let t = Timer::new(&mut lp);
    // Let the probe run a few times first, then block for 250 ms.
    t.start(&mut lp, ms(30), Duration::ZERO, |_, _| {
        std::thread::sleep(ms(250))
    })
    .unwrap();
    let after = Timer::new(&mut lp);
    after
        .start(&mut lp, ms(330), Duration::ZERO, |_, _| {})
        .unwrap();
    lp.run(RunMode::Default);
    let snap = lp.observer().snapshot();
    assert!(snap.lag.count() >= 2, "the probe ran: {:?}", snap.lag);
    assert!(
        snap.lag.max() >= 200_000_000,
        "lag max {} ns",
        snap.lag.max()
    );
    assert!(snap.lag_recent_ns.iter().any(|&l| l >= 200_000_000));
    let timers = &snap.phases[Phase::Timers.index()];
    assert!(
        timers.duration.max() >= 250_000_000,
        "{:?}",
        timers.duration
    );
    assert!(timers.callbacks >= 2);
}

#[test]
fn phases_count_their_callbacks() {
    let mut lp = Loop::new().unwrap();
    let idle = Idle::new(&mut lp);
    let n = Rc::new(RefCell::new(0));
    let c = n.clone();
    idle.start(&mut lp, move |lp, h| {
        *c.borrow_mut() += 1;
        if *c.borrow() == 100 {
            h.stop(lp);
        }
    })
    .unwrap();
    lp.run(RunMode::Default);
    let snap = lp.observer().snapshot();
    let idle_phase = &snap.phases[Phase::Idle.index()];
    assert_eq!(idle_phase.callbacks, 100);
    assert_eq!(idle_phase.duration.count(), 100);
    assert!(snap.iterations >= 100);
    assert_eq!(snap.phases[Phase::Check.index()].callbacks, 0);
    assert_eq!(
        snap.phases[Phase::Check.index()].duration.count(),
        0,
        "empty phases are not timed"
    );
}

#[test]
fn a_panicking_callback_closes_its_handle_and_the_loop_goes_on() {
    let mut lp = Loop::new().unwrap();
    let bad = Timer::new(&mut lp);
    bad.start(&mut lp, ms(1), ms(1), |_, _| panic!("callback exploded"))
        .unwrap();
    let fired_after = Rc::new(RefCell::new(false));
    let f = fired_after.clone();
    let good = Timer::new(&mut lp);
    good.start(&mut lp, ms(20), Duration::ZERO, move |_, _| {
        *f.borrow_mut() = true
    })
    .unwrap();
    lp.run(RunMode::Default);
    assert!(*fired_after.borrow(), "the loop went on");
    assert!(bad.is_closing(&lp), "the panicking handle was closed");
    let snap = lp.observer().snapshot();
    assert_eq!(
        snap.callback_panics, 1,
        "a repeating timer panicked once, then was closed"
    );
    assert_eq!(snap.handles_closed[HandleType::Timer], 1);
}

#[test]
fn snapshots_and_the_current_callback_are_readable_while_the_loop_blocks() {
    let mut lp = Loop::new().unwrap();
    let observer = lp.observer();
    let blocking = Arc::new(AtomicBool::new(false));
    let b = blocking.clone();
    let t = Timer::new(&mut lp);
    t.set_label(&mut lp, "the blocker");
    let id = t.id();
    t.start(&mut lp, ms(50), Duration::ZERO, move |_, _| {
        b.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(1));
        b.store(false, Ordering::SeqCst);
    })
    .unwrap();
    let reader = std::thread::spawn(move || {
        while !blocking.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let mut reads = Vec::new();
        let mut seen = None;
        let until = Instant::now() + ms(500);
        while Instant::now() < until {
            let started = Instant::now();
            let snap = observer.snapshot();
            let cur = observer.current();
            reads.push(started.elapsed());
            assert!(snap.iterations >= 1);
            seen = cur;
        }
        (reads, seen)
    });
    lp.run(RunMode::Default);
    let (mut reads, seen) = reader.join().unwrap();
    reads.sort();
    let p99 = reads[reads.len() * 99 / 100];
    let max = *reads.last().unwrap();
    // Reads never wait for the loop: a read that did would take until the 1 s callback
    // returned. The 10 ms bound is on the 99th percentile, so a descheduled reader thread on
    // a loaded machine cannot fail the test; the max bound still catches any waiting.
    assert!(p99 < ms(10), "p99 read took {p99:?}");
    assert!(max < ms(250), "a read took {max:?}: it waited for the loop");
    let cur = seen.expect("the blocking callback was visible");
    assert_eq!(cur.phase, Phase::Timers);
    assert_eq!(cur.target, Target::Handle(HandleType::Timer, id));
    assert_eq!(cur.label.as_deref(), Some("the blocker"));
    assert!(
        lp.observer().current().is_none(),
        "nothing runs after run() returned"
    );
}

#[test]
fn walk_lists_every_handle_with_its_creation_site() {
    let mut lp = Loop::new().unwrap();
    let t = Timer::new(&mut lp);
    t.set_label(&mut lp, "mine");
    let line = line!() - 2;
    let idle = Idle::new(&mut lp);
    idle.start(&mut lp, |_, _| {}).unwrap();
    idle.unref(&mut lp);
    let mut seen = Vec::new();
    lp.walk(|h| seen.push(h));
    let mine = seen.iter().find(|h| h.id == t.id()).unwrap();
    assert_eq!(mine.kind, HandleType::Timer);
    assert_eq!(mine.label.as_deref(), Some("mine"));
    let Site::Source(site) = &mine.site else {
        panic!(
            "an engine handle's site is its source line: {:?}",
            mine.site
        )
    };
    assert!(site.file().ends_with("instrumentation.rs"));
    assert_eq!(site.line(), line);
    assert!(!mine.active && mine.has_ref && !mine.closing);
    let i = seen.iter().find(|h| h.id == idle.id()).unwrap();
    assert!(i.active && !i.has_ref);
    assert!(
        seen.iter()
            .any(|h| h.label.as_deref() == Some("loopd lag probe")),
        "the internal probe is visible, not hidden"
    );
    // Ids are never reused.
    t.close(&mut lp);
    idle.close(&mut lp);
    lp.run(RunMode::Default);
    let t2 = Timer::new(&mut lp);
    assert!(t2.id() > idle.id());

    lp.publish_now();
    let snap = lp.observer().snapshot();
    assert_eq!(snap.handles[HandleType::Timer].total, 2, "probe + t2");
    assert!(snap.handle_list.iter().any(|h| h.id == t2.id()));
}

#[test]
fn work_requests_are_listed_and_timed() {
    let mut lp = Loop::new().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let w = lp.queue_work(move || rx.recv().unwrap(), |_, r| r.unwrap());
    w.set_label(&mut lp, "waits for the test");
    let mut listed = Vec::new();
    lp.walk_requests(|r| listed.push(r));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, w.id());
    assert_eq!(listed[0].label.as_deref(), Some("waits for the test"));
    assert!(listed[0].site.to_string().contains("instrumentation.rs:"));
    std::thread::sleep(ms(20));
    tx.send(()).unwrap();
    lp.run(RunMode::Default);
    let snap = lp.observer().snapshot();
    let work = loopd_engine::RequestType::Work;
    assert_eq!(snap.requests_started[work], 1);
    assert_eq!(snap.requests_active[work], 0);
    assert!(snap.request_duration[work].max() >= 15_000_000);
}

#[test]
fn the_flight_recorder_keeps_iterations_and_slow_callbacks() {
    let mut lp = Loop::new().unwrap();
    let t = Timer::new(&mut lp);
    t.set_label(&mut lp, "slowpoke");
    t.start(&mut lp, ms(5), Duration::ZERO, |_, _| {
        std::thread::sleep(ms(20))
    })
    .unwrap();
    lp.run(RunMode::Default);
    let observer = lp.observer();
    assert!(observer.thread().is_some(), "the loop thread is known");
    let its = observer.recorder().iterations_since(0);
    assert!(!its.is_empty());
    let slowest = its
        .iter()
        .max_by_key(|r| r.phases[Phase::Timers.index()].1)
        .unwrap();
    assert!(
        slowest.phases[Phase::Timers.index()].1 >= 20_000_000,
        "{its:?}"
    );
    assert!(slowest.end_ns >= slowest.start_ns);
    let slow = observer.recorder().slow_callbacks_since(0);
    let s = slow
        .iter()
        .find(|s| s.label.as_deref() == Some("slowpoke"))
        .expect("the slow callback is recorded");
    assert!(s.duration_ns >= 20_000_000);
    assert_eq!(s.phase, Phase::Timers);
}
