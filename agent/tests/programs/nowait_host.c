/* A host that drives its loop itself: uv_run(UV_RUN_NOWAIT) from its own main loop, with
 * 300 ms of its own work between the runs (a game or GUI loop does this). That work is not a
 * callback of the loop: the agent must not call it a stall. A 10 ms timer keeps the loop busy
 * with attributed callbacks, the last of which ends right before uv_run returns. */
#include <stdio.h>
#include <time.h>
#include <uv.h>

static int ticks;

static void on_timer(uv_timer_t *timer) {
  (void)timer;
  ticks++;
}

__attribute__((noinline)) static void host_work(void) {
  struct timespec left = {0, 300 * 1000 * 1000};
  while (nanosleep(&left, &left) != 0) {
  }
}

int main(void) {
  uv_timer_t timer;
  uv_timer_init(uv_default_loop(), &timer);
  uv_timer_start(&timer, on_timer, 10, 10);
  for (int round = 1;; round++) {
    uv_run(uv_default_loop(), UV_RUN_NOWAIT);
    printf("round %d ticks %d\n", round, ticks);
    fflush(stdout);
    host_work();
  }
  return 0;
}
