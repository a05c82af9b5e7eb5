/* echo: the server side of the network scenarios (pingpong, pingpong100, pound,
 * pump, idle_memory), shaped like libuv's own test/echo-server.c: uv_tcp listener
 * on 127.0.0.1:0, uv_read_start with a malloc'd buffer per read, one uv_write
 * request per read that frees both when done (uv_write writes at once what the
 * socket takes and queues the rest in order). Under bulk load (pump) it applies
 * the same backpressure as loopd's peer and services: once the write queue is
 * above HIGH_WATER bytes reads stop, and they resume when it has drained (the
 * flag is the handle's data pointer). Prints the port on stdout (first line), serves
 * `conns` connections, closes the listener after the last accept and returns
 * when every connection has closed. The client (in the harness) measures. */
#include <string.h>

#include "peer.h"

typedef struct {
  uv_write_t req;
  uv_buf_t buf;
} write_req_t;

/* loopd's services' high-water mark (loopd::services::flow::HIGH_WATER). */
#define HIGH_WATER (256 * 1024)
#define PAUSED ((void*) 1)

static uv_tcp_t server;
static uint64_t conns_wanted;
static uint64_t accepted;
static uint64_t closed;

static void alloc_cb(uv_handle_t* handle, size_t suggested_size, uv_buf_t* buf) {
  (void) handle;
  buf->base = malloc(suggested_size);
  buf->len = suggested_size;
}

static void on_close(uv_handle_t* handle) {
  closed++;
  free(handle);
}

static void after_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);

static void after_write(uv_write_t* req, int status) {
  write_req_t* wr = (write_req_t*) req;
  uv_stream_t* stream = req->handle;
  free(wr->buf.base);
  free(wr);
  (void) status; /* a failed write shows up as a read error and closes */
  if (stream->data == PAUSED && stream->write_queue_size == 0 &&
      !uv_is_closing((uv_handle_t*) stream)) {
    stream->data = NULL;
    if (uv_read_start(stream, alloc_cb, after_read) != 0)
      uv_close((uv_handle_t*) stream, on_close);
  }
}

static void after_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  write_req_t* wr;
  if (nread < 0) {
    free(buf->base);
    uv_close((uv_handle_t*) stream, on_close);
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
    uv_close((uv_handle_t*) stream, on_close);
    return;
  }
  if (stream->write_queue_size > HIGH_WATER) {
    uv_read_stop(stream);
    stream->data = PAUSED;
  }
}

static void on_connection(uv_stream_t* listener, int status) {
  uv_tcp_t* client;
  CHECK_UV(status);
  client = malloc(sizeof *client);
  CHECK(client != NULL);
  CHECK_UV(uv_tcp_init(listener->loop, client));
  client->data = NULL;
  CHECK_UV(uv_accept(listener, (uv_stream_t*) client));
  CHECK_UV(uv_read_start((uv_stream_t*) client, alloc_cb, after_read));
  if (++accepted == conns_wanted) uv_close((uv_handle_t*) listener, NULL);
}

int scenario_echo(const peer_args* args) {
  struct sockaddr_in addr;
  struct sockaddr_storage name;
  int namelen = sizeof name;
  uv_loop_t* loop = uv_default_loop();

  conns_wanted = args->conns;
  CHECK_UV(uv_ip4_addr("127.0.0.1", 0, &addr));
  CHECK_UV(uv_tcp_init(loop, &server));
  CHECK_UV(uv_tcp_bind(&server, (const struct sockaddr*) &addr, 0));
  CHECK_UV(uv_listen((uv_stream_t*) &server, 1024, on_connection));
  CHECK_UV(uv_tcp_getsockname(&server, (struct sockaddr*) &name, &namelen));
  printf("%d\n", ntohs(((struct sockaddr_in*) &name)->sin_port));
  fflush(stdout);
  CHECK_UV(uv_run(loop, UV_RUN_DEFAULT));
  CHECK(accepted == conns_wanted);
  CHECK(closed == conns_wanted);
  printf("{\"accepted\":%llu}\n", (unsigned long long) accepted);
  return 0;
}
