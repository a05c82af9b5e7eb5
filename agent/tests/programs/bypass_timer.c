/* A program whose libuv calls do not reach a preloaded agent although the agent's
 * uv_timer_start comes first in the global scope: it starts its timer through a pointer from
 * dlsym on libuv's own handle (as a library bound to its own libuv would), one shot at a
 * time, re-armed through the same pointer (a repeating timer would be re-armed by libuv's
 * uv_timer_again through the global scope, and so reach the agent). The callback blocks
 * 800 ms every 5th time. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "block.h"

typedef int (*timer_start_fn)(uv_timer_t *, uv_timer_cb, uint64_t, uint64_t);

static int ticks;
static timer_start_fn start;

static void on_timer(uv_timer_t *timer) {
  ticks++;
  printf("on_timer %d\n", ticks);
  fflush(stdout);
  if (ticks % 5 == 0) block_in_timer_callback();
  start(timer, on_timer, 100, 0);
}

int main(void) {
  void *libuv = dlopen("libuv.so.1", RTLD_NOW | RTLD_NOLOAD);
  if (libuv == NULL) return 2;
  start = (timer_start_fn)dlsym(libuv, "uv_timer_start");
  if (start == NULL) return 2;
  uv_timer_t timer;
  uv_timer_init(uv_default_loop(), &timer);
  start(&timer, on_timer, 100, 0);
  return uv_run(uv_default_loop(), UV_RUN_DEFAULT);
}
