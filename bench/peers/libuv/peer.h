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

int scenario_timers(const peer_args* args);
int scenario_async1(const peer_args* args);
int scenario_queue_work(const peer_args* args);
int scenario_echo(const peer_args* args);
int scenario_loop_count(const peer_args* args);
int scenario_fs_read(const peer_args* args);

#endif
