//! The daemon's lifecycle: startup errors, graceful shutdown, reload.

use std::io::Write;
use std::time::Duration;

use crate::support::{config_file, connect, read_line, read_n, run_loopd, Daemon, TempDir};

#[test]
fn a_taken_port_is_one_line_naming_it_and_exit_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (_dir, cfg) = config_file(
        "port",
        &format!("[[service]]\nkind = \"seq\"\nbind = \"127.0.0.1:{port}\"\n"),
    );
    let (code, stderr) = run_loopd(&["--config", cfg.to_str().unwrap(), "--log", "off"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(&port.to_string()),
        "names the address: {stderr}"
    );
    assert!(
        stderr.to_lowercase().contains("in use"),
        "names the cause: {stderr}"
    );
}

#[test]
fn bad_config_and_bad_flags_are_one_line_and_exit_1() {
    let dir = TempDir::new("badcfg");
    let cfg = dir.0.join("c.toml");
    std::fs::write(
        &cfg,
        "[[service]]\nkind = \"gopher\"\nbind = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let (code, stderr) = run_loopd(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("gopher"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let (code, stderr) = run_loopd(&["--no-such-flag"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--no-such-flag"), "{stderr}");

    let (code, stderr) = run_loopd(&["--config", "/nonexistent/loopd.toml"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("/nonexistent/loopd.toml"), "{stderr}");
}

#[test]
fn sigterm_lets_in_flight_work_finish_then_exits_0() {
    let mut d = Daemon::start_services("pool");
    let mut s = connect(d.addr("prime"));
    writeln!(s, "97").unwrap();
    assert_eq!(read_line(&mut s), "prime");
    writeln!(s, "100000000000031").unwrap();
    d.signal("TERM");
    // The answer in flight still arrives, then the connection closes.
    assert_eq!(read_line(&mut s), "prime");
    let status = d.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0));
    // New connections are refused once it stopped accepting.
    assert!(std::net::TcpStream::connect(d.addr("seq")).is_err());
}

#[test]
fn sighup_adds_and_removes_services_without_dropping_others() {
    let d = Daemon::start("[[service]]\nkind = \"seq\"\nbind = \"127.0.0.1:0\"\n");
    let seq = d.addr("seq");
    let mut kept = connect(seq);
    assert_eq!(read_n(&mut kept, 1), b"*");

    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let config_path = d.dir.0.join("loopd.toml");
    let old = std::fs::read_to_string(&config_path).unwrap();
    let new = old.replace(
        "[[service]]\nkind = \"seq\"\nbind = \"127.0.0.1:0\"\n",
        &format!("[[service]]\nkind = \"seq\"\nbind = \"127.0.0.1:0\"\n[[service]]\nkind = \"prime\"\nbind = \"127.0.0.1:{port}\"\n"),
    );
    std::fs::write(&config_path, new).unwrap();
    d.signal("HUP");
    d.wait_log("config reloaded", Duration::from_secs(30));
    let mut p = connect(format!("127.0.0.1:{port}").parse().unwrap());
    writeln!(p, "7").unwrap();
    assert_eq!(read_line(&mut p), "prime");
    // The existing seq client was not disturbed.
    kept.write_all(b"^a$").unwrap();
    assert_eq!(read_n(&mut kept, 1), b"b");
}

#[test]
fn two_loops_share_the_ports_and_both_show_in_metrics() {
    let mut d = Daemon::start_with_args(
        "[[service]]\nkind = \"seq\"\nbind = \"127.0.0.1:0\"\n",
        &["--loops", "2"],
    );
    let seq = d.addr("seq");
    // Many connections: the kernel spreads them over both loops' listeners.
    let clients: Vec<_> = (0..40)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = connect(seq);
                assert_eq!(read_n(&mut s, 1), b"*");
                s.write_all(b"^hal$").unwrap();
                assert_eq!(read_n(&mut s, 3), b"ibm");
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let (_, body) = d.scrape("/metrics");
    for l in ["0", "1"] {
        let line = format!("loopd_handles{{loop=\"{l}\",type=\"tcp\"}}");
        assert!(
            body.lines().any(|x| x.starts_with(&line)),
            "loop {l} has its own listener: {line} missing"
        );
    }
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(30)).code(), Some(0));
}
