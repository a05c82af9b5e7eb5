/* A program that never uses libuv: the preloaded agent must change nothing. */
#include <stdio.h>
int main(void) {
  printf("no libuv here\n");
  return 3;
}
