/* timers: libuv's benchmark-million-timers.c, with the count as a parameter.
 * Start n timers (timeout 1 ms for the first 1000, 2 ms for the next 1000, ...),
 * run the loop until all fired, close them all, run the loop until all closed. */
#include "peer.h"

static uint64_t timer_cb_called;
static uint64_t close_cb_called;

static void timer_cb(uv_timer_t* handle) {
  (void) handle;
  timer_cb_called++;
}

static void close_cb(uv_handle_t* handle) {
  (void) handle;
  close_cb_called++;
}

int scenario_timers(const peer_args* args) {
  uint64_t n = args->n;
  uv_timer_t* timers;
  uv_loop_t* loop;
  uint64_t before_all, before_run, after_run, after_all;
  uint64_t timeout = 0;
  uint64_t i;
  char extra[256];

  timers = malloc(n * sizeof(timers[0]));
  CHECK(timers != NULL);
  loop = uv_default_loop();

  before_all = uv_hrtime();
  for (i = 0; i < n; i++) {
    if (i % 1000 == 0) timeout++;
    CHECK_UV(uv_timer_init(loop, timers + i));
    CHECK_UV(uv_timer_start(timers + i, timer_cb, timeout, 0));
  }
  before_run = uv_hrtime();
  CHECK_UV(uv_run(loop, UV_RUN_DEFAULT));
  after_run = uv_hrtime();
  for (i = 0; i < n; i++) uv_close((uv_handle_t*) (timers + i), close_cb);
  CHECK_UV(uv_run(loop, UV_RUN_DEFAULT));
  after_all = uv_hrtime();

  CHECK(timer_cb_called == n);
  CHECK(close_cb_called == n);
  free(timers);

  snprintf(extra, sizeof(extra),
           "\"init_seconds\":%.9f,\"dispatch_seconds\":%.9f,\"cleanup_seconds\":%.9f",
           (before_run - before_all) / 1e9, (after_run - before_run) / 1e9,
           (after_all - after_run) / 1e9);
  emit_result("timers", n, (after_all - before_all) / 1e9, extra);
  return 0;
}
