//! The control socket against a second, unprivileged user, with the real `loopd` binary.
//!
//! loopd runs as the current user (root in CI); the other user is uid/gid 65534 (`nobody`),
//! reached with `setpriv --reuid=65534 --regid=65534 --clear-groups` (util-linux). Both
//! layers of SECURITY.md are checked:
//! - as deployed (the default path: a 0700 directory loopd creates, a 0600 socket), the other
//!   user cannot even connect: `loopctl` exits 3 with a permission-denied message;
//! - with the filesystem layer opened on purpose (a 0755 directory, the socket chmod 0666),
//!   the daemon's `SO_PEERCRED` check refuses the peer with a `-32004` error line, logs the
//!   peer's uid and pid, and keeps serving its owner.
//!
//!
//! And a control directory of the user's choosing (`--control`, `$LOOPD_SOCKET`): refused at
//! startup when someone else could replace the socket in it, used as it is otherwise.
//!
//! Not root: the tests that need a second user cannot switch users. Outside CI they say
//! loudly that they are skipped; in CI (`CI` set, where we run as root) that is a failure, so
//! the suite can never pass there without checking these layers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "e2e/support.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{binary, run_loopd, Daemon, TempDir};

/// The second user: `nobody` on Debian, and unprivileged everywhere.
const OTHER: u32 = 65534;

/// Set for the re-executed test binary: the socket [`peer_probe`] connects to.
const PROBE_ENV: &str = "LOOPD_TEST_OTHER_USER_PROBE";

/// One service on a free port (with none, loopd would start its defaults on fixed ports).
const SEQ: &str = "[[service]]\nkind = \"seq\"\nbind = \"127.0.0.1:0\"\n";

const WITHIN: Duration = Duration::from_secs(30);

/// True when this process can switch to [`OTHER`]; otherwise says loudly why not.
fn can_switch_user(test: &str) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .to_string();
    if euid != "0" {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: CI must run as root to check the other-user layers (running as uid {euid})"
        );
        eprintln!(
            "SKIPPED {test}: needs root to run a client as uid {OTHER} (running as uid {euid}); \
             CI runs as root"
        );
        return false;
    }
    let setpriv = Command::new("setpriv").arg("--version").output();
    assert!(
        setpriv.is_ok_and(|o| o.status.success()),
        "setpriv (util-linux) is missing; scripts/test.sh installs it"
    );
    true
}

/// `program args…` as uid/gid [`OTHER`] with no supplementary groups: (its pid, its output).
fn run_as_other(program: &Path, args: &[&str], env: &[(&str, &Path)]) -> (u32, Output) {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={OTHER}"))
        .arg(format!("--regid={OTHER}"))
        .arg("--clear-groups")
        .arg("--")
        .arg(program)
        .args(args)
        .env_remove("LOOPD_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    // setpriv execs the program: the pid the daemon sees is this one.
    let pid = child.id();
    (pid, child.wait_with_output().unwrap())
}

/// `loopctl --socket <socket> args…` as [`OTHER`].
fn loopctl_as_other(socket: &Path, args: &[&str]) -> (u32, Output) {
    let socket = socket.display().to_string();
    let mut all = vec!["--socket", &socket, "--color", "never", "--timeout", "20s"];
    all.extend_from_slice(args);
    run_as_other(&binary("loopctl"), &all, &[])
}

/// `loopctl --socket <socket> args…` as ourselves: (its pid, its output).
fn loopctl_as_owner(socket: &Path, args: &[&str]) -> (u32, Output) {
    let args: Vec<&str> = ["--timeout", "20s"].iter().chain(args).copied().collect();
    let child = support::spawn_loopctl(socket, &args);
    let pid = child.id();
    (pid, child.wait_with_output().unwrap())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What [`peer_probe`] saw, run as [`OTHER`] by re-executing this test binary:
/// (its pid, `Err(io error kind)` or `Ok(everything the daemon sent before closing)`).
fn probe_as_other(socket: &Path) -> (u32, Result<String, String>) {
    let probe = support::binary("peer-probe");
    let (pid, out) = run_as_other(&probe, &[], &[(PROBE_ENV, socket)]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "probe failed: {out:?}");
    let line = |tag: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(tag))
            .map(str::to_string)
    };
    let seen = match (line("PROBE-CONNECT-ERROR "), line("PROBE-GOT ")) {
        (Some(kind), _) => Err(kind),
        (None, Some(got)) => Ok(got),
        _ => panic!("probe printed no result: {out:?}"),
    };
    (pid, seen)
}

/// The log lines with `message` whose `peer_pid` is `pid`, waiting up to [`WITHIN`].
fn wait_peer_log(d: &Daemon, message: &str, pid: u32) -> Value {
    loop {
        let line = d.wait_log(message, WITHIN);
        if line["fields"]["peer_pid"].as_u64() == Some(u64::from(pid)) {
            return line;
        }
    }
}

#[test]
fn as_deployed_another_user_cannot_reach_the_socket() {
    if !can_switch_user("as_deployed_another_user_cannot_reach_the_socket") {
        return;
    }
    let d = Daemon::start_default_control(SEQ);
    let dir = d.control.parent().unwrap();
    let dir_mode = std::fs::metadata(dir).unwrap().mode() & 0o7777;
    let sock_mode = std::fs::metadata(&d.control).unwrap().mode() & 0o7777;
    assert_eq!(dir_mode, 0o700, "{}", dir.display());
    assert_eq!(sock_mode, 0o600, "{}", d.control.display());

    // A raw connect: the kernel refuses it (no search permission on the directory).
    let (_, seen) = probe_as_other(&d.control);
    assert_eq!(seen, Err("PermissionDenied".to_string()));

    // loopctl: the connection-error exit code and a message that says what to do.
    let (_, out) = loopctl_as_other(&d.control, &["status"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        stderr.contains("permission denied") && stderr.contains("another user"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&d.control.display().to_string()),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");

    // Nothing reached the daemon, and its owner still gets answers.
    let (_, own) = loopctl_as_owner(&d.control, &["status"]);
    assert!(own.status.success(), "{own:?}");
    assert!(
        !d.logs().iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("another user"))),
        "{:?}",
        d.logs()
    );
}

#[test]
fn with_the_socket_opened_the_daemon_refuses_another_uid_and_serves_its_owner() {
    if !can_switch_user("with_the_socket_opened_the_daemon_refuses_another_uid") {
        return;
    }
    let d = Daemon::start(SEQ);
    // Open the filesystem layer on purpose: the temp dir is 0755, the socket becomes 0666.
    let dir = d.control.parent().unwrap();
    assert_eq!(std::fs::metadata(dir).unwrap().mode() & 0o777, 0o755);
    std::fs::set_permissions(&d.control, std::fs::Permissions::from_mode(0o666)).unwrap();

    // A raw client gets exactly one line, the documented refusal, and then EOF.
    let (probe_pid, seen) = probe_as_other(&d.control);
    let got = seen.unwrap_or_else(|kind| panic!("the kernel refused the connect: {kind}"));
    let refusal: Value =
        serde_json::from_str(&got).unwrap_or_else(|e| panic!("not one JSON line ({e}): {got}"));
    assert_eq!(refusal["jsonrpc"], "2.0", "{refusal}");
    assert_eq!(refusal["id"], Value::Null, "{refusal}");
    assert_eq!(refusal["error"]["code"], -32004, "{refusal}");
    let message = refusal["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("permission denied") && message.contains(&format!("uid {OTHER}")),
        "{message}"
    );
    let log = wait_peer_log(
        &d,
        "control connection from another user refused",
        probe_pid,
    );
    assert_eq!(log["level"], "WARN", "{log}");
    assert_eq!(log["fields"]["peer_uid"], OTHER, "{log}");

    // loopctl as the other user: refused too, an error exit and the daemon's reason.
    let (ctl_pid, out) = loopctl_as_other(&d.control, &["status"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "loopctl must fail: {out:?}");
    assert!(stderr.contains("refused the connection"), "{stderr}");
    assert!(stderr.contains("-32004"), "{stderr}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let log = wait_peer_log(&d, "control connection from another user refused", ctl_pid);
    assert_eq!(log["fields"]["peer_uid"], OTHER, "{log}");

    // The owner is still served.
    let (_, own) = loopctl_as_owner(&d.control, &["--json", "status"]);
    assert!(own.status.success(), "{own:?}");
    let status: Value = serde_json::from_slice(&own.stdout).unwrap();
    assert_eq!(status["pid"], d.pid(), "{status}");

    // A change by the owner is logged at INFO with its pid and uid, and the values asked for.
    let (set_pid, set) = loopctl_as_owner(
        &d.control,
        &["--json", "config", "set", "stall_threshold_ms", "150ms"],
    );
    assert!(set.status.success(), "{set:?}");
    let log = wait_peer_log(&d, "config.set", set_pid);
    assert_eq!(log["level"], "INFO", "{log}");
    let my_uid = std::fs::metadata("/proc/self").unwrap().uid();
    assert_eq!(log["fields"]["peer_uid"], my_uid, "{log}");
    assert!(
        log["fields"]["stall_threshold_ms"]
            .as_str()
            .is_some_and(|v| v.contains("150")),
        "{log}"
    );
}

// ----- a control directory of the user's choosing (`--control`, `$LOOPD_SOCKET`) -----

/// A config with one service on a free port, no metrics and no `control` line.
fn bare_config(dir: &Path) -> PathBuf {
    let cfg = dir.join("loopd.toml");
    std::fs::write(&cfg, format!("metrics_addr = \"off\"\n{SEQ}")).unwrap();
    cfg
}

/// A subdirectory of `dir` with `mode`.
fn subdir(dir: &Path, name: &str, mode: u32) -> PathBuf {
    let sub = dir.join(name);
    std::fs::create_dir(&sub).unwrap();
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(mode)).unwrap();
    sub
}

#[test]
fn a_control_directory_others_can_write_to_is_refused_in_one_line() {
    let dir = TempDir::new("ctl-open");
    let cfg = bare_config(&dir.0);
    for mode in [0o777, 0o770] {
        let open = subdir(&dir.0, &format!("open{mode:o}"), mode);
        let sock = open.join("c.sock");
        let (code, stderr) = run_loopd(&[
            "--config",
            cfg.to_str().unwrap(),
            "--control",
            sock.to_str().unwrap(),
            "--log",
            "off",
        ]);
        assert_eq!(code, 1, "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains("writable by other users") && stderr.contains(open.to_str().unwrap()),
            "{stderr}"
        );
        assert!(!sock.exists(), "no socket was created");
        // The directory is left as it was.
        assert_eq!(
            std::fs::metadata(&open).unwrap().mode() & 0o7777,
            mode,
            "{}",
            open.display()
        );
    }
}

#[test]
fn a_control_directory_of_another_user_is_refused() {
    if !can_switch_user("a_control_directory_of_another_user_is_refused") {
        return;
    }
    let dir = TempDir::new("ctl-theirs");
    let cfg = bare_config(&dir.0);
    let theirs = subdir(&dir.0, "theirs", 0o755);
    std::os::unix::fs::chown(&theirs, Some(OTHER), Some(OTHER)).unwrap();
    let sock = theirs.join("c.sock");
    let (code, stderr) = run_loopd(&[
        "--config",
        cfg.to_str().unwrap(),
        "--control",
        sock.to_str().unwrap(),
        "--log",
        "off",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(&format!("belongs to uid {OTHER}")),
        "{stderr}"
    );
    assert!(!sock.exists(), "no socket was created");
}

/// Starts loopd with `args` and `env` and waits for its socket at `sock`; killed on drop.
struct Bare(std::process::Child);

impl Bare {
    fn start(cfg: &Path, args: &[&str], env: &[(&str, &Path)], sock: &Path) -> Bare {
        let mut cmd = Command::new(binary("loopd"));
        cmd.arg("--config")
            .arg(cfg)
            .args(["--log", "off"])
            .args(args)
            .env_remove("LOOPD_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut bare = Bare(cmd.spawn().unwrap());
        let deadline = Instant::now() + WITHIN;
        // Up once its socket answers with the hello.
        loop {
            if let Ok(s) = UnixStream::connect(sock) {
                s.set_read_timeout(Some(WITHIN)).unwrap();
                let mut hello = String::new();
                BufReader::new(s).read_line(&mut hello).unwrap();
                assert!(hello.contains("\"hello\""), "{hello}");
                return bare;
            }
            if let Some(status) = bare.0.try_wait().unwrap() {
                panic!("loopd exited: {status}");
            }
            assert!(Instant::now() < deadline, "no socket at {}", sock.display());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_sticky_or_private_control_directory_is_used_as_it_is() {
    let dir = TempDir::new("ctl-ok");
    let cfg = bare_config(&dir.0);
    // A sticky world-writable directory (like /tmp) and a 0755 one of ours, given by flag
    // and by $LOOPD_SOCKET: loopd starts, its socket is 0600, and the directory's mode is
    // not touched (only loopd's own default directory is set to 0700).
    let sticky = subdir(&dir.0, "sticky", 0o1777);
    let mine = subdir(&dir.0, "mine", 0o755);
    for (sub, mode, by_env) in [(&sticky, 0o1777, false), (&mine, 0o755, true)] {
        let sock = sub.join("c.sock");
        let _daemon = if by_env {
            Bare::start(&cfg, &[], &[("LOOPD_SOCKET", &sock)], &sock)
        } else {
            Bare::start(&cfg, &["--control", sock.to_str().unwrap()], &[], &sock)
        };
        assert_eq!(std::fs::metadata(&sock).unwrap().mode() & 0o7777, 0o600);
        assert_eq!(
            std::fs::metadata(sub).unwrap().mode() & 0o7777,
            mode,
            "{}",
            sub.display()
        );
    }
}
