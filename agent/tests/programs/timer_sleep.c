/* The classic "uv-timer-sleep-demo": a 100 ms repeating timer whose callback blocks the loop
 * for 800 ms every 5th time, in a function with a name a stack shows. */
#include <stdio.h>
#include <time.h>
#include <uv.h>

#include "block.h"

static int ticks;

static void on_timer(uv_timer_t *timer) {
  (void)timer;
  ticks++;
  printf("on_timer %d\n", ticks);
  fflush(stdout);
  if (ticks % 5 == 0) block_in_timer_callback();
}

int main(void) {
  uv_timer_t timer;
  uv_timer_init(uv_default_loop(), &timer);
  uv_timer_start(&timer, on_timer, 100, 100);
  return uv_run(uv_default_loop(), UV_RUN_DEFAULT);
}
