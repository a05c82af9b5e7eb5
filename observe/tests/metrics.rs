//! The metrics endpoint: every metric of DESIGN §4 with its labels from startup, a page
//! `promtool` accepts, health, and bad requests that never hurt it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use loopd_observe::{Observe, ObserveError, ObserveOptions};
use support::{get, http, sample, Harness};

const PHASES: [&str; 7] = [
    "timers", "pending", "idle", "prepare", "poll", "check", "close",
];
const HANDLE_TYPES: [&str; 9] = [
    "timer", "idle", "prepare", "check", "async", "tcp", "udp", "signal", "poll",
];
const REQUEST_TYPES: [&str; 7] = [
    "write",
    "connect",
    "shutdown",
    "udp_send",
    "fs",
    "work",
    "getaddrinfo",
];

fn type_of(page: &str, name: &str) -> Option<String> {
    let prefix = format!("# TYPE {name} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::to_string)
}

#[test]
fn every_metric_is_there_from_the_start() {
    let h = Harness::start();
    h.services
        .register("seq", "seq", "127.0.0.1:7070".parse().ok())
        .add_bytes_received(42);
    let (code, page, took) = get(h.metrics_addr(), "/metrics");
    eprintln!("scrape took {took:?}, {} bytes", page.len());
    assert_eq!(code, 200);
    let l = h.loop_index().to_string();
    let expected = [
        ("loopd_loop_iterations_total", "counter"),
        ("loopd_loop_events_total", "counter"),
        ("loopd_loop_events_waiting", "gauge"),
        ("loopd_loop_idle_seconds_total", "counter"),
        ("loopd_loop_utilization", "gauge"),
        ("loopd_loop_lag_seconds", "histogram"),
        ("loopd_phase_duration_seconds", "histogram"),
        ("loopd_phase_callbacks_total", "counter"),
        ("loopd_handles", "gauge"),
        ("loopd_active_handles", "gauge"),
        ("loopd_handles_opened_total", "counter"),
        ("loopd_handles_closed_total", "counter"),
        ("loopd_active_requests", "gauge"),
        ("loopd_request_duration_seconds", "histogram"),
        ("loopd_threadpool_size", "gauge"),
        ("loopd_threadpool_busy_workers", "gauge"),
        ("loopd_threadpool_queue_depth", "gauge"),
        ("loopd_threadpool_queue_depth_by_kind", "gauge"),
        ("loopd_threadpool_slow_workers", "gauge"),
        ("loopd_threadpool_slow_limit", "gauge"),
        ("loopd_threadpool_queue_wait_seconds", "histogram"),
        ("loopd_threadpool_run_seconds", "histogram"),
        ("loopd_threadpool_tasks_total", "counter"),
        ("loopd_stalls_total", "counter"),
        ("loopd_stall_duration_seconds", "histogram"),
        ("loopd_stall_in_progress_seconds", "gauge"),
        ("loopd_callback_panics_total", "counter"),
        ("loopd_service_connections", "gauge"),
        ("loopd_service_bytes_received_total", "counter"),
        ("loopd_service_bytes_sent_total", "counter"),
        ("loopd_control_rejected_total", "counter"),
    ];
    for (name, kind) in expected {
        assert_eq!(type_of(&page, name).as_deref(), Some(kind), "{name}");
    }
    assert!(page.contains("\nprocess_"), "process collector metrics");

    // Label sets that exist from startup, at zero.
    for p in PHASES {
        assert!(
            sample(
                &page,
                &format!("loopd_phase_callbacks_total{{loop=\"{l}\",phase=\"{p}\"}}")
            )
            .is_some(),
            "phase {p}"
        );
        assert!(sample(
            &page,
            &format!("loopd_phase_duration_seconds_count{{loop=\"{l}\",phase=\"{p}\"}}")
        )
        .is_some());
    }
    for t in HANDLE_TYPES {
        assert!(sample(
            &page,
            &format!("loopd_handles{{loop=\"{l}\",type=\"{t}\"}}")
        )
        .is_some());
    }
    for t in REQUEST_TYPES {
        assert!(sample(
            &page,
            &format!("loopd_active_requests{{loop=\"{l}\",type=\"{t}\"}}")
        )
        .is_some());
    }
    for k in ["work", "fs", "getaddrinfo"] {
        for o in ["ok", "error", "cancelled", "panicked"] {
            assert_eq!(
                sample(
                    &page,
                    &format!("loopd_threadpool_tasks_total{{kind=\"{k}\",outcome=\"{o}\"}}")
                ),
                Some(0.0),
                "{k} {o}"
            );
        }
    }
    assert_eq!(sample(&page, "loopd_threadpool_size"), Some(2.0));
    for k in ["work", "fs", "getaddrinfo"] {
        assert_eq!(
            sample(
                &page,
                &format!("loopd_threadpool_queue_depth_by_kind{{kind=\"{k}\"}}")
            ),
            Some(0.0),
            "{k}"
        );
    }
    assert_eq!(sample(&page, "loopd_threadpool_slow_workers"), Some(0.0));
    assert_eq!(sample(&page, "loopd_threadpool_slow_limit"), Some(1.0));
    assert_eq!(
        sample(
            &page,
            &format!("loopd_stall_in_progress_seconds{{loop=\"{l}\"}}")
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(&page, &format!("loopd_stalls_total{{loop=\"{l}\"}}")),
        Some(0.0)
    );
    assert_eq!(
        sample(&page, "loopd_service_bytes_received_total{service=\"seq\"}"),
        Some(42.0)
    );
    // Buckets at powers of two of nanoseconds, in seconds, and +Inf.
    assert!(page.contains(&format!(
        "loopd_loop_lag_seconds_bucket{{loop=\"{l}\",le=\"0.000001024\"}}"
    )));
    assert!(page.contains(&format!(
        "loopd_loop_lag_seconds_bucket{{loop=\"{l}\",le=\"+Inf\"}}"
    )));
    // The lag probe has run by now (or will soon): counts are ours.
    let lag_count = support::wait_for(Duration::from_secs(5), || {
        let (_, page, _) = get(h.metrics_addr(), "/metrics");
        sample(
            &page,
            &format!("loopd_loop_lag_seconds_count{{loop=\"{l}\"}}"),
        )
        .filter(|c| *c > 0.0)
    });
    assert!(lag_count.is_some());
}

#[test]
fn promtool_accepts_the_page() {
    let h = Harness::start();
    h.services
        .register("http", "http", "127.0.0.1:7080".parse().ok())
        .connection_opened();
    // Histograms with samples in them: the lag probe has run.
    let index = h.loop_index();
    let page = support::wait_for(Duration::from_secs(10), || {
        let (_, page, _) = get(h.metrics_addr(), "/metrics");
        let count = format!("loopd_loop_lag_seconds_count{{loop=\"{index}\"}}");
        sample(&page, &count).filter(|c| *c > 0.0).map(|_| page)
    })
    .expect("the lag probe runs");
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        // Not a skip: a missing tool would make this test pass without checking anything.
        Err(e) => panic!(
            "promtool cannot run ({e}): install Debian's `prometheus` package \
             (bash scripts/test.sh does)"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check metrics:\n{report}");
    assert!(
        report.trim().is_empty(),
        "promtool lint findings:\n{report}"
    );
}

#[test]
fn bad_requests_never_hurt_it() {
    let h = Harness::start();
    let addr = h.metrics_addr();
    assert_eq!(get(addr, "/nope").0, 404);
    assert_eq!(get(addr, "/metrics/extra").0, 404);
    let (code, body, _) = get(addr, "/");
    assert_eq!(code, 200);
    assert!(body.contains("/metrics"));
    let (code, _, _) = http(
        addr,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code, 405);
    let (code, _, _) = http(
        addr,
        "DELETE /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code, 405);
    // Garbage, a half request left hanging, binary noise.
    for junk in [
        &b"\x00\x01\x02\xff\xfe garbage\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nBroken header line\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(junk);
        let mut buf = [0u8; 256];
        let _ = std::io::Read::read(&mut s, &mut buf);
    }
    let _hanging = {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost:").unwrap();
        s
    };
    let (code, body, _) = get(addr, "/healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, _, took) = get(addr, "/metrics");
    assert_eq!(code, 200);
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let e = Observe::start(ObserveOptions {
        metrics_addr: Some(addr),
        control: false,
        ..ObserveOptions::default()
    })
    .unwrap_err();
    assert!(matches!(e, ObserveError::MetricsBind { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("cannot listen for metrics on {addr}: ")),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
}
