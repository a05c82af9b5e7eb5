//! Finding and building the peer programs before anything is measured.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::peer::Peer;

/// The `bench/` directory (peer sources live under it).
pub fn bench_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds this crate's other binaries (`loopd-peer`, `mio-peer`, `tokio-peer`) in this binary's profile:
/// `cargo run` builds only the binary it runs, and a stale peer would measure old code.
/// Only when run through cargo (which sets `$CARGO`); a harness run directly uses what is
/// there.
pub fn build_siblings() -> Result<()> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-q", "-p", "loopd-bench", "--bins"]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .context("cannot run cargo to build the peers")?;
    if !status.success() {
        bail!("building the peer binaries failed");
    }
    Ok(())
}

/// `loopd-peer`, which cargo builds beside this binary.
pub fn loopd_peer() -> Result<PathBuf> {
    sibling("loopd-peer")
}

/// `mio-peer`, which cargo builds beside this binary.
pub fn mio_peer() -> Result<PathBuf> {
    sibling("mio-peer")
}

/// `tokio-peer`, which cargo builds beside this binary.
pub fn tokio_peer() -> Result<PathBuf> {
    sibling("tokio-peer")
}

/// Where the `fs_read` data file goes: `loopd-bench-data/` beside this binary, in the
/// target directory (not in the source tree, not in a tmpfs `/tmp`).
pub fn data_dir() -> Result<PathBuf> {
    let me = std::env::current_exe().context("cannot find this executable's path")?;
    Ok(me.with_file_name("loopd-bench-data"))
}

/// The daemon, `loopd`, for `--daemon`: built by cargo (`-p loopd`, this binary's profile)
/// when the harness runs under cargo, then found beside this binary (same target dir).
pub fn loopd_daemon() -> Result<PathBuf> {
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "loopd", "--bin", "loopd"]);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let status = cmd.status().context("cannot run cargo to build loopd")?;
        if !status.success() {
            bail!("building loopd failed");
        }
    }
    sibling("loopd").context("build it with `cargo build --release -p loopd`")
}

fn sibling(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe().context("cannot find this executable's path")?;
    let peer = me.with_file_name(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !peer.is_file() {
        bail!(
            "{} not found: run the harness with `cargo run --release -p loopd-bench`, \
             which builds {name} too",
            peer.display()
        );
    }
    Ok(peer)
}

/// Compiles `peers/libuv/*.c` into `peers/build/libuv-peer` (the program of both libuv
/// peers: `libuv` runs its scenarios, `libuv-tuned` its `echo_reuse`) with `cc` (or `$CC`) and
/// the flags `pkg-config` gives for libuv. Rebuilt on every harness run: it takes
/// well under a second and never goes stale.
/// `libloopd_agent.so` beside this binary (same profile), for the `libuv-agent` peer.
///
/// # Errors
/// When it was not built.
pub fn agent() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this binary")?;
    let dir = exe.parent().context("this binary has no directory")?;
    let so = dir.join("libloopd_agent.so");
    if !so.exists() {
        bail!(
            "{} is missing: build it with `cargo build --release -p loopd-agent`",
            so.display()
        );
    }
    Ok(so)
}

pub fn libuv_peer() -> Result<PathBuf> {
    let flags = pkg_config(&["--cflags", "--libs", "libuv"]).context(
        "libuv (headers and pkg-config file) not found: install the Debian package \
         `libuv1-dev` (and `pkg-config`): `apt-get install -y libuv1-dev pkg-config`, \
         or leave the libuv peers out with `--peers loopd-on,loopd-off,node,tokio,mio`",
    )?;
    let src = bench_dir().join("peers/libuv");
    let out_dir = bench_dir().join("peers/build");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let out = out_dir.join("libuv-peer");
    let mut sources = Vec::new();
    for entry in
        std::fs::read_dir(&src).with_context(|| format!("cannot read {}", src.display()))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "c") {
            sources.push(path);
        }
    }
    sources.sort();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let status = Command::new(&cc)
        .args(["-O2", "-Wall", "-Wextra", "-o"])
        .arg(&out)
        .args(&sources)
        .args(flags.split_whitespace())
        .status()
        .with_context(|| format!("cannot run the C compiler `{cc}` (install gcc)"))?;
    if !status.success() {
        bail!("building {} failed ({status})", out.display());
    }
    Ok(out)
}

/// The libuv version the C peer links against.
pub fn libuv_version() -> Option<String> {
    pkg_config(&["--modversion", "libuv"]).ok()
}

/// `node` on PATH and the Node peers' directory, or `None` when there is no `node`.
pub fn node() -> Option<(PathBuf, PathBuf)> {
    let version = Command::new("node").arg("--version").output().ok()?;
    version
        .status
        .success()
        .then(|| (PathBuf::from("node"), bench_dir().join("peers/node")))
}

/// `node --version`, if there is a node.
pub fn node_version(node: &Path) -> Option<String> {
    let out = Command::new(node).arg("--version").output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// What a run needs that is not a peer: the message for a peer that cannot run here.
pub fn unavailable_hint(peer: Peer) -> &'static str {
    match peer {
        Peer::LoopdOn | Peer::LoopdOff | Peer::Mio | Peer::Tokio => {
            "build it with `cargo build --release -p loopd-bench`"
        }
        Peer::Libuv | Peer::LibuvTuned => "install `libuv1-dev` and `pkg-config`",
        Peer::LibuvAgent => {
            "install `libuv1-dev` and `pkg-config`; `cargo build --release -p loopd-agent`"
        }
        Peer::Node => "install `nodejs`",
    }
}

fn pkg_config(args: &[&str]) -> Result<String> {
    let out = Command::new("pkg-config")
        .args(args)
        .output()
        .context("cannot run pkg-config")?;
    if !out.status.success() {
        bail!(
            "pkg-config {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
