//! The scenario registry: what each benchmark is, its sizes, and which peers run it.
//!
//! Adding a scenario is one entry in [`SCENARIOS`] plus its implementation in each peer
//! (`src/bin/loopd-peer.rs`, `peers/libuv/<name>.c`, optionally `peers/node/<name>.js`).
//! A peer that does not implement a scenario exits with [`EXIT_UNSUPPORTED`] and is shown
//! as `n/a`, so the registry may run ahead of the peers.

/// Exit code of a peer that does not implement the scenario it was asked for.
pub const EXIT_UNSUPPORTED: i32 = 3;

/// How a scenario's result is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Operations per second (ops / the program's own seconds); higher is better.
    Throughput,
    /// The program's own seconds for the whole fixed amount of work; lower is better.
    Duration,
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
    },
];

impl Scenario {
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
