/* echo_server: the half of the echo peers (echo.c, echo_reuse.c) that does not depend
 * on how a connection reads and writes, so that the two differ in that only: a uv_tcp
 * listener on 127.0.0.1:0, the port printed on stdout (first line), `conns`
 * connections accepted and started reading with the peer's callbacks, the listener
 * closed after the last accept; returns when every connection has closed, after
 * printing {"accepted":N}. A connection's data pointer starts NULL (the peers keep
 * their pause flag there). */
#include "peer.h"

static uv_tcp_t server;
static uint64_t conns_wanted;
static uint64_t accepted;
static uint64_t closed;
static uv_alloc_cb conn_alloc_cb;
static uv_read_cb conn_read_cb;

static void on_close(uv_handle_t* handle) {
  closed++;
  free(handle);
}

void echo_close(uv_stream_t* stream) {
  uv_close((uv_handle_t*) stream, on_close);
}

static void on_connection(uv_stream_t* listener, int status) {
  uv_tcp_t* client;
  CHECK_UV(status);
  client = malloc(sizeof *client);
  CHECK(client != NULL);
  CHECK_UV(uv_tcp_init(listener->loop, client));
  client->data = NULL;
  CHECK_UV(uv_accept(listener, (uv_stream_t*) client));
  CHECK_UV(uv_read_start((uv_stream_t*) client, conn_alloc_cb, conn_read_cb));
  if (++accepted == conns_wanted) uv_close((uv_handle_t*) listener, NULL);
}

int echo_serve(const peer_args* args, uv_alloc_cb alloc_cb, uv_read_cb read_cb) {
  struct sockaddr_in addr;
  struct sockaddr_storage name;
  int namelen = sizeof name;
  uv_loop_t* loop = uv_default_loop();

  conns_wanted = args->conns;
  conn_alloc_cb = alloc_cb;
  conn_read_cb = read_cb;
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
