/* async1: libuv's benchmark-async.c with one thread: a ping-pong of uv_async_send
 * between the main loop and a loop on a second thread, n round trips. */
#include "peer.h"

typedef struct {
  uint64_t n;
  uv_loop_t loop; /* the worker thread's loop */
  uv_thread_t thread;
  uv_async_t main_async;   /* wakes the main thread */
  uv_async_t worker_async; /* wakes the worker */
  uint64_t main_sent;
  uint64_t main_seen;
  uint64_t worker_sent;
  uint64_t worker_seen;
} ctx_t;

static void worker_async_cb(uv_async_t* handle) {
  ctx_t* ctx = handle->data;
  CHECK_UV(uv_async_send(&ctx->main_async));
  ctx->worker_sent++;
  ctx->worker_seen++;
  if (ctx->worker_sent >= ctx->n) uv_close((uv_handle_t*) &ctx->worker_async, NULL);
}

static void main_async_cb(uv_async_t* handle) {
  ctx_t* ctx = handle->data;
  CHECK_UV(uv_async_send(&ctx->worker_async));
  ctx->main_sent++;
  ctx->main_seen++;
  if (ctx->main_sent >= ctx->n) uv_close((uv_handle_t*) &ctx->main_async, NULL);
}

static void worker(void* arg) {
  ctx_t* ctx = arg;
  CHECK_UV(uv_async_send(&ctx->main_async));
  CHECK_UV(uv_run(&ctx->loop, UV_RUN_DEFAULT));
  uv_loop_close(&ctx->loop);
}

int scenario_async1(const peer_args* args) {
  static ctx_t ctx;
  uint64_t time;

  ctx.n = args->n;
  CHECK_UV(uv_loop_init(&ctx.loop));
  CHECK_UV(uv_async_init(&ctx.loop, &ctx.worker_async, worker_async_cb));
  ctx.worker_async.data = &ctx;
  CHECK_UV(uv_async_init(uv_default_loop(), &ctx.main_async, main_async_cb));
  ctx.main_async.data = &ctx;
  CHECK_UV(uv_thread_create(&ctx.thread, worker, &ctx));

  time = uv_hrtime();
  CHECK_UV(uv_run(uv_default_loop(), UV_RUN_DEFAULT));
  CHECK_UV(uv_thread_join(&ctx.thread));
  time = uv_hrtime() - time;

  CHECK(ctx.worker_sent == ctx.n);
  CHECK(ctx.worker_seen == ctx.n);
  CHECK(ctx.main_sent == ctx.n);
  CHECK(ctx.main_seen == ctx.n);
  emit_result("async1", ctx.n, time / 1e9, "");
  return 0;
}
