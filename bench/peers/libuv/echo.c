/* echo: the server side of the network scenarios (pingpong, pingpong100, pound,
 * pump, idle_memory), shaped like libuv's own test/echo-server.c: uv_read_start
 * with a malloc'd buffer per read, one uv_write request per read that frees both
 * when done (uv_write writes at once what the socket takes and queues the rest in
 * order). Under bulk load (pump) it applies the same backpressure as loopd's peer
 * and services: once the write queue is above HIGH_WATER bytes reads stop, and they
 * resume when it has drained (the flag is the handle's data pointer). The listener,
 * the port on stdout, `conns` connections and the exit are echo_server.c's. The
 * client (in the harness) measures. echo_reuse.c is the same server written as a
 * tuned libuv program would be. */
#include "peer.h"

typedef struct {
  uv_write_t req;
  uv_buf_t buf;
} write_req_t;

static void alloc_cb(uv_handle_t* handle, size_t suggested_size, uv_buf_t* buf) {
  (void) handle;
  buf->base = malloc(suggested_size);
  buf->len = suggested_size;
}

static void after_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);

static void after_write(uv_write_t* req, int status) {
  write_req_t* wr = (write_req_t*) req;
  uv_stream_t* stream = req->handle;
  free(wr->buf.base);
  free(wr);
  (void) status; /* a failed write shows up as a read error and closes */
  if (stream->data == ECHO_PAUSED && stream->write_queue_size == 0 &&
      !uv_is_closing((uv_handle_t*) stream)) {
    stream->data = NULL;
    if (uv_read_start(stream, alloc_cb, after_read) != 0) echo_close(stream);
  }
}

static void after_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  write_req_t* wr;
  if (nread < 0) {
    free(buf->base);
    echo_close(stream);
    return;
  }
  if (nread == 0) {
    free(buf->base);
    return;
  }
  wr = malloc(sizeof *wr);
  CHECK(wr != NULL);
  wr->buf = uv_buf_init(buf->base, (unsigned) nread);
  if (uv_write(&wr->req, stream, &wr->buf, 1, after_write) != 0) {
    free(wr->buf.base);
    free(wr);
    echo_close(stream);
    return;
  }
  if (stream->write_queue_size > ECHO_HIGH_WATER) {
    uv_read_stop(stream);
    stream->data = ECHO_PAUSED;
  }
}

int scenario_echo(const peer_args* args) {
  return echo_serve(args, alloc_cb, after_read);
}
