/* The classic "uv-timer-sleep-demo": a 100 ms repeating timer whose callback blocks the loop
 * for 800 ms every 5th time, in a function with a name a stack shows. */
#include <stdio.h>
#include <time.h>
#include <uv.h>

static int ticks;

__attribute__((noinline)) void block_in_timer_callback(void) {
  struct timespec left = {0, 800 * 1000 * 1000};
  /* Restarted after a signal (the agent's stack samples interrupt the sleep). */
  while (nanosleep(&left, &left) != 0) {
  }
}

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
