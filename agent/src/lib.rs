//! loopd-agent: loopd's observability inside any libuv program — `loopctl`, `loop-top`, the
//! Prometheus endpoint and the stall watchdog on a loop loopd does not run.
//!
//! Two ways in (see `agent/README.md`):
//! - `LD_PRELOAD=libloopd_agent.so program`: the agent's `uv_run` attaches each loop the
//!   first time it runs (on the thread that runs it), then forwards to libuv's; its
//!   definitions of the registering calls (`uv_timer_start`, `uv_read_start`, `uv_listen`,
//!   `uv_write`, `uv_queue_work`, …) attribute callbacks ([`intercept`]).
//! - `loopd_agent_attach(loop)` from the program (libuv linked statically, or to choose when):
//!   the same data, without callback attribution unless the agent is also preloaded.
//!
//! The agent is loopd's second producer of loop data: it fills `loopd_engine::instrument`'s
//! types ([`loop_agent`]) and serves them with `loopd-observe`, as the daemon does ([`serve`]).
//! Every entry point from C catches panics; the loop thread never waits for a lock another
//! thread holds while doing I/O; the sampling signal handler (observe's) allocates nothing.

pub mod ffi;
pub mod fork;
pub mod intercept;
pub mod loop_agent;
pub mod pool;
pub mod serve;
mod sites;
pub mod threads;
pub mod uv;

use uv::Uv;

/// What this libuv lets the agent observe (`hello`/`status` `host.capabilities`).
pub fn capabilities(uv: &Uv) -> Vec<String> {
    let mut caps = vec![
        "idle_time",
        "phases",
        "handles",
        "stalls",
        "stack_samples",
        "lag",
    ];
    if uv.metrics_info.is_some() {
        caps.push("metrics_info");
    }
    if intercept::interposing() {
        caps.extend(["callback_attribution", "threadpool"]);
    }
    caps.into_iter().map(String::from).collect()
}
