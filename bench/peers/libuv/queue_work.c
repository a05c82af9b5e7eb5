/* queue_work: thread-pool jobs from the loop. `inflight` jobs are queued at the
 * start; each after-work callback queues the next until n jobs have completed.
 * inflight = 1 is libuv's benchmark-queue-work.c "ping-pong" half (round-trip
 * latency: loop -> worker -> loop); inflight = 1000 measures throughput.
 * The work is libuv's: one step of a linear congruential generator. */
#include "peer.h"

static uint64_t n_total;
static uint64_t started;
static uint64_t completed;
static unsigned result;
static unsigned rng;

static void work_cb(uv_work_t* req) {
  (void) req;
  /* Racy on purpose, as in libuv's benchmark: the value does not matter. */
  rng = rng * 214013 + 2531011;
  result = rng;
}

static void after_work_cb(uv_work_t* req, int status) {
  CHECK_UV(status);
  completed++;
  if (started < n_total) {
    started++;
    CHECK_UV(uv_queue_work(req->loop, req, work_cb, after_work_cb));
  }
}

int scenario_queue_work(const peer_args* args) {
  uv_loop_t* loop = uv_default_loop();
  uv_work_t* reqs;
  uint64_t inflight = args->inflight < args->n ? args->inflight : args->n;
  uint64_t i, time;
  char extra[128];

  n_total = args->n;
  reqs = calloc(inflight, sizeof(reqs[0]));
  CHECK(reqs != NULL);

  time = uv_hrtime();
  for (i = 0; i < inflight; i++) {
    started++;
    CHECK_UV(uv_queue_work(loop, reqs + i, work_cb, after_work_cb));
  }
  CHECK_UV(uv_run(loop, UV_RUN_DEFAULT));
  time = uv_hrtime() - time;

  CHECK(completed == n_total);
  free(reqs);
  snprintf(extra, sizeof(extra), "\"inflight\":%llu,\"threadpool_size\":\"%s\"",
           (unsigned long long) inflight,
           getenv("UV_THREADPOOL_SIZE") ? getenv("UV_THREADPOOL_SIZE") : "default");
  emit_result("queue_work", n_total, time / 1e9, extra);
  return 0;
}
