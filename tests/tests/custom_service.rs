//! A user's own service kind on loopd (issue #15): `loopd/examples/custom-service.rs`, built on
//! the library with `loopd::Daemon::builder()`, run as a user would, beside a built-in service.
//! It answers, and everything loopd shows for its own services it shows for this one: `status`
//! with its counters, labelled handles, `loopd_service_*{service="upper"}`. Entries its kind
//! refuses are one-line errors at startup (exit 1) and keep the running config on SIGHUP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "e2e/support.rs"]
mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{config_file, connect, example, run_program, Control, Daemon, Launch};

const DEADLINE: Duration = Duration::from_secs(10);

fn start(services_toml: &str) -> Daemon {
    Daemon::launch(
        services_toml,
        Launch {
            program: Some(example("custom-service")),
            ..Launch::default()
        },
    )
}

const UPPER_AND_SEQ: &str =
    "[[service]]\nkind = \"upper\"\nbind = \"127.0.0.1:0\"\nmax_line = 64\n\
     [[service]]\nkind = \"seq\"\nbind = \"127.0.0.1:0\"\n";

/// Reads until `want` bytes came (or the deadline passes).
fn read_exactly(s: &mut std::net::TcpStream, want: usize) -> String {
    let mut got = vec![0u8; want];
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.read_exact(&mut got).unwrap();
    String::from_utf8(got).unwrap()
}

#[test]
fn a_custom_service_answers_and_is_observed_like_a_builtin() {
    let d = start(UPPER_AND_SEQ);
    let mut s = connect(d.addr("upper"));
    s.write_all(b"hello\nloop").unwrap();
    assert_eq!(read_exactly(&mut s, 6), "HELLO\n");
    s.write_all(b"d\n").unwrap();
    assert_eq!(read_exactly(&mut s, 6), "LOOPD\n");
    let mut seq = connect(d.addr("seq"));
    assert_eq!(read_exactly(&mut seq, 1), "*");

    // `status`: the service with its own counters, beside seq.
    let mut ctl = Control::connect(&d);
    let status = ctl.call("status", json!({}));
    let services = status["services"].as_array().unwrap();
    let upper = services.iter().find(|s| s["name"] == "upper").unwrap();
    assert_eq!(upper["kind"], "upper");
    assert_eq!(upper["connections"], 1);
    assert_eq!(upper["bytes_received_total"], 12);
    assert_eq!(upper["bytes_sent_total"], 12);
    assert!(services.iter().any(|s| s["name"] == "seq"));

    // Its connection is a labelled handle, its listener too.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let handles = ctl.call("handles", json!({"type": "tcp"}));
        let labels: Vec<&str> = handles["handles"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|h| h["label"].as_str())
            .collect();
        if labels
            .iter()
            .any(|l| l.starts_with("upper peer 127.0.0.1:"))
            && labels
                .iter()
                .any(|l| l.starts_with("upper listen 127.0.0.1:"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "labels: {labels:?}");
        std::thread::sleep(Duration::from_millis(20));
    }

    // /metrics, with its own `service` label.
    let (status, page) = d.scrape("/metrics");
    assert_eq!(status, 200);
    for line in [
        "loopd_service_connections{service=\"upper\"} 1",
        "loopd_service_bytes_received_total{service=\"upper\"} 12",
        "loopd_service_bytes_sent_total{service=\"upper\"} 12",
    ] {
        assert!(page.lines().any(|l| l == line), "no `{line}` in the page");
    }

    // Its own key works: a line over `max_line` is refused.
    s.write_all(&[b'a'; 100]).unwrap();
    s.write_all(b"\n").unwrap();
    let answer = read_exactly(&mut s, "error: line too long\n".len());
    assert_eq!(answer, "error: line too long\n");
}

/// Runs the example with a config file: (exit code, stderr).
fn run_with(config: &str) -> (i32, String) {
    let (_dir, path) = config_file("custom-bad", config);
    let path = path.to_str().unwrap();
    run_program(&example("custom-service"), &["--config", path])
}

#[test]
fn entries_a_kind_refuses_are_one_line_errors() {
    for (config, want) in [
        (
            "[[service]]\nkind = \"ftp\"\nbind = \"127.0.0.1:0\"\n",
            "service 1 (ftp): unknown service kind `ftp` (known: http, prime, seq, udp-upper, upper)",
        ),
        (
            "[[service]]\nkind = \"seq\"\nbind = \"127.0.0.1:0\"\n[[service]]\nkind = \"upper\"\nbind = \"127.0.0.1:0\"\nmax_line = 0\n",
            "service 2 (upper): `max_line` must be 1..=1048576, not 0",
        ),
        (
            "[[service]]\nkind = \"upper\"\nbind = \"127.0.0.1:0\"\nmaxline = 5\n",
            "service 1 (upper): unknown key `maxline` (allowed: max_line)",
        ),
    ] {
        let (code, stderr) = run_with(config);
        assert_eq!(code, 1, "{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].starts_with("loopd: error: bad config: "), "{stderr}");
        assert!(lines[0].ends_with(want), "{stderr}");
    }
}

#[test]
fn a_reload_with_an_entry_its_kind_refuses_keeps_the_running_config() {
    let d = start(UPPER_AND_SEQ);
    let config_path = d.dir.0.join("loopd.toml");
    let text = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(
        &config_path,
        text.replace("max_line = 64", "max_line = \"long\""),
    )
    .unwrap();
    d.signal("HUP");
    let line = d.wait_log("config not reloaded", DEADLINE);
    let error = line["fields"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("service 1 (upper): `max_line`"), "{line}");
    let mut s = connect(d.addr("upper"));
    s.write_all(b"still here\n").unwrap();
    assert_eq!(read_exactly(&mut s, 11), "STILL HERE\n");
}

/// The `udp-upper` handle a `handles` call lists, if any: (id, its address from the label).
fn udp_upper_handle(ctl: &mut Control) -> Option<(u64, std::net::SocketAddr)> {
    let handles = ctl.call("handles", json!({"type": "udp"}));
    handles["handles"].as_array()?.iter().find_map(|h| {
        let addr = h["label"]
            .as_str()?
            .strip_prefix("udp-upper ")?
            .parse()
            .ok()?;
        Some((h["id"].as_u64()?, addr))
    })
}

#[test]
fn a_service_without_a_listener_serves_is_observed_and_is_closed_when_a_reload_removes_it() {
    let d = start(
        "[[service]]\nkind = \"udp-upper\"\nudp = \"127.0.0.1:0\"\n\
         [[service]]\nkind = \"seq\"\nbind = \"127.0.0.1:0\"\n",
    );
    let mut ctl = Control::connect(&d);
    let deadline = Instant::now() + DEADLINE;
    let (id, addr) = loop {
        if let Some(found) = udp_upper_handle(&mut ctl) {
            break found;
        }
        assert!(Instant::now() < deadline, "no udp-upper handle listed");
        std::thread::sleep(Duration::from_millis(20));
    };

    // It answers.
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(DEADLINE)).unwrap();
    client.send_to(b"ping", addr).unwrap();
    let mut buf = [0u8; 16];
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"PING");

    // `status` and /metrics show it with its counters and no listener.
    let status = ctl.call("status", json!({}));
    let svc = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "udp-upper")
        .unwrap_or_else(|| panic!("udp-upper not in status: {status}"));
    assert_eq!(svc["bind"], "", "{svc}");
    assert_eq!(svc["bytes_received_total"], 4, "{svc}");
    let (_, page) = d.scrape("/metrics");
    assert!(
        page.lines()
            .any(|l| l == "loopd_service_bytes_received_total{service=\"udp-upper\"} 4"),
        "no udp-upper counters in the page"
    );

    // A reload that removes it closes its socket: the handle is gone, the service too.
    let config_path = d.dir.0.join("loopd.toml");
    let text = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(
        &config_path,
        text.replace(
            "kind = \"udp-upper\"\nudp = \"127.0.0.1:0\"\n",
            "kind = \"seq\"\nbind = \"127.0.0.1:0\"\n",
        ),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_log("SIGHUP: service removed", DEADLINE);
    let deadline = Instant::now() + DEADLINE;
    while udp_upper_handle(&mut ctl).is_some_and(|(h, _)| h == id) {
        assert!(
            Instant::now() < deadline,
            "the udp-upper socket is still open"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = ctl.call("status", json!({}));
    assert!(
        !status["services"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "udp-upper"),
        "{status}"
    );
    // Nothing answers on its port any more.
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    client.send_to(b"ping", addr).unwrap();
    assert!(
        client.recv_from(&mut buf).is_err(),
        "a closed socket answered"
    );
}

#[test]
fn an_entry_without_bind_for_a_kind_that_needs_a_listener_is_a_one_line_error() {
    let (code, stderr) = run_with("[[service]]\nkind = \"upper\"\n");
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("(upper)") && stderr.contains("needs `bind`"),
        "{stderr}"
    );
}

/// `panicking-service` (tests/src/bin) with `config`: (exit code, stderr).
fn run_panicking(config: &str) -> (i32, String) {
    let (_dir, path) = config_file("panicking", config);
    run_program(
        &support::binary("panicking-service"),
        &["--config", path.to_str().unwrap(), "--log", "warn"],
    )
}

#[test]
fn a_service_that_panics_at_startup_is_a_one_line_error_naming_it() {
    for (at, want) in [
        (
            "factory",
            "service 1 (boom): the `boom` factory panicked: boom in the factory",
        ),
        (
            "start",
            "the `boom` service panicked while starting: boom in start",
        ),
    ] {
        let (code, stderr) = run_panicking(&format!(
            "[[service]]\nkind = \"boom\"\npanic_in = \"{at}\"\n"
        ));
        assert_eq!(code, 1, "{at}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{at}: {stderr}");
        assert!(lines[0].starts_with("loopd: error: "), "{stderr}");
        assert!(lines[0].contains(want), "{at}: {stderr}");
    }
}

#[test]
fn a_reload_whose_factory_panics_keeps_the_running_config() {
    let d = Daemon::launch(
        "[[service]]\nkind = \"boom\"\npanic_in = \"nowhere\"\n\
         [[service]]\nkind = \"seq\"\nbind = \"127.0.0.1:0\"\n",
        Launch {
            program: Some(support::binary("panicking-service")),
            ..Launch::default()
        },
    );
    let config_path = d.dir.0.join("loopd.toml");
    let text = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(
        &config_path,
        text.replace("panic_in = \"nowhere\"", "panic_in = \"factory\""),
    )
    .unwrap();
    d.signal("HUP");
    let line = d.wait_log("config not reloaded", DEADLINE);
    let error = line["fields"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("service 1 (boom): the `boom` factory panicked: boom in the factory"),
        "{line}"
    );
    // Still serving the old config.
    let mut seq = connect(d.addr("seq"));
    assert_eq!(read_exactly(&mut seq, 1), "*");
    let mut ctl = Control::connect(&d);
    let status = ctl.call("status", json!({}));
    assert!(
        status["services"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "boom"),
        "{status}"
    );
}
