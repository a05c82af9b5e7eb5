/* libuv peers of loopd-bench: shared declarations.
 *
 * Each scenario is one file with one entry point; main.c dispatches on argv[1].
 * A run prints exactly one JSON line on stdout (see emit_result) and exits 0,
 * or prints a message on stderr and exits non-zero. */
#ifndef LOOPD_BENCH_PEER_H
#define LOOPD_BENCH_PEER_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <uv.h>

/* Size arguments, the same flags every peer takes (--n, --inflight, --conns,
 * and for fs_read --chunk, --file, --sum). */
typedef struct {
  uint64_t n;        /* how many operations (timers, round trips, jobs, chunks) */
  uint64_t inflight; /* queue_work: jobs kept in flight */
  uint64_t conns;    /* echo: connections to serve before exiting */
  uint64_t chunk;    /* fs_read: bytes per read */
  const char* file;  /* fs_read: the harness's data file */
  uint64_t sum;      /* fs_read: its checksum */
  int has_sum;
} peer_args;

/* Prints the result line: {"scenario":..,"peer":"libuv","ops":..,"seconds":..,"extra":{..}}.
 * extra_json is the inside of the extra object (may be ""). */
void emit_result(const char* scenario, uint64_t ops, double seconds,
                 const char* extra_json);

/* Exits with a message when cond is false: benchmarks check their own counts. */
#define CHECK(cond)                                                        \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "libuv-peer: check failed at %s:%d: %s\n", __FILE__, \
              __LINE__, #cond);                                            \
      exit(2);                                                             \
    }                                                                      \
  } while (0)

#define CHECK_UV(expr)                                                      \
  do {                                                                      \
    int r_ = (expr);                                                        \
    if (r_ != 0) {                                                          \
      fprintf(stderr, "libuv-peer: %s failed at %s:%d: %s\n", #expr,        \
              __FILE__, __LINE__, uv_strerror(r_));                         \
      exit(2);                                                              \
    }                                                                       \
  } while (0)

/* echo_server.c: what the echo servers (echo.c, echo_reuse.c) share. Listens on
 * 127.0.0.1:0, prints the port, accepts args->conns connections and starts reading
 * each with alloc_cb / read_cb (its data pointer NULL), closes the listener after the
 * last accept, runs until every connection has closed (echo_close) and prints
 * {"accepted":N}. */
int echo_serve(const peer_args* args, uv_alloc_cb alloc_cb, uv_read_cb read_cb);
/* Closes an accepted connection, counting it for echo_serve's exit. */
void echo_close(uv_stream_t* stream);
/* The echo servers' backpressure: reads stop while more than this many bytes are
 * queued for writing (loopd's services' mark, loopd::services::flow::HIGH_WATER),
 * the connection's data pointer then being ECHO_PAUSED. */
#define ECHO_HIGH_WATER (256 * 1024)
#define ECHO_PAUSED ((void*) 1)

int scenario_timers(const peer_args* args);
int scenario_async1(const peer_args* args);
int scenario_queue_work(const peer_args* args);
int scenario_echo(const peer_args* args);
int scenario_echo_reuse(const peer_args* args);
int scenario_loop_count(const peer_args* args);
int scenario_fs_read(const peer_args* args);

#endif
