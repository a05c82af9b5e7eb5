/* The blocking callback body of the timer programs: a named function a stack shows. */
#include <time.h>

__attribute__((noinline)) void block_in_timer_callback(void) {
  struct timespec left = {0, 800 * 1000 * 1000};
  /* Restarted after a signal (the agent's stack samples interrupt the sleep). */
  while (nanosleep(&left, &left) != 0) {
  }
}
