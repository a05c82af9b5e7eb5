/* The TCP primality server: one number per line, answered `prime` or `composite`.
 * `prime_server PORT --inline` computes in the read callback (blocking the loop);
 * `prime_server PORT` computes on libuv's thread pool with uv_queue_work. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static int inline_mode;

typedef struct {
  uv_tcp_t tcp;
  char line[64];
  size_t len;
} client_t;

typedef struct {
  uv_work_t work;
  client_t *client;
  unsigned long long n;
  int prime;
} job_t;

__attribute__((noinline)) int is_prime_blocking(unsigned long long n) {
  if (n < 2) return 0;
  if (n % 2 == 0) return n == 2;
  for (unsigned long long d = 3; d * d <= n; d += 2)
    if (n % d == 0) return 0;
  return 1;
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  (void)h;
  buf->base = malloc(size);
  buf->len = buf->base ? size : 0;
}

static void on_written(uv_write_t *w, int status) {
  (void)status;
  free(w->data);
  free(w);
}

static void answer(client_t *c, int prime) {
  const char *text = prime ? "prime\n" : "composite\n";
  uv_write_t *w = malloc(sizeof *w);
  char *copy = strdup(text);
  uv_buf_t buf = uv_buf_init(copy, (unsigned)strlen(copy));
  w->data = copy;
  uv_write(w, (uv_stream_t *)&c->tcp, &buf, 1, on_written);
}

static void work(uv_work_t *w) {
  job_t *job = w->data;
  job->prime = is_prime_blocking(job->n);
}

static void after_work(uv_work_t *w, int status) {
  job_t *job = w->data;
  if (status == 0) answer(job->client, job->prime);
  free(job);
}

static void on_closed(uv_handle_t *h) { free(h->data); }

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  client_t *c = s->data;
  for (ssize_t i = 0; i < nread; i++) {
    char ch = buf->base[i];
    if (ch != '\n') {
      if (c->len < sizeof c->line - 1) c->line[c->len++] = ch;
      continue;
    }
    c->line[c->len] = 0;
    unsigned long long n = strtoull(c->line, NULL, 10);
    c->len = 0;
    if (inline_mode) {
      answer(c, is_prime_blocking(n));
    } else {
      job_t *job = calloc(1, sizeof *job);
      job->client = c;
      job->n = n;
      job->work.data = job;
      uv_queue_work(s->loop, &job->work, work, after_work);
    }
  }
  if (nread < 0) uv_close((uv_handle_t *)s, on_closed);
  free(buf->base);
}

static void on_connection(uv_stream_t *server, int status) {
  if (status < 0) return;
  client_t *c = calloc(1, sizeof *c);
  uv_tcp_init(server->loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) == 0)
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  else
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: prime_server PORT [--inline]\n");
    return 2;
  }
  inline_mode = argc > 2 && strcmp(argv[2], "--inline") == 0;
  uv_tcp_t server;
  struct sockaddr_in addr;
  uv_tcp_init(uv_default_loop(), &server);
  uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr);
  if (uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0) != 0 ||
      uv_listen((uv_stream_t *)&server, 128, on_connection) != 0) {
    fprintf(stderr, "cannot listen on %s\n", argv[1]);
    return 1;
  }
  struct sockaddr_storage bound;
  int len = sizeof bound;
  uv_tcp_getsockname(&server, (struct sockaddr *)&bound, &len);
  printf("listening %d\n", ntohs(((struct sockaddr_in *)&bound)->sin_port));
  fflush(stdout);
  return uv_run(uv_default_loop(), UV_RUN_DEFAULT);
}
