//! The control socket: every method answers, bad input gets the right error and never takes
//! the server down, slow subscribers are dropped from (and told), the socket file is managed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use loopd_engine::{Check, Handle, Idle, Prepare, Timer};
use loopd_observe::{Observe, ObserveError, ObserveOptions, StaticConfig};
use proto::methods::{PingResult, SubscribeResult, UnsubscribeResult};
use proto::{ConfigResult, HandlesResult, RequestsResult, StallsResult, Status, ThreadPoolStatus};
use serde_json::{json, Value};
use support::{Client, Harness, TempDir};

fn typed<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

#[test]
fn hello_comes_first() {
    let h = Harness::start();
    let c = h.client();
    let p = &c.hello["params"];
    assert_eq!(p["protocol_version"], proto::PROTOCOL_VERSION);
    assert_eq!(p["pid"], std::process::id());
    assert_eq!(p["loops"], 1);
    assert_eq!(
        p["methods"].as_array().unwrap().len(),
        proto::methods::ALL.len()
    );
    let mode = std::fs::metadata(h.socket()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
}

#[test]
fn every_method_answers() {
    let h = Harness::start();
    // Some handles to list: three timers, one of them labelled.
    let ids: Vec<u64> = h.lp.call(|lp| {
        (0..3)
            .map(|i| {
                let t = Timer::new(lp);
                if i == 1 {
                    t.set_label(lp, "labelled timer");
                }
                t.start(lp, Duration::from_secs(3600), Duration::ZERO, |_, _| {})
                    .unwrap();
                t.id().get()
            })
            .collect()
    });
    h.lp.call(|lp| lp.publish_now());
    let mut c = h.client();

    let ping: PingResult = typed(c.result("ping", Value::Null));
    assert!(ping.as_of_ms > 0);

    let st: Status = typed(c.result("status", Value::Null));
    assert_eq!(st.loops.len(), 1);
    assert_eq!(st.pid, std::process::id());
    assert_eq!(st.loops[0].phases.len(), 7);
    assert!(st.loops[0].handles[&proto::HandleType::Timer].active >= 3);
    assert!(st.as_of_ms > 0);

    let all: HandlesResult = typed(c.result("handles", Value::Null));
    assert!(all.total >= 4, "{all:?}"); // 3 timers, the async, the lag probe
    let timers: HandlesResult = typed(c.result(
        "handles",
        json!({"type": "timer", "active": true, "sort": "age", "limit": 2}),
    ));
    assert_eq!(timers.handles.len(), 2);
    assert!(timers.total >= 3);
    assert!(timers
        .handles
        .iter()
        .all(|h| h.handle_type == proto::HandleType::Timer && h.active));
    let mine: HandlesResult = typed(c.result("handles", json!({"type": "timer"})));
    let labelled = mine.handles.iter().find(|h| h.id == ids[1]).unwrap();
    assert_eq!(labelled.label.as_deref(), Some("labelled timer"));
    assert!(
        labelled.site.contains("tests/control.rs"),
        "{}",
        labelled.site
    );

    // A request in flight: work that waits until we let it go.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let rx = std::sync::Mutex::new(rx);
    h.lp.call(move |lp| {
        lp.queue_work(
            move || {
                let _ = rx.lock().unwrap().recv_timeout(Duration::from_secs(30));
            },
            |_, _| {},
        );
        lp.publish_now();
    });
    let reqs: RequestsResult = typed(c.result("requests", json!({"type": "work"})));
    assert_eq!(reqs.total, 1, "{reqs:?}");
    assert_eq!(reqs.requests[0].request_type, proto::RequestType::Work);
    let pool: ThreadPoolStatus = typed(c.result("threadpool", Value::Null));
    assert_eq!(pool.size, 2);
    assert!(!pool.tasks.is_empty());
    tx.send(()).unwrap();

    let stalls: StallsResult = typed(c.result("stalls", json!({"limit": 3})));
    assert_eq!(stalls.total, 0);

    let sub: SubscribeResult = typed(c.result(
        "subscribe",
        json!({"topics": ["status", "stalls"], "interval_ms": 100}),
    ));
    assert_eq!(sub.interval_ms, 100);
    let n = c
        .notification("status", Duration::from_secs(10))
        .expect("a status notification");
    let pushed: Status = typed(n["params"].clone());
    assert_eq!(pushed.loops.len(), 1);
    let left: UnsubscribeResult = typed(c.result("unsubscribe", json!({"topics": ["status"]})));
    assert_eq!(left.topics, vec![proto::methods::Topic::Stalls]);
    let left: UnsubscribeResult = typed(c.result("unsubscribe", Value::Null));
    assert!(left.topics.is_empty());
    assert_eq!(c.error_code("unsubscribe", Value::Null), -32002);

    let cfg: ConfigResult = typed(c.result("config.get", Value::Null));
    assert_eq!(cfg.threadpool_size, 2);
    assert_eq!(cfg.stall_threshold_ms, 100);
    assert_eq!(cfg.log_filter, "info");
    assert_eq!(cfg.metrics_addr, h.metrics_addr().to_string());
    assert_eq!(cfg.control_path, h.socket().display().to_string());
    let cfg: ConfigResult = typed(c.result(
        "config.set",
        json!({"threadpool_size": 3, "stall_threshold_ms": 250}),
    ));
    assert_eq!(cfg.threadpool_size, 3);
    assert_eq!(cfg.stall_threshold_ms, 250);
    assert_eq!(h.lp.pool.size(), 3);
    assert_eq!(
        c.error_code("config.set", json!({"threadpool_size": 0})),
        -32005
    );
}

#[test]
fn trace_export_is_chrome_json_with_every_phase() {
    let h = Harness::start();
    // Make every phase but `pending` run callbacks; `close` by closing a handle.
    h.lp.call(|lp| {
        let idle = Idle::new(lp);
        idle.start(lp, |lp, i| i.close(lp)).unwrap();
        let p = Prepare::new(lp);
        p.start(lp, |lp, p| p.close(lp)).unwrap();
        let c = Check::new(lp);
        c.start(lp, |lp, c| c.close_then(lp, |_| {})).unwrap();
        let t = Timer::new(lp);
        t.start(lp, Duration::from_millis(1), Duration::ZERO, |lp, t| {
            t.close_then(lp, |_| {})
        })
        .unwrap();
    });
    let mut c = h.client();
    let phases = [
        "timers", "pending", "idle", "prepare", "poll", "check", "close",
    ];
    // The loop has run them once every phase shows in the trace (a deadline, not a sleep).
    let back = support::wait_for(Duration::from_secs(10), || {
        let trace = c.result("trace", json!({"last_ms": 60000}));
        let text = serde_json::to_string(&trace).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        let events = back["traceEvents"].as_array()?;
        phases
            .iter()
            .all(|p| {
                events
                    .iter()
                    .any(|e| e["name"] == *p && e["cat"] == "phase")
            })
            .then_some(back)
    })
    .expect("every phase in the trace");
    let events = back["traceEvents"].as_array().unwrap();
    assert!(events.len() > 10);
    for phase in phases {
        assert!(
            events
                .iter()
                .any(|e| e["name"] == phase && e["ph"] == "X" && e["cat"] == "phase"),
            "no {phase} event"
        );
    }
    let loop_tid = h.loop_index();
    assert!(events
        .iter()
        .filter(|e| e["ph"] == "X")
        .all(|e| e["tid"] == loop_tid && e["ts"].is_number() && e["dur"].is_number()));
    assert!(events
        .iter()
        .any(|e| e["ph"] == "M" && e["name"] == "thread_name"));
    // A slow callback appears with its attribution (once the loop has handed it over).
    h.lp.call(|_| std::thread::sleep(Duration::from_millis(5)));
    let slow = support::wait_for(Duration::from_secs(10), || {
        h.lp.call(|lp| lp.publish_now());
        let trace = c.result("trace", json!({"last_ms": 60000}));
        trace["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["cat"] == "slow_callback")
            .cloned()
    })
    .expect("a slow callback event");
    assert_eq!(slow["args"]["type"], "async");
    assert_eq!(slow["args"]["label"], "test commands");
}

#[test]
fn bad_input_gets_errors_and_the_server_keeps_serving() {
    let h = Harness::start();
    let mut c = h.client();
    let mut other = h.client();

    let cases: &[(&[u8], i64)] = &[
        (b"garbage\n", -32700),
        (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\n", -32700),
        (b"\xc3\x28 not utf-8\n", -32700),
        (b"[1,2]\n", -32600),
        (b"{\"jsonrpc\":\"1.0\",\"id\":7,\"method\":\"ping\"}\n", -32600),
        (b"{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"stauts\"}\n", -32601),
        (b"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"handles\",\"params\":{\"limit\":\"ten\"}}\n", -32602),
        (b"{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"handles\",\"params\":{\"sortt\":\"age\"}}\n", -32602),
        (b"{\"jsonrpc\":\"2.0\",\"id\":11,\"method\":\"subscribe\",\"params\":{\"topics\":[\"nope\"]}}\n", -32602),
        (b"{\"jsonrpc\":\"2.0\",\"id\":12,\"method\":\"config.set\",\"params\":{\"stall_threshold_ms\":0}}\n", -32005),
    ];
    for (input, code) in cases {
        c.send_raw(input);
        let r = c.read_line().expect("an answer");
        assert_eq!(
            r["error"]["code"],
            *code,
            "{}: {r}",
            String::from_utf8_lossy(input)
        );
    }
    // Notifications from a client are ignored; the connection still works.
    c.send_raw(b"{\"jsonrpc\":\"2.0\",\"method\":\"ping\"}\n");
    c.result("ping", Value::Null);
    let msg = c.call("stauts", Value::Null)["error"]["message"].clone();
    assert!(
        msg.as_str().unwrap().contains("did you mean `status`"),
        "{msg}"
    );

    // A 2 MiB line: an error, then this connection (only) is closed.
    let mut big = h.client();
    let mut writer = big.writer.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut line = vec![b'x'; 2 * 1024 * 1024];
        line.push(b'\n');
        let _ = writer.write_all(&line); // may fail once the server hangs up
    });
    let r = big.read_line().expect("an error before the close");
    assert_eq!(r["error"]["code"], -32600, "{r}");
    assert!(r["id"].is_null());
    assert!(big.read_line().is_none(), "the connection is closed");
    sender.join().unwrap();

    // Everyone else is still served, and new clients too.
    other.result("ping", Value::Null);
    c.result("status", Value::Null);
    h.client().result("ping", Value::Null);
}

#[test]
fn a_subscriber_that_never_reads_does_not_hold_up_others() {
    let h = Harness::start();
    // A busy loop makes big traces: a 1 ms repeating timer.
    h.lp.call(|lp| {
        let t = Timer::new(lp);
        t.start(
            lp,
            Duration::from_millis(1),
            Duration::from_millis(1),
            |_, _| {},
        )
        .unwrap();
    });
    // Let the timer build up a big flight record: a few hundred iterations.
    support::wait_for(Duration::from_secs(10), || {
        h.lp.call(|lp| lp.publish_now());
        (h.observe.status().loops[0].iterations >= 300).then_some(())
    })
    .expect("the loop iterates");

    let mut slow = h.client();
    slow.result(
        "subscribe",
        json!({"topics": ["status", "handles"], "interval_ms": 100}),
    );
    // Fill its output far past the buffer limit without ever reading.
    let mut w = slow.writer.try_clone().unwrap();
    let filler = std::thread::spawn(move || {
        for id in 0..50 {
            let req = format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"trace\"}}\n",
                1000 + id
            );
            if w.write_all(req.as_bytes()).is_err() {
                break;
            }
        }
    });

    // Meanwhile another client is answered promptly, again and again.
    let mut fast = h.client();
    fast.result(
        "subscribe",
        json!({"topics": ["status"], "interval_ms": 100}),
    );
    let t0 = Instant::now();
    let mut worst = Duration::ZERO;
    while t0.elapsed() < Duration::from_millis(1500) {
        let t = Instant::now();
        fast.result("ping", Value::Null);
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("worst ping latency beside a stuck subscriber: {worst:?}");
    assert!(worst < Duration::from_secs(1), "{worst:?}");
    assert!(
        fast.notification("status", Duration::from_secs(5))
            .is_some(),
        "the fast subscriber still gets its pushes"
    );

    // The slow one finally reads: its dropped pushes were counted and reported.
    let dropped = loop {
        let line = slow.read_raw_line().expect("a dropped notification");
        // Skip the (big) trace answers unparsed.
        if line.starts_with("{\"jsonrpc\":\"2.0\",\"method\":\"dropped\"") {
            break serde_json::from_str::<Value>(&line).unwrap();
        }
    };
    assert!(
        dropped["params"]["count"].as_u64().unwrap() >= 1,
        "{dropped}"
    );
    assert!(
        dropped["params"]["total"].as_u64().unwrap() >= 1,
        "{dropped}"
    );
    filler.join().unwrap();
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_refused() {
    let dir = TempDir::new();
    let path = dir.0.join("control.sock");
    // A socket file nobody listens on: what a killed daemon leaves.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let options = || ObserveOptions {
        metrics_addr: None,
        control_path: Some(path.clone()),
        config: std::sync::Arc::new(StaticConfig::default()),
        ..ObserveOptions::default()
    };
    let mut first = Observe::start(options()).expect("the stale socket is replaced");
    Client::connect(&path).result("ping", Value::Null);

    match Observe::start(options()) {
        Err(e @ ObserveError::AlreadyRunning(_)) => {
            let msg = e.to_string();
            assert!(msg.contains("another loopd is running on"), "{msg}");
            assert!(msg.contains(&path.display().to_string()), "{msg}");
        }
        other => panic!("expected AlreadyRunning, got {other:?}"),
    }
    // The refused start did not touch the live socket.
    Client::connect(&path).result("ping", Value::Null);

    first.shutdown();
    assert!(!path.exists(), "shutdown removes the socket file");

    // A path that is not a socket is a clear error, and left alone.
    std::fs::write(&path, b"not a socket").unwrap();
    let e = Observe::start(options()).unwrap_err();
    assert!(e.to_string().contains("not a socket"), "{e}");
    assert!(path.exists());
}

#[test]
fn a_missing_socket_directory_is_created_private() {
    let dir = TempDir::new();
    let path = dir.0.join("a").join("b").join("control.sock");
    let mut o = Observe::start(ObserveOptions {
        metrics_addr: None,
        control_path: Some(path.clone()),
        ..ObserveOptions::default()
    })
    .unwrap();
    let mode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    o.shutdown();
}

#[test]
fn a_peer_of_another_uid_is_refused() {
    use std::os::unix::process::CommandExt;
    // Needs root (to run a client as another user) and a system python for that client.
    let python = std::path::Path::new("/usr/bin/python3");
    if !python.exists()
        || std::fs::metadata("/proc/self")
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                m.uid()
            })
            .unwrap_or(1)
            != 0
    {
        // In CI (as root, with Debian's python3) this must run: a skip there is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run as root with /usr/bin/python3 to check the other-uid peer"
        );
        eprintln!("SKIPPED: not root or no /usr/bin/python3: the other-uid peer test");
        return;
    }
    let h = Harness::start();
    // Open the directory and the socket to everyone, so only SO_PEERCRED stands in the way.
    std::fs::set_permissions(&h.dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(h.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let script = [
        "import socket, sys",
        "s = socket.socket(socket.AF_UNIX)",
        "s.settimeout(10)",
        "s.connect(sys.argv[1])",
        "data = b''",
        "while True:",
        "    b = s.recv(65536)",
        "    if not b: break",
        "    data += b",
        "sys.stdout.write(data.decode())",
    ]
    .join("\n");
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(h.socket())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "only the refusal, no hello: {text}");
    let v: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["error"]["code"], -32004, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("permission denied"));
    // Our own uid is still welcome.
    h.client().result("ping", Value::Null);
}
