/* libuv-peer SCENARIO [--n N] [--inflight K] [--conns C] [--chunk B --file PATH --sum S]:
 * the libuv side of loopd-bench. */
#include <string.h>

#include "peer.h"

void emit_result(const char* scenario, uint64_t ops, double seconds,
                 const char* extra_json) {
  printf("{\"scenario\":\"%s\",\"peer\":\"libuv\",\"ops\":%llu,\"seconds\":%.9f,"
         "\"extra\":{\"libuv_version\":\"%s\"%s%s}}\n",
         scenario, (unsigned long long) ops, seconds, uv_version_string(),
         extra_json[0] != '\0' ? "," : "", extra_json);
  fflush(stdout);
}

typedef struct {
  const char* name;
  int (*run)(const peer_args* args);
} scenario;

static const scenario scenarios[] = {
    {"timers", scenario_timers},
    {"async1", scenario_async1},
    {"queue_work", scenario_queue_work},
    {"echo", scenario_echo},
    {"echo_reuse", scenario_echo_reuse},
    {"loop_count", scenario_loop_count},
    {"fs_read", scenario_fs_read},
};

static int usage(void) {
  size_t i;
  fprintf(stderr,
          "usage: libuv-peer SCENARIO [--n N] [--inflight K] [--conns C] [--chunk B --file PATH "
          "--sum S]\nscenarios:");
  for (i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
    fprintf(stderr, " %s", scenarios[i].name);
  fprintf(stderr, "\n");
  return 64;
}

int main(int argc, char** argv) {
  peer_args args = {0, 1, 1, 65536, NULL, 0, 0};
  size_t i;
  int a;
  char* end;

  if (argc < 2) return usage();
  for (a = 2; a < argc; a++) {
    uint64_t* slot;
    if (strcmp(argv[a], "--file") == 0) {
      if (++a == argc) return usage();
      args.file = argv[a];
      continue;
    }
    if (strcmp(argv[a], "--sum") == 0) {
      if (++a == argc) return usage();
      args.sum = strtoull(argv[a], &end, 10);
      if (*end != '\0' || argv[a][0] == '\0') return usage();
      args.has_sum = 1;
      continue;
    }
    if (strcmp(argv[a], "--n") == 0)
      slot = &args.n;
    else if (strcmp(argv[a], "--inflight") == 0)
      slot = &args.inflight;
    else if (strcmp(argv[a], "--conns") == 0)
      slot = &args.conns;
    else if (strcmp(argv[a], "--chunk") == 0)
      slot = &args.chunk;
    else {
      fprintf(stderr, "libuv-peer: unknown argument %s\n", argv[a]);
      return usage();
    }
    if (++a == argc) return usage();
    *slot = strtoull(argv[a], &end, 10);
    if (*end != '\0' || *slot == 0) {
      fprintf(stderr, "libuv-peer: bad number %s\n", argv[a]);
      return usage();
    }
  }
  if (args.n == 0) {
    fprintf(stderr, "libuv-peer: --n is required\n");
    return usage();
  }
  for (i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
    if (strcmp(argv[1], scenarios[i].name) == 0) return scenarios[i].run(&args);
  fprintf(stderr, "libuv-peer: unknown scenario %s\n", argv[1]);
  return usage();
}
