/* A program that forks while its loop is attached: the parent runs its loop a while, forks,
 * and both go on with the same loop (the child after uv_loop_fork), each its own process to
 * observe. The child's timer blocks 800 ms every 25th tick (a stall of the child only) and
 * the child exits with exit(3) once the file argv[1] exists, so its exit handlers run.
 * Prints "forked <child pid>" from the parent. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>
#include <uv.h>

#include "block.h"

static uv_timer_t timer;
static int ticks;
static int is_child;
static const char *exit_file;

static void on_timer(uv_timer_t *t) {
  (void)t;
  ticks++;
  if (!is_child) return;
  if (access(exit_file, F_OK) == 0) exit(0);
  if (ticks % 25 == 0) block_in_timer_callback();
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  exit_file = argv[1];
  uv_loop_t *loop = uv_default_loop();
  uv_timer_init(loop, &timer);
  uv_timer_start(&timer, on_timer, 20, 20);
  /* Attached and served before the fork. */
  while (ticks < 10) uv_run(loop, UV_RUN_ONCE);
  pid_t pid = fork();
  if (pid < 0) return 1;
  if (pid == 0) {
    is_child = 1;
    if (uv_loop_fork(loop) != 0) return 1;
  } else {
    printf("forked %d\n", (int)pid);
    fflush(stdout);
  }
  return uv_run(loop, UV_RUN_DEFAULT);
}
