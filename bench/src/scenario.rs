//! The scenario registry: what each benchmark is, its sizes, and which peers run it.
//!
//! Adding a scenario is one entry in [`SCENARIOS`] plus its implementation in each peer
//! (`src/bin/loopd-peer.rs`, `peers/libuv/<name>.c`, optionally `peers/node/<name>.js`).
//! A peer that does not implement a scenario exits with [`EXIT_UNSUPPORTED`] and is shown
//! as `n/a`, so the registry may run ahead of the peers.

use crate::net::Client;

/// Exit code of a peer that does not implement the scenario it was asked for.
pub const EXIT_UNSUPPORTED: i32 = 3;

/// How a scenario's result is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Operations per second (ops / the program's own seconds); higher is better.
    Throughput,
    /// The program's own seconds for the whole fixed amount of work; lower is better.
    Duration,
    /// Bytes per op (e.g. server RSS per idle connection), from `extra.bytes_per_op`
    /// of the run; lower is better.
    BytesPerOp,
}

/// One benchmark scenario.
#[derive(Debug)]
pub struct Scenario {
    /// Name on the command line, in the table and in the JSON.
    pub name: &'static str,
    /// Name passed to the peers (several scenarios may share one peer program with
    /// different sizes, like `queue_work` and `queue_work_batch`).
    pub peer_scenario: &'static str,
    /// One line: what is measured.
    pub about: &'static str,
    /// How the result is read.
    pub metric: Metric,
    /// What one "op" is, for the table header.
    pub op: &'static str,
    /// Size arguments (`--key value`) of a full run.
    pub args: &'static [(&'static str, u64)],
    /// Size arguments of a `--quick` run.
    pub quick_args: &'static [(&'static str, u64)],
    /// The Node.js peer script (`peers/node/<script>`), if Node has an equivalent.
    pub node_script: Option<&'static str>,
    /// For a network scenario, the client the harness runs against the peer, which is
    /// then a server (see `crate::net`); `None`: the peer does the work and times it.
    pub client: Option<Client>,
}

/// Every scenario, in the order they run.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "timers",
        peer_scenario: "timers",
        about: "libuv's million_timers: start n timers (timeout i/1000+1 ms), run until all \
                fired, close all, run until closed",
        metric: Metric::Duration,
        op: "timer",
        args: &[("n", 1_000_000)],
        quick_args: &[("n", 100_000)],
        node_script: Some("timers.js"),
        client: None,
    },
    Scenario {
        name: "loop_count",
        peer_scenario: "loop_count",
        about: "libuv's loop_count: an idle handle drives n empty loop iterations (per-iteration \
                overhead; with instrumentation on, every iteration is timed)",
        metric: Metric::Throughput,
        op: "iteration",
        args: &[("n", 5_000_000)],
        quick_args: &[("n", 500_000)],
        node_script: None,
        client: None,
    },
    Scenario {
        name: "async1",
        peer_scenario: "async1",
        about: "libuv's async1: async-send ping-pong between two loops on two threads",
        metric: Metric::Throughput,
        op: "round trip",
        args: &[("n", 100_000)],
        quick_args: &[("n", 10_000)],
        node_script: Some("async1.js"),
        client: None,
    },
    Scenario {
        name: "queue_work",
        peer_scenario: "queue_work",
        about: "thread-pool round trip: 1 trivial job in flight, each after-work queues the \
                next (libuv's queue_work ping-pong)",
        metric: Metric::Throughput,
        op: "job",
        args: &[("n", 100_000), ("inflight", 1)],
        quick_args: &[("n", 10_000), ("inflight", 1)],
        node_script: Some("queue_work.js"),
        client: None,
    },
    Scenario {
        name: "queue_work_batch",
        peer_scenario: "queue_work",
        about: "thread-pool throughput: 1000 trivial jobs in flight, each after-work queues \
                the next",
        metric: Metric::Throughput,
        op: "job",
        args: &[("n", 2_000_000), ("inflight", 1000)],
        quick_args: &[("n", 200_000), ("inflight", 1000)],
        node_script: Some("queue_work.js"),
        client: None,
    },
    Scenario {
        name: "fs_read",
        peer_scenario: "fs_read",
        about: "async file read: open, read n chunks of 64 KiB one at a time (each on the \
                thread pool), close; the harness's file, page cache warm: the async-fs \
                machinery, not the disk",
        metric: Metric::Throughput,
        op: "64 KiB read",
        args: &[("n", 1600), ("chunk", 65536)],
        quick_args: &[("n", 160), ("chunk", 65536)],
        node_script: Some("fs_read.js"),
        client: None,
    },
    Scenario {
        name: "pingpong",
        peer_scenario: "echo",
        about: "libuv's ping_pongs: 1 TCP connection, the harness's blocking client sends \
                \"PING\\n\", the peer's echo server echoes, send again on receipt; round \
                trips/s, server CPU per round trip",
        metric: Metric::Throughput,
        op: "round trip",
        args: &[("n", 100_000), ("conns", 1)],
        quick_args: &[("n", 10_000), ("conns", 1)],
        node_script: Some("echo.js"),
        client: Some(Client::PingPong),
    },
    Scenario {
        name: "pingpong100",
        peer_scenario: "echo",
        about: "100 TCP connections ping-ponging at once (the harness's mio client), n round \
                trips in total; round trips/s, server CPU per round trip",
        metric: Metric::Throughput,
        op: "round trip",
        args: &[("n", 100_000), ("conns", 100)],
        quick_args: &[("n", 10_000), ("conns", 100)],
        node_script: Some("echo.js"),
        client: Some(Client::PingPongMany),
    },
    Scenario {
        name: "pound",
        peer_scenario: "echo",
        about: "accept rate (libuv's tcp_pound): 100 at a time, connect, 1 byte echoed, \
                close (reset), next; connections/s, server CPU per connection",
        metric: Metric::Throughput,
        op: "connection",
        args: &[("n", 20_000), ("conns", 20_000)],
        quick_args: &[("n", 2_000), ("conns", 2_000)],
        node_script: Some("echo.js"),
        client: Some(Client::Pound { concurrency: 100 }),
    },
    Scenario {
        name: "pump",
        peer_scenario: "echo",
        about: "bulk throughput on 1 TCP connection (libuv's pump): the harness writes n MiB of \
                a pattern in 64 KiB writes and reads the echoes back concurrently, verifying \
                every byte; MiB/s, server CPU per MiB",
        metric: Metric::Throughput,
        op: "MiB",
        args: &[("n", 1024), ("conns", 1)],
        quick_args: &[("n", 102), ("conns", 1)],
        node_script: Some("echo.js"),
        client: Some(Client::Pump),
    },
    Scenario {
        name: "idle_memory",
        peer_scenario: "echo",
        about: "server RSS per idle connection: 100 warm-up connections, VmRSS, n more \
                connections (1 byte echoed each, then idle), VmRSS again; (after - before) / n",
        metric: Metric::BytesPerOp,
        op: "connection",
        args: &[("n", 10_000), ("conns", 10_100)],
        quick_args: &[("n", 1_000), ("conns", 1_100)],
        node_script: Some("echo.js"),
        client: Some(Client::IdleMemory),
    },
];

impl Scenario {
    /// The unit of a rate of ops: `round trips/s`, but `MiB/s`.
    pub fn per_second(&self) -> String {
        if self.op.ends_with('B') {
            format!("{}/s", self.op)
        } else {
            format!("{}s/s", self.op)
        }
    }

    /// One size argument of this run (`n`, `conns`, ...).
    pub fn size(&self, key: &str, quick: bool) -> Option<u64> {
        let args = if quick { self.quick_args } else { self.args };
        args.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// Whether the peers read the harness's data file (`--file PATH --sum S`, see
    /// `crate::datafile`), and its size in bytes: n chunks.
    pub fn data_file_size(&self, quick: bool) -> Option<u64> {
        if self.peer_scenario != "fs_read" {
            return None;
        }
        Some(self.size("n", quick)? * self.size("chunk", quick)?)
    }

    /// Looks a scenario up by name.
    pub fn find(name: &str) -> Option<&'static Scenario> {
        SCENARIOS.iter().find(|s| s.name == name)
    }

    /// The size arguments for this run, as command-line words.
    pub fn size_argv(&self, quick: bool) -> Vec<String> {
        let args = if quick { self.quick_args } else { self.args };
        args.iter()
            .flat_map(|(k, v)| [format!("--{k}"), v.to_string()])
            .collect()
    }

    /// The size arguments for this run, as `k=v` words for display.
    pub fn size_label(&self, quick: bool) -> String {
        let args = if quick { self.quick_args } else { self.args };
        args.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_findable() {
        for s in SCENARIOS {
            assert_eq!(Scenario::find(s.name).map(|f| f.name), Some(s.name));
            assert_eq!(SCENARIOS.iter().filter(|t| t.name == s.name).count(), 1);
            assert_eq!(s.args.len(), s.quick_args.len(), "{}", s.name);
            if s.client.is_some() {
                assert!(s.size("n", false).is_some() && s.size("conns", true).is_some());
            }
        }
    }

    #[test]
    fn only_fs_read_has_a_data_file() {
        let s = Scenario::find("fs_read").unwrap();
        assert_eq!(s.data_file_size(false), Some(100 << 20));
        assert_eq!(s.data_file_size(true), Some(10 << 20));
        for s in SCENARIOS.iter().filter(|s| s.name != "fs_read") {
            assert_eq!(s.data_file_size(false), None, "{}", s.name);
        }
    }

    #[test]
    fn idle_memory_serves_the_warm_up_connections_too() {
        let s = Scenario::find("idle_memory").unwrap();
        for quick in [false, true] {
            let (n, conns) = (s.size("n", quick).unwrap(), s.size("conns", quick).unwrap());
            assert_eq!(conns, n + crate::net::IDLE_WARM as u64);
        }
    }

    #[test]
    fn size_argv_is_flag_value_pairs() {
        let s = Scenario::find("queue_work_batch").unwrap();
        assert_eq!(
            s.size_argv(true),
            ["--n", "200000", "--inflight", "1000"].map(String::from)
        );
    }
}
