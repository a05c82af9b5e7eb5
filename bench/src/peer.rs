//! The peers: the programs a scenario runs in, and how to start them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::datafile::DataFile;
use crate::scenario::Scenario;

/// One side of a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    /// loopd's engine with instrumentation on (the default, what the daemon runs).
    LoopdOn,
    /// loopd's engine with instrumentation off (`LoopOptions { instrument: false }`).
    LoopdOff,
    /// The C programs in `peers/libuv/` against the system libuv.
    Libuv,
    /// The tuned libuv echo server (`peers/libuv/echo_reuse.c`: one reused read buffer,
    /// `uv_try_write` first), for the network scenarios only: an "ahead of libuv" claim
    /// is made against the stronger of it and [`Peer::Libuv`].
    LibuvTuned,
    /// [`Peer::Libuv`]'s programs with loopd's agent preloaded (`libloopd_agent.so`): what
    /// the agent costs a libuv program (issue #16).
    LibuvAgent,
    /// The scripts in `peers/node/` under the system `node`.
    Node,
    /// `tokio-peer`: the same scenarios on tokio's current-thread runtime.
    Tokio,
    /// `mio-peer`: a raw mio echo loop, our own code — the floor of the network
    /// scenarios (it has no others).
    Mio,
}

/// Every peer, in the order a repetition runs them.
pub const ALL_PEERS: &[Peer] = &[
    Peer::LoopdOn,
    Peer::LoopdOff,
    Peer::Libuv,
    Peer::LibuvTuned,
    Peer::LibuvAgent,
    Peer::Node,
    Peer::Tokio,
    Peer::Mio,
];

/// The peers that stand for libuv: every "ahead of libuv" ratio is also given against the
/// stronger of them (see [`crate::versus::Versus::StrongerLibuv`]).
pub const LIBUV_PEERS: &[Peer] = &[Peer::Libuv, Peer::LibuvTuned];

/// The `libuv-peer` scenarios of [`Peer::LibuvTuned`]: (the scenario's peer scenario, the
/// tuned program's). It has no equivalent of the others.
const LIBUV_TUNED_SCENARIOS: &[(&str, &str)] = &[("echo", "echo_reuse")];

impl Peer {
    /// Name on the command line, in the table and in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Peer::LoopdOn => "loopd-on",
            Peer::LoopdOff => "loopd-off",
            Peer::Libuv => "libuv",
            Peer::LibuvTuned => "libuv-tuned",
            Peer::LibuvAgent => "libuv-agent",
            Peer::Node => "node",
            Peer::Tokio => "tokio",
            Peer::Mio => "mio",
        }
    }

    /// Looks a peer up by name.
    pub fn parse(name: &str) -> Option<Peer> {
        ALL_PEERS.iter().copied().find(|p| p.name() == name)
    }

    /// Every peer's name, comma-separated, for messages.
    pub fn all_names() -> String {
        ALL_PEERS
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether the peer stands for libuv in "ahead of libuv" ratios.
    pub fn is_libuv(self) -> bool {
        LIBUV_PEERS.contains(&self)
    }

    /// Whether the peer runs `peers/build/libuv-peer`.
    pub fn runs_libuv_peer(self) -> bool {
        self.is_libuv() || self == Peer::LibuvAgent
    }
}

/// Where the peer programs are, once built or found.
#[derive(Debug, Default)]
pub struct Programs {
    /// `loopd-peer`, built by cargo beside this binary.
    pub loopd_peer: Option<PathBuf>,
    /// `peers/build/libuv-peer`, built by [`crate::prepare::libuv_peer`] (both libuv peers
    /// run it).
    pub libuv_peer: Option<PathBuf>,
    /// `mio-peer`, which cargo builds beside this binary.
    pub mio_peer: Option<PathBuf>,
    /// `libloopd_agent.so`, which cargo builds beside this binary
    /// (`cargo build --release -p loopd-agent`).
    pub agent: Option<PathBuf>,
    /// `tokio-peer`, which cargo builds beside this binary.
    pub tokio_peer: Option<PathBuf>,
    /// The `node` binary and the directory of the Node scripts.
    pub node: Option<(PathBuf, PathBuf)>,
    /// Thread-pool size given to every peer (`LOOPD_THREADPOOL_SIZE`, `UV_THREADPOOL_SIZE`).
    pub threadpool_size: u32,
    /// The `fs_read` scenario's file, when it runs.
    pub data_file: Option<DataFile>,
}

impl Programs {
    /// The command that runs `scenario` in `peer`, or `None` when the peer has no
    /// equivalent of the scenario.
    pub fn command(&self, peer: Peer, scenario: &Scenario, quick: bool) -> Result<Option<Command>> {
        let mut cmd = match peer {
            Peer::LoopdOn | Peer::LoopdOff => {
                let exe = need(self.loopd_peer.as_deref(), peer)?;
                let mut cmd = Command::new(exe);
                cmd.arg(scenario.peer_scenario);
                if peer == Peer::LoopdOff {
                    cmd.arg("--no-instrument");
                }
                cmd
            }
            Peer::Libuv => {
                let mut cmd = Command::new(need(self.libuv_peer.as_deref(), peer)?);
                cmd.arg(scenario.peer_scenario);
                cmd
            }
            Peer::LibuvAgent => {
                let agent = need(self.agent.as_deref(), peer)?;
                let mut cmd = Command::new(need(self.libuv_peer.as_deref(), peer)?);
                cmd.arg(scenario.peer_scenario)
                    .env("LD_PRELOAD", agent)
                    .env(
                        "LOOPD_SOCKET",
                        std::env::temp_dir()
                            .join(format!("loopd-bench-agent-{}.sock", std::process::id())),
                    );
                cmd
            }
            Peer::LibuvTuned => {
                let Some(&(_, tuned)) = LIBUV_TUNED_SCENARIOS
                    .iter()
                    .find(|(s, _)| *s == scenario.peer_scenario)
                else {
                    return Ok(None);
                };
                let mut cmd = Command::new(need(self.libuv_peer.as_deref(), peer)?);
                cmd.arg(tuned);
                cmd
            }
            Peer::Node => {
                let Some(script) = scenario.node_script else {
                    return Ok(None);
                };
                let Some((node, dir)) = &self.node else {
                    bail!("peer node: the `node` binary was not found (install nodejs)");
                };
                let mut cmd = Command::new(node);
                cmd.arg(dir.join(script));
                cmd
            }
            Peer::Tokio => {
                let mut cmd = Command::new(need(self.tokio_peer.as_deref(), peer)?);
                cmd.arg(scenario.peer_scenario);
                cmd
            }
            Peer::Mio => {
                if scenario.client.is_none() {
                    return Ok(None);
                }
                let mut cmd = Command::new(need(self.mio_peer.as_deref(), peer)?);
                cmd.arg(scenario.peer_scenario);
                cmd
            }
        };
        cmd.args(scenario.size_argv(quick));
        if scenario.data_file_size(quick).is_some() {
            let file = self
                .data_file
                .as_ref()
                .context("the data file of fs_read was not created")?;
            cmd.args(file.argv());
        }
        let size = self.threadpool_size.to_string();
        cmd.env("LOOPD_THREADPOOL_SIZE", &size)
            .env("UV_THREADPOOL_SIZE", &size);
        Ok(Some(cmd))
    }
}

fn need(path: Option<&Path>, peer: Peer) -> Result<&Path> {
    path.with_context(|| format!("peer {} is not available", peer.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in ALL_PEERS {
            assert_eq!(Peer::parse(p.name()), Some(*p));
        }
        assert_eq!(Peer::parse("nope"), None);
        assert_eq!(Peer::parse("tokio"), Some(Peer::Tokio));
        assert_eq!(Peer::parse("libuv-tuned"), Some(Peer::LibuvTuned));
        assert!(Peer::all_names().contains(",libuv-tuned,"));
    }

    fn argv(cmd: &Command) -> Vec<String> {
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn libuv_tuned_runs_echo_reuse_in_the_network_scenarios_only() {
        let programs = Programs {
            libuv_peer: Some(PathBuf::from("libuv-peer")),
            threadpool_size: 4,
            ..Programs::default()
        };
        for s in crate::scenario::SCENARIOS {
            let tuned = programs.command(Peer::LibuvTuned, s, true).unwrap();
            if s.client.is_some() {
                let tuned = tuned.unwrap();
                let plain = programs.command(Peer::Libuv, s, true).unwrap().unwrap();
                assert_eq!(tuned.get_program(), plain.get_program(), "{}", s.name);
                let (t, p) = (argv(&tuned), argv(&plain));
                assert_eq!((t[0].as_str(), p[0].as_str()), ("echo_reuse", "echo"));
                assert_eq!(t[1..], p[1..], "{}: the same sizes", s.name);
            } else {
                assert!(tuned.is_none(), "{}: no tuned equivalent", s.name);
            }
        }
        let none = Programs::default();
        let pump = Scenario::find("pump").unwrap();
        assert!(none.command(Peer::LibuvTuned, pump, true).is_err());
    }

    #[test]
    fn fs_read_gets_the_data_file() {
        let dir = std::env::temp_dir().join(format!("loopd-bench-peer-{}", std::process::id()));
        let s = Scenario::find("fs_read").unwrap();
        let mut programs = Programs {
            tokio_peer: Some(PathBuf::from("tokio-peer")),
            threadpool_size: 4,
            ..Programs::default()
        };
        assert!(programs.command(Peer::Tokio, s, true).is_err());
        programs.data_file = Some(DataFile::create(&dir, 1000).unwrap());
        let cmd = programs.command(Peer::Tokio, s, true).unwrap().unwrap();
        let args = argv(&cmd);
        assert_eq!(args[..5], ["fs_read", "--n", "160", "--chunk", "65536"]);
        assert_eq!(args[5], "--file");
        assert_eq!(args[7], "--sum");
        drop(programs);
        let _ = std::fs::remove_dir(&dir);
    }
}
