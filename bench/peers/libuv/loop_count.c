/* loop_count: libuv's benchmark-loop-count.c — an idle handle drives empty loop
 * iterations; n iterations, timed. The purest measure of per-iteration overhead. */
#include "peer.h"

static uint64_t loop_count_target;
static uint64_t loop_count_ticks;

static void idle_cb(uv_idle_t* handle) {
  if (++loop_count_ticks == loop_count_target) uv_idle_stop(handle);
}

int scenario_loop_count(const peer_args* args) {
  uv_loop_t* loop = uv_default_loop();
  uv_idle_t idle;
  uint64_t start, elapsed;

  loop_count_target = args->n;
  loop_count_ticks = 0;
  CHECK_UV(uv_idle_init(loop, &idle));
  CHECK_UV(uv_idle_start(&idle, idle_cb));
  start = uv_hrtime();
  CHECK_UV(uv_run(loop, UV_RUN_DEFAULT));
  elapsed = uv_hrtime() - start;
  CHECK(loop_count_ticks == args->n);
  emit_result("loop_count", args->n, elapsed / 1e9, "\"handle\":\"idle\"");
  return 0;
}
