/* Two event loops, each run by its own thread (as a server with a loop per core does): a
 * quiet one with a 20 ms timer, and one whose 100 ms timer blocks it for 800 ms every 5th
 * time. The agent attaches both, each with its own `loop` label. */
#include <pthread.h>
#include <stdio.h>
#include <uv.h>

#include "block.h"

static void on_quiet(uv_timer_t *timer) { (void)timer; }

static int ticks;

static void on_busy(uv_timer_t *timer) {
  (void)timer;
  if (++ticks % 5 == 0) block_in_timer_callback();
}

static void *run(void *arg) {
  uv_loop_t loop;
  uv_timer_t timer;
  int busy = arg != NULL;
  uv_loop_init(&loop);
  uv_timer_init(&loop, &timer);
  uv_timer_start(&timer, busy ? on_busy : on_quiet, busy ? 100 : 20, busy ? 100 : 20);
  uv_run(&loop, UV_RUN_DEFAULT);
  return NULL;
}

int main(void) {
  pthread_t quiet, busy;
  pthread_create(&quiet, NULL, run, NULL);
  pthread_create(&busy, NULL, run, (void *)1);
  printf("two loops running\n");
  fflush(stdout);
  pthread_join(quiet, NULL);
  pthread_join(busy, NULL);
  return 0;
}
