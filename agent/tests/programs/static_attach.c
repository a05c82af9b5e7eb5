/* libuv linked statically (link with -rdynamic so the agent finds it), the agent attached
 * with one call; a timer that blocks now and then, as timer_sleep.c. */
#include <stdio.h>
#include <time.h>
#include <uv.h>

#include "block.h"

#include "loopd_agent.h"

static int ticks;

static void on_timer(uv_timer_t *timer) {
  (void)timer;
  ticks++;
  if (ticks % 5 == 0) block_in_timer_callback();
}

int main(void) {
  uv_loop_t *loop = uv_default_loop();
  uv_timer_t timer;
  uv_timer_init(loop, &timer);
  uv_timer_start(&timer, on_timer, 100, 100);
  if (loopd_agent_attach(loop) != 0) {
    fprintf(stderr, "loopd_agent_attach failed\n");
    return 1;
  }
  printf("attached\n");
  fflush(stdout);
  return uv_run(loop, UV_RUN_DEFAULT);
}
