/* loopd-agent: loopd's observability (loopctl, loop-top, /metrics, stall watchdog) inside a
 * libuv program. Either preload it (LD_PRELOAD=libloopd_agent.so ./program: every loop is
 * attached when it first runs, callbacks attributed) or link it (-lloopd_agent) and call
 * loopd_agent_attach. No libuv header is needed here: the loop is passed as a pointer.
 *
 * Environment: LOOPD_SOCKET (control socket path; default
 * $XDG_RUNTIME_DIR/loopd/<program>-<pid>.sock, else /tmp/loopd-<uid>/<program>-<pid>.sock),
 * LOOPD_METRICS_ADDR (Prometheus endpoint, off unless set), LOOPD_STALL_THRESHOLD (100ms),
 * LOOPD_LOG (stderr log filter, default warn), LOOPD_SAMPLE_SIGNAL (SIGRTMIN+5). */
#ifndef LOOPD_AGENT_H
#define LOOPD_AGENT_H

#ifdef __cplusplus
extern "C" {
#endif

/* Attaches the agent to `loop` (a uv_loop_t *). Call on the thread that runs the loop,
 * before or between uv_run calls. Returns 0 on success or if already attached, -1 otherwise
 * (the reason is logged once on stderr). A statically linked libuv must be visible to dlsym:
 * link the program with -rdynamic. */
int loopd_agent_attach(void *loop);

/* Detaches the agent from `loop` (on its thread). Returns 0, or -1 if it was not attached. */
int loopd_agent_detach(void *loop);

#ifdef __cplusplus
}
#endif

#endif /* LOOPD_AGENT_H */
