//! What loopd shows from outside while its loop is blocked (issue 4's black-box tests):
//! the control socket and the metrics endpoint answer, the stall is attributed and sampled.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{connect, metric, read_line, Control, Daemon};

/// Prime, and slow enough (a few seconds of trial division in a debug build) to stall the
/// loop well past the 1 s health threshold.
const STALLING_PRIME: &str = "400000000000000013";

fn stall_in_progress(status: &Value) -> Option<Value> {
    status["loops"]
        .as_array()?
        .iter()
        .find_map(|l| l.get("stall_in_progress").filter(|s| !s.is_null()).cloned())
}

#[test]
fn a_blocked_loop_is_visible_while_it_is_blocked() {
    let d = Daemon::start_services("inline");
    let mut ctl = Control::connect(&d);
    assert!(ctl.hello["params"]["protocol_version"].as_u64().is_some());

    let mut client = connect(d.addr("prime"));
    writeln!(client, "97").unwrap();
    assert_eq!(read_line(&mut client), "prime");
    let sent = Instant::now();
    writeln!(client, "{STALLING_PRIME}").unwrap();

    // Within a second, `status` reports the stall, attributed to the prime connection.
    let stall = loop {
        let status = ctl.call("status", json!({}));
        if let Some(s) = stall_in_progress(&status) {
            break s;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "no stall reported: {status}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        sent.elapsed() < Duration::from_secs(1) + Duration::from_millis(500),
        "stall seen after {:?}",
        sent.elapsed()
    );
    let label = stall["label"].as_str().unwrap_or_default();
    assert!(
        label.starts_with("prime peer "),
        "attributed to the prime connection: {stall}"
    );
    assert_eq!(stall["phase"], json!("poll"), "{stall}");

    // The metrics endpoint answers during the block and shows the stall growing.
    let mut fastest = Duration::MAX;
    let mut in_progress = 0.0;
    for _ in 0..3 {
        let t = Instant::now();
        let (code, body) = d.scrape("/metrics");
        fastest = fastest.min(t.elapsed());
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "a scrape waited for the loop"
        );
        assert_eq!(code, 200);
        in_progress = metric(&body, "loopd_stall_in_progress_seconds{loop=\"0\"}").unwrap();
    }
    assert!(
        fastest < Duration::from_millis(100),
        "scrape took {fastest:?}"
    );
    assert!(in_progress > 0.0);

    // Past the health threshold (1 s), /healthz says so.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, _) = d.scrape("/healthz");
        if code == 503 {
            break;
        }
        assert!(Instant::now() < deadline, "healthz never turned 503");
        std::thread::sleep(Duration::from_millis(50));
    }

    // When the callback returns, the stall is kept with a stack naming the primality function.
    assert_eq!(read_line(&mut client), "prime");
    let deadline = Instant::now() + Duration::from_secs(10);
    let stalls = loop {
        let r = ctl.call("stalls", json!({}));
        if r["recent"].as_array().is_some_and(|a| !a.is_empty()) {
            break r;
        }
        assert!(Instant::now() < deadline, "stall never closed: {r}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let recent = &stalls["recent"][0];
    assert!(
        recent["duration_seconds"].as_f64().unwrap() >= 1.0,
        "{recent}"
    );
    let frames: Vec<String> = recent["stack"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["function"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        frames.iter().any(|f| f.contains("is_prime_trial_division")),
        "stack names the primality function: {frames:?}"
    );
    let (code, _) = d.scrape("/healthz");
    assert_eq!(code, 200, "healthy again");
}

#[test]
fn pool_mode_keeps_the_loop_free_and_the_pool_busy() {
    let d = Daemon::start_services("pool");
    let mut ctl = Control::connect(&d);
    let mut client = connect(d.addr("prime"));
    writeln!(client, "{STALLING_PRIME}").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pool = ctl.call("threadpool", json!({}));
        if pool["busy_workers"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no worker ever busy: {pool}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = ctl.call("status", json!({}));
    assert!(
        stall_in_progress(&status).is_none(),
        "no stall in pool mode: {status}"
    );
    assert_eq!(read_line(&mut client), "prime");
    let stalls = ctl.call("stalls", json!({}));
    assert_eq!(stalls["total"], json!(0), "{stalls}");
}

#[test]
fn bad_input_gets_errors_and_the_daemon_keeps_serving() {
    let d = Daemon::start_services("pool");
    let mut ctl = Control::connect(&d);
    let code = |v: &Value| v["error"]["code"].as_i64().unwrap_or(0);
    assert_eq!(code(&ctl.raw(b"this is not json")), -32700);
    assert_eq!(code(&ctl.raw(b"{\"jsonrpc\":\"2.0\",\"id\":1}")), -32600);
    assert_eq!(
        code(&ctl.raw(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"nope\"}")),
        -32601
    );
    assert_eq!(
        code(&ctl.raw(
            b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"handles\",\"params\":{\"limit\":\"ten\"}}"
        )),
        -32602
    );
    // Every method answers.
    for (m, p) in [
        ("ping", json!({})),
        ("status", json!({})),
        ("handles", json!({"limit": 5})),
        ("requests", json!({})),
        ("threadpool", json!({})),
        ("stalls", json!({})),
        ("config.get", json!({})),
        ("trace", json!({"last_ms": 200})),
    ] {
        let r = ctl.call(m, p);
        assert!(!r.is_null(), "{m}");
    }
    // config.get tells where the config came from and what runs.
    let cfg = ctl.call("config.get", json!({}));
    assert!(
        cfg["config_file"]
            .as_str()
            .unwrap_or_default()
            .ends_with("loopd.toml"),
        "{cfg}"
    );
    let kinds: Vec<&str> = cfg["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(kinds, vec!["seq", "prime", "http"], "{cfg}");
    // A 2 MiB line closes that connection only.
    let mut big = Control::connect(&d);
    let mut line = vec![b'x'; 2 * 1024 * 1024];
    line.push(b'\n');
    let _ = big.writer.write_all(&line);
    let mut rest = String::new();
    let mut closed = false;
    for _ in 0..4 {
        rest.clear();
        match big.reader.read_line(&mut rest) {
            Ok(0) | Err(_) => {
                closed = true;
                break;
            }
            Ok(_) => {}
        }
    }
    assert!(closed, "an over-long line closes its connection");
    // The first connection and the services still work.
    assert!(!ctl.call("ping", json!({})).is_null());
    let mut p = connect(d.addr("prime"));
    writeln!(p, "7").unwrap();
    assert_eq!(read_line(&mut p), "prime");
}
