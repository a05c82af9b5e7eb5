/* fs_read: sequential file read through libuv's async fs on the thread pool.
 * uv_fs_open, then uv_fs_read of one chunk at a time at the running offset into one
 * malloc'd buffer (each read a pool round trip with a callback), until a read returns
 * 0 (EOF), then uv_fs_close. Checks the byte count (n chunks) and the checksum: the
 * wrapping sum of the bytes at file offsets divisible by 64, as every peer computes it. */
#include <fcntl.h>

#include "peer.h"

#define SAMPLE_STRIDE 64

static uv_fs_t open_req;
static uv_fs_t read_req;
static uv_fs_t close_req;
static uv_buf_t iov;
static uv_file file;
static uint64_t offset;
static uint64_t sum;
static uint64_t reads;
static int closed;

static void on_read(uv_fs_t* req);

static void read_next(uv_loop_t* loop) {
  CHECK_UV(uv_fs_read(loop, &read_req, file, &iov, 1, (int64_t) offset, on_read));
}

static void on_close(uv_fs_t* req) {
  CHECK_UV((int) req->result);
  uv_fs_req_cleanup(req);
  closed = 1;
}

static void on_read(uv_fs_t* req) {
  ssize_t got = req->result;
  uint64_t i;
  CHECK(got >= 0);
  uv_fs_req_cleanup(req);
  reads++;
  if (got == 0) {
    CHECK_UV(uv_fs_close(req->loop, &close_req, file, on_close));
    return;
  }
  for (i = (SAMPLE_STRIDE - offset % SAMPLE_STRIDE) % SAMPLE_STRIDE; i < (uint64_t) got;
       i += SAMPLE_STRIDE)
    sum += (unsigned char) iov.base[i];
  offset += (uint64_t) got;
  read_next(req->loop);
}

static void on_open(uv_fs_t* req) {
  CHECK(req->result >= 0);
  file = (uv_file) req->result;
  uv_fs_req_cleanup(req);
  read_next(req->loop);
}

int scenario_fs_read(const peer_args* args) {
  uv_loop_t* loop = uv_default_loop();
  uint64_t time;
  char extra[160];

  CHECK(args->file != NULL);
  CHECK(args->has_sum);
  iov = uv_buf_init(malloc(args->chunk), (unsigned) args->chunk);
  CHECK(iov.base != NULL);

  time = uv_hrtime();
  CHECK_UV(uv_fs_open(loop, &open_req, args->file, O_RDONLY, 0, on_open));
  CHECK_UV(uv_run(loop, UV_RUN_DEFAULT));
  time = uv_hrtime() - time;

  CHECK(closed);
  if (offset != args->n * args->chunk || sum != args->sum) {
    fprintf(stderr, "libuv-peer: fs_read: read %llu of %llu bytes, checksum %llu, expected %llu\n",
            (unsigned long long) offset, (unsigned long long) (args->n * args->chunk),
            (unsigned long long) sum, (unsigned long long) args->sum);
    exit(2);
  }
  free(iov.base);
  snprintf(extra, sizeof(extra),
           "\"bytes\":%llu,\"reads\":%llu,\"chunk\":%llu,\"threadpool_size\":\"%s\"",
           (unsigned long long) offset, (unsigned long long) reads,
           (unsigned long long) args->chunk,
           getenv("UV_THREADPOOL_SIZE") ? getenv("UV_THREADPOOL_SIZE") : "default");
  emit_result("fs_read", args->n, time / 1e9, extra);
  return 0;
}
