/* echo_reuse: the echo server of echo.c written as a tuned libuv program would be,
 * so that "ahead of libuv" is said against libuv at its best, not against the
 * allocation pattern of its test server (64 KiB malloc'd per read, one write
 * request per read), which costs it some 40 % against raw mio on pingpong100 and
 * pump. alloc_cb hands out one static 64 KiB buffer every time: safe, because
 * libuv calls alloc_cb, read(2) and the read callback in turn on the loop thread,
 * and the callback is done with the bytes when it returns. The read callback
 * writes them straight from that buffer with uv_try_write when nothing is queued
 * on the stream (write_queue_size == 0: the usual case, no allocation); only what
 * the kernel does not take is copied, into one malloc'd block holding the request
 * and the bytes, for a uv_write. While writes are queued every read is copied and
 * queued behind them, so the byte order holds. Backpressure as in echo.c: once the
 * write queue is above HIGH_WATER bytes reads stop, and the write callback that
 * leaves it empty restarts them (the flag is the handle's data pointer). The
 * listener, the port on stdout, `conns` connections and the exit are
 * echo_server.c's. The client (in the harness) measures. */
#include <string.h>

#include "peer.h"

/* A queued write: the request and its bytes in one allocation. */
typedef struct {
  uv_write_t req;
  uv_buf_t buf;
  char data[];
} write_req_t;

static char read_buf[64 * 1024];

static void alloc_cb(uv_handle_t* handle, size_t suggested_size, uv_buf_t* buf) {
  (void) handle;
  (void) suggested_size;
  *buf = uv_buf_init(read_buf, sizeof read_buf);
}

static void after_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);

static void after_write(uv_write_t* req, int status) {
  uv_stream_t* stream = req->handle;
  free(req); /* the write_req_t: req is its first member */
  (void) status; /* a failed write shows up as a read error and closes */
  if (stream->data == ECHO_PAUSED && stream->write_queue_size == 0 &&
      !uv_is_closing((uv_handle_t*) stream)) {
    stream->data = NULL;
    if (uv_read_start(stream, alloc_cb, after_read) != 0) echo_close(stream);
  }
}

/* Copies len bytes and queues them behind whatever is queued (uv_write writes at
 * once when nothing is). */
static void queue_copy(uv_stream_t* stream, const char* bytes, size_t len) {
  write_req_t* wr = malloc(sizeof *wr + len);
  CHECK(wr != NULL);
  memcpy(wr->data, bytes, len);
  wr->buf = uv_buf_init(wr->data, (unsigned) len);
  if (uv_write(&wr->req, stream, &wr->buf, 1, after_write) != 0) {
    free(wr);
    echo_close(stream);
    return;
  }
  if (stream->write_queue_size > ECHO_HIGH_WATER) {
    uv_read_stop(stream);
    stream->data = ECHO_PAUSED;
  }
}

static void after_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  size_t sent = 0;
  if (nread < 0) {
    echo_close(stream);
    return;
  }
  if (nread == 0) return;
  if (stream->write_queue_size == 0) {
    uv_buf_t out = uv_buf_init(buf->base, (unsigned) nread);
    int r = uv_try_write(stream, &out, 1);
    if (r == UV_EAGAIN) {
      r = 0; /* the socket takes nothing now: queue it all */
    } else if (r < 0) {
      echo_close(stream);
      return;
    }
    sent = (size_t) r;
    if (sent == (size_t) nread) return;
  }
  queue_copy(stream, buf->base + sent, (size_t) nread - sent);
}

int scenario_echo_reuse(const peer_args* args) {
  return echo_serve(args, alloc_cb, after_read);
}
