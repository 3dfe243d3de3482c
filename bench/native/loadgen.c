/*
 * loadgen.c - native epoll load generator for the echo benchmark suite.
 *
 * It judges echo servers with a client that is faster than any of them, so the ratio between two
 * servers does not depend on the speed of our own (Deno) client. Single-threaded, level-triggered.
 *
 *   loadgen --host 127.0.0.1 --port N --proto tcp|udp --mode rr|stream --connections N
 *           --size BYTES --pipeline K --duration SECONDS [--warmup SECONDS] [--timeout-ms MS]
 *           [--busy-poll 0|1]
 *
 * tcp rr:     every connection keeps K messages of SIZE bytes in flight; a request counts when its
 *             last byte has come back. Latency runs from the moment the message's first byte was
 *             written to the moment its last byte was read.
 * tcp stream: every connection keeps a window of K * SIZE bytes in flight; report echoed MB/s.
 *             (Latency is still recorded per SIZE-byte chunk.)
 * udp rr:     N connected sockets, each with K datagrams in flight; an 8-byte sequence number leads
 *             the payload. A datagram not answered within --timeout-ms (default 200) counts as lost
 *             and is replaced by a new one, so the pipeline stays full. Replies that arrive after
 *             that are counted as late and otherwise ignored.
 *
 * Every echoed byte is checked against what was sent; a request whose bytes differ is a mismatch.
 * Nothing is counted during the warm-up (default 0 s). MB/s is 10^6 bytes of echoed payload per
 * second, one direction. The run ends by itself after warm-up + duration seconds.
 *
 * Output: one JSON line on stdout:
 *   {"requests","seconds","rps","mbps","errors","mismatches","lost","p50_us","p90_us","p99_us",
 *    "p999_us","max_us","connections_served", ...extra: "connected","late","bytes",
 *    "min_conn_requests","max_conn_requests","cpu_s","connect_ms"}
 * connections_served: connections that completed at least one request in the measured window.
 * connect_ms: milliseconds from start until the last TCP connection was established (a server
 * whose accept queue overflowed shows about 1,000 here: the client's SYN retransmission).
 * cpu_s: CPU seconds (user + system) this generator used over the whole run, warm-up included.
 * --busy-poll 1 makes the generator spin (epoll_wait with no wait) instead of sleeping, so its CPU
 * never has to be woken; use it only when the generator has a CPU of its own.
 *
 * Build: cc -O2 -o loadgen loadgen.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define PERIOD 251             /* the payload pattern repeats every PERIOD bytes (a prime) */
#define CHUNK (256 * 1024)     /* most bytes written or read per call */
#define UDP_MAX 65507
#define MAX_EVENTS 512

enum { ST_CONNECTING, ST_OPEN, ST_DEAD };

typedef struct {
  uint64_t seq;
  uint64_t sent_ns;
  int active;  /* awaiting a reply */
  int pending; /* could not be sent yet (EAGAIN) */
} slot_t;

typedef struct {
  int fd;
  int state;
  int want_out;
  int bad_cur;       /* the message being received has a mismatch */
  uint64_t send_off; /* TCP: bytes written */
  uint64_t recv_off; /* TCP: bytes read back */
  uint64_t msgs_done;
  uint64_t measured; /* requests completed in the measured window */
  uint64_t *ts;      /* TCP: ring of send times, indexed by message number */
  slot_t *slots;     /* UDP: K datagrams in flight */
  uint64_t next_seq;
  int pending_count;
} conn_t;

/* Options. */
static const char *opt_host = "127.0.0.1";
static int opt_port = -1;
static int opt_udp = 0;
static int opt_stream = 0;
static long opt_conns = 1;
static long opt_size = 64;
static long opt_pipeline = 1;
static double opt_duration = 5;
static double opt_warmup = 0;
static long opt_timeout_ms = 200;
static int opt_busy_poll = 0;

/* State. */
static int epfd;
static unsigned char *patbuf; /* PERIOD + CHUNK bytes of the pattern */
static unsigned char *rbuf;
static unsigned char *sbuf;
static long ring;
static int measuring = 0;
static uint64_t now_ns;

/* Results. */
static uint64_t n_requests, n_bytes, n_errors, n_mismatches, n_lost, n_late, max_ns;
static long n_connected;
static uint64_t t_start, last_connect_ns; /* when the last connection was established */

/* Log-bucketed histogram of nanoseconds: exact below 128, then 64 sub-buckets per power of two
 * (relative error under 1.6 %), constant memory. */
#define HIST_SIZE (128 + 57 * 64)
static uint64_t hist[HIST_SIZE];
static uint64_t hist_total;

static int hist_index(uint64_t v) {
  if (v < 128) return (int)v;
  int e = 63 - __builtin_clzll(v);
  return 128 + (e - 7) * 64 + (int)((v >> (e - 6)) - 64);
}

static double hist_mid(int idx) {
  if (idx < 128) return idx;
  int e = (idx - 128) / 64 + 7;
  uint64_t mant = (uint64_t)((idx - 128) % 64 + 64);
  uint64_t lo = mant << (e - 6), width = (uint64_t)1 << (e - 6);
  return (double)lo + (double)width / 2.0;
}

static void hist_add(uint64_t v) {
  hist[hist_index(v)]++;
  hist_total++;
  if (v > max_ns) max_ns = v;
}

static double hist_pct_us(double p) {
  if (hist_total == 0) return 0;
  uint64_t target = (uint64_t)(p * (double)hist_total + 0.999999);
  if (target < 1) target = 1;
  uint64_t seen = 0;
  for (int i = 0; i < HIST_SIZE; i++) {
    seen += hist[i];
    if (seen >= target) {
      double v = hist_mid(i);
      return (v > (double)max_ns ? (double)max_ns : v) / 1000.0;
    }
  }
  return (double)max_ns / 1000.0;
}

static uint64_t clock_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void usage(const char *why) {
  fprintf(stderr,
          "loadgen: %s\nusage: loadgen --host HOST --port N --proto tcp|udp --mode rr|stream "
          "--connections N --size BYTES --pipeline K --duration SECONDS [--warmup SECONDS] "
          "[--timeout-ms MS] [--busy-poll 0|1]\n",
          why);
  exit(2);
}

static long parse_long(const char *s, const char *flag, long lo, long hi) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == 0 || *end || v < lo || v > hi) {
    fprintf(stderr, "loadgen: %s must be an integer in %ld..%ld, got %s\n", flag, lo, hi, s);
    exit(2);
  }
  return v;
}

static double parse_double(const char *s, const char *flag, double lo, double hi) {
  char *end;
  double v = strtod(s, &end);
  if (*s == 0 || *end || !(v >= lo && v <= hi)) {
    fprintf(stderr, "loadgen: %s must be a number in %g..%g, got %s\n", flag, lo, hi, s);
    exit(2);
  }
  return v;
}

static void parse_args(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 >= argc) usage("every flag takes a value");
    const char *v = argv[++i];
    if (!strcmp(a, "--host")) {
      opt_host = v;
    } else if (!strcmp(a, "--port")) {
      opt_port = (int)parse_long(v, a, 1, 65535);
    } else if (!strcmp(a, "--proto")) {
      if (!strcmp(v, "udp")) opt_udp = 1;
      else if (strcmp(v, "tcp")) usage("--proto must be tcp or udp");
    } else if (!strcmp(a, "--mode")) {
      if (!strcmp(v, "stream")) opt_stream = 1;
      else if (strcmp(v, "rr")) usage("--mode must be rr or stream");
    } else if (!strcmp(a, "--connections")) {
      opt_conns = parse_long(v, a, 1, 60000);
    } else if (!strcmp(a, "--size")) {
      opt_size = parse_long(v, a, 1, 64L * 1024 * 1024);
    } else if (!strcmp(a, "--pipeline")) {
      opt_pipeline = parse_long(v, a, 1, 4096);
    } else if (!strcmp(a, "--duration")) {
      opt_duration = parse_double(v, a, 0.01, 3600);
    } else if (!strcmp(a, "--warmup")) {
      opt_warmup = parse_double(v, a, 0, 3600);
    } else if (!strcmp(a, "--busy-poll")) {
      opt_busy_poll = (int)parse_long(v, a, 0, 1);
    } else if (!strcmp(a, "--timeout-ms")) {
      opt_timeout_ms = parse_long(v, a, 1, 60000);
    } else {
      usage("unknown flag");
    }
  }
  if (opt_port < 0) usage("--port is required");
  if (opt_udp && opt_stream) usage("--mode stream is TCP only");
  if (opt_udp && (opt_size < 8 || opt_size > UDP_MAX)) usage("UDP --size must be 8..65507");
}

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rlim_t want = (rlim_t)opt_conns + 64;
    if (rl.rlim_cur < want) {
      rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
      if (rl.rlim_cur < want && rl.rlim_max != RLIM_INFINITY) {
        rl.rlim_max = want; /* succeeds when privileged */
        rl.rlim_cur = want;
      }
      if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
        fprintf(stderr, "loadgen: cannot raise RLIMIT_NOFILE to %lu: %s\n", (unsigned long)want,
                strerror(errno));
      }
    }
  }
}

static void ep_mod(conn_t *c, uint32_t events, int op) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = events;
  ev.data.ptr = c;
  epoll_ctl(epfd, op, c->fd, &ev);
}

static void kill_conn(conn_t *c) {
  if (c->state == ST_DEAD) return;
  if (c->state == ST_OPEN) n_connected--;
  c->state = ST_DEAD;
  n_errors++;
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  c->fd = -1;
}

static void set_want_out(conn_t *c, int want) {
  if (c->want_out == want) return;
  c->want_out = want;
  ep_mod(c, EPOLLIN | (want ? EPOLLOUT : 0), EPOLL_CTL_MOD);
}

/* ---- TCP ---- */

static uint64_t tcp_target(conn_t *c) {
  uint64_t k = (uint64_t)opt_pipeline, size = (uint64_t)opt_size;
  return opt_stream ? c->recv_off + k * size : (c->msgs_done + k) * size;
}

static void tcp_write(conn_t *c) {
  uint64_t target = tcp_target(c), size = (uint64_t)opt_size;
  while (c->send_off < target) {
    uint64_t n = target - c->send_off;
    if (n > CHUNK) n = CHUNK;
    ssize_t w = send(c->fd, patbuf + c->send_off % PERIOD, (size_t)n, MSG_NOSIGNAL);
    if (w > 0) {
      uint64_t from = c->send_off, to = from + (uint64_t)w;
      uint64_t t = clock_ns();
      for (uint64_t m = (from + size - 1) / size; m * size < to; m++) c->ts[m % ring] = t;
      c->send_off = to;
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      set_want_out(c, 1);
      return;
    } else {
      kill_conn(c);
      return;
    }
  }
  set_want_out(c, 0);
}

static void tcp_read(conn_t *c) {
  ssize_t r = recv(c->fd, rbuf, CHUNK, 0);
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (r <= 0) {
    kill_conn(c); /* the server closed or reset a connection we were still using */
    return;
  }
  if (c->recv_off + (uint64_t)r > c->send_off) {
    if (measuring) n_mismatches++; /* more bytes came back than were sent */
    kill_conn(c);
    return;
  }
  if (measuring) n_bytes += (uint64_t)r;
  uint64_t size = (uint64_t)opt_size;
  size_t p = 0;
  uint64_t t = 0;
  while (p < (size_t)r) {
    uint64_t m = c->recv_off / size, end = (m + 1) * size;
    size_t seg = (size_t)r - p;
    if ((uint64_t)seg > end - c->recv_off) seg = (size_t)(end - c->recv_off);
    if (memcmp(rbuf + p, patbuf + c->recv_off % PERIOD, seg) != 0) c->bad_cur = 1;
    c->recv_off += seg;
    p += seg;
    if (c->recv_off == end) {
      if (measuring) {
        if (!t) t = clock_ns();
        hist_add(t - c->ts[m % ring]);
        n_requests++;
        c->measured++;
        if (c->bad_cur) n_mismatches++;
      }
      c->bad_cur = 0;
      c->msgs_done++;
    }
  }
  tcp_write(c);
}

static void tcp_event(conn_t *c, uint32_t ev) {
  if (c->state == ST_CONNECTING) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
      kill_conn(c);
      return;
    }
    if (!(ev & EPOLLOUT)) return;
    c->state = ST_OPEN;
    n_connected++;
    last_connect_ns = clock_ns() - t_start;
    c->want_out = 1; /* registered with EPOLLOUT while connecting */
    tcp_write(c);
    return;
  }
  if (ev & EPOLLIN) tcp_read(c);
  if (c->state == ST_OPEN && (ev & EPOLLOUT)) tcp_write(c);
  if (c->state == ST_OPEN && (ev & (EPOLLERR | EPOLLHUP)) && !(ev & EPOLLIN)) kill_conn(c);
}

/* ---- UDP ---- */

static void udp_send_slot(conn_t *c, slot_t *s) {
  uint64_t seq = c->next_seq++;
  s->seq = seq;
  s->active = 1;
  s->sent_ns = clock_ns();
  memcpy(sbuf, patbuf + seq % PERIOD, (size_t)opt_size);
  memcpy(sbuf, &seq, 8);
  ssize_t w = send(c->fd, sbuf, (size_t)opt_size, MSG_NOSIGNAL);
  if (w == (ssize_t)opt_size) {
    if (s->pending) {
      s->pending = 0;
      c->pending_count--;
    }
    return;
  }
  if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS || errno == EINTR)) {
    if (!s->pending) {
      s->pending = 1;
      c->pending_count++;
    }
    set_want_out(c, 1);
    return;
  }
  /* ECONNREFUSED and the like: the slot stays active and will time out. */
  if (measuring) n_errors++;
  if (s->pending) {
    s->pending = 0;
    c->pending_count--;
  }
}

static void udp_flush_pending(conn_t *c) {
  for (long i = 0; i < opt_pipeline && c->pending_count > 0; i++) {
    if (c->slots[i].pending) udp_send_slot(c, &c->slots[i]);
    if (c->slots[i].pending) return;
  }
  if (c->pending_count == 0) set_want_out(c, 0);
}

static void udp_event(conn_t *c, uint32_t ev) {
  if (ev & EPOLLOUT) udp_flush_pending(c);
  if (!(ev & (EPOLLIN | EPOLLERR))) return;
  for (int burst = 0; burst < 64; burst++) {
    ssize_t r = recv(c->fd, rbuf, UDP_MAX + 1, 0);
    if (r < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && measuring) n_errors++;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      continue; /* e.g. ECONNREFUSED from an ICMP error: read on */
    }
    if (r < 8) {
      if (measuring) n_mismatches++;
      continue;
    }
    uint64_t seq;
    memcpy(&seq, rbuf, 8);
    slot_t *s = NULL;
    for (long i = 0; i < opt_pipeline; i++) {
      if (c->slots[i].active && !c->slots[i].pending && c->slots[i].seq == seq) {
        s = &c->slots[i];
        break;
      }
    }
    if (!s) {
      if (measuring) n_late++; /* answered after its time-out, or a duplicate */
      continue;
    }
    if (measuring) {
      uint64_t t = clock_ns();
      hist_add(t - s->sent_ns);
      n_requests++;
      n_bytes += (uint64_t)r;
      c->measured++;
      if (r != opt_size || memcmp(rbuf + 8, patbuf + seq % PERIOD + 8, (size_t)opt_size - 8) != 0) {
        n_mismatches++;
      }
    }
    c->msgs_done++;
    udp_send_slot(c, s);
  }
}

static void udp_check_timeouts(conn_t *cs, uint64_t now) {
  uint64_t limit = (uint64_t)opt_timeout_ms * 1000000ull;
  for (long j = 0; j < opt_conns; j++) {
    conn_t *c = &cs[j];
    if (c->state != ST_OPEN) continue;
    for (long i = 0; i < opt_pipeline; i++) {
      slot_t *s = &c->slots[i];
      if (s->active && !s->pending && now - s->sent_ns > limit) {
        if (measuring) n_lost++;
        udp_send_slot(c, s);
      }
    }
  }
}

/* ---- main ---- */

static void put_json(double seconds, conn_t *cs) {
  long served = 0;
  uint64_t mn = UINT64_MAX, mx = 0;
  for (long i = 0; i < opt_conns; i++) {
    if (cs[i].measured > 0) served++;
    if (cs[i].measured < mn) mn = cs[i].measured;
    if (cs[i].measured > mx) mx = cs[i].measured;
  }
  if (seconds <= 0) seconds = 1e-9;
  struct rusage ru;
  double cpu_s = 0;
  if (getrusage(RUSAGE_SELF, &ru) == 0) {
    cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
            (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
  }
  printf("{\"requests\":%llu,\"seconds\":%.3f,\"rps\":%.1f,\"mbps\":%.3f,\"errors\":%llu,"
         "\"mismatches\":%llu,\"lost\":%llu,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,"
         "\"p999_us\":%.1f,\"max_us\":%.1f,\"connections_served\":%ld,\"connected\":%ld,"
         "\"late\":%llu,\"bytes\":%llu,\"min_conn_requests\":%llu,\"max_conn_requests\":%llu,"
         "\"cpu_s\":%.3f,\"connect_ms\":%.1f}\n",
         (unsigned long long)n_requests, seconds, (double)n_requests / seconds,
         (double)n_bytes / seconds / 1e6, (unsigned long long)n_errors,
         (unsigned long long)n_mismatches, (unsigned long long)n_lost, hist_pct_us(0.50),
         hist_pct_us(0.90), hist_pct_us(0.99), hist_pct_us(0.999), (double)max_ns / 1000.0, served,
         n_connected, (unsigned long long)n_late, (unsigned long long)n_bytes,
         (unsigned long long)mn, (unsigned long long)mx, cpu_s, (double)last_connect_ns / 1e6);
  fflush(stdout);
}

int main(int argc, char **argv) {
  parse_args(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  raise_nofile();

  struct addrinfo hints, *ai = NULL;
  char portstr[16];
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  hints.ai_socktype = opt_udp ? SOCK_DGRAM : SOCK_STREAM;
  snprintf(portstr, sizeof portstr, "%d", opt_port);
  if (getaddrinfo(opt_host, portstr, &hints, &ai) != 0 || !ai) {
    fprintf(stderr, "loadgen: --host must be a numeric address, got %s\n", opt_host);
    return 2;
  }

  ring = opt_pipeline + 2;
  patbuf = malloc(PERIOD + CHUNK + UDP_MAX + 8);
  rbuf = malloc(CHUNK > UDP_MAX + 1 ? CHUNK : UDP_MAX + 1);
  sbuf = malloc(UDP_MAX + 8);
  conn_t *cs = calloc((size_t)opt_conns, sizeof *cs);
  if (!patbuf || !rbuf || !sbuf || !cs) {
    fprintf(stderr, "loadgen: out of memory\n");
    return 1;
  }
  for (size_t i = 0; i < PERIOD + CHUNK + UDP_MAX + 8; i++) {
    patbuf[i] = (unsigned char)(((i % PERIOD) * 7 + 3) & 0xff);
  }

  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) {
    perror("loadgen: epoll_create1");
    return 1;
  }

  uint64_t t0 = clock_ns();
  t_start = t0;
  uint64_t warm_end = t0 + (uint64_t)(opt_warmup * 1e9);
  uint64_t end = warm_end + (uint64_t)(opt_duration * 1e9);

  for (long i = 0; i < opt_conns; i++) {
    conn_t *c = &cs[i];
    c->state = ST_DEAD;
    c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
      n_errors++;
      continue;
    }
    if (opt_udp) {
      int big = 1024 * 1024;
      setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
      c->slots = calloc((size_t)opt_pipeline, sizeof *c->slots);
      if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        close(c->fd);
        n_errors++;
        continue;
      }
      c->state = ST_OPEN;
      n_connected++;
      ep_mod(c, EPOLLIN, EPOLL_CTL_ADD);
      for (long k = 0; k < opt_pipeline; k++) udp_send_slot(c, &c->slots[k]);
    } else {
      int one = 1;
      setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      c->ts = calloc((size_t)ring, sizeof *c->ts);
      int rc = connect(c->fd, ai->ai_addr, ai->ai_addrlen);
      if (rc < 0 && errno != EINPROGRESS) {
        close(c->fd);
        n_errors++;
        continue;
      }
      c->state = ST_CONNECTING;
      ep_mod(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_ADD);
    }
  }
  freeaddrinfo(ai);

  if (opt_warmup <= 0) measuring = 1;
  uint64_t start = measuring ? t0 : 0, last_scan = t0;
  struct epoll_event evs[MAX_EVENTS];
  for (;;) {
    now_ns = clock_ns();
    if (!measuring && now_ns >= warm_end) {
      /* Drop what the warm-up counted; the measured window starts now. */
      measuring = 1;
      start = now_ns;
      n_requests = n_bytes = n_mismatches = n_lost = n_late = max_ns = hist_total = 0;
      memset(hist, 0, sizeof hist);
      for (long i = 0; i < opt_conns; i++) cs[i].measured = 0;
    }
    if (now_ns >= end) break;
    if (opt_udp && now_ns - last_scan >= 5000000ull) {
      udp_check_timeouts(cs, now_ns);
      last_scan = now_ns;
    }
    uint64_t next = measuring ? end : warm_end;
    long wait_ms = (long)((next - now_ns) / 1000000ull) + 1;
    if (opt_udp && wait_ms > 5) wait_ms = 5;
    if (wait_ms > 100) wait_ms = 100;
    if (opt_busy_poll) wait_ms = 0; /* spin: this CPU never sleeps, so it never needs waking */
    int n = epoll_wait(epfd, evs, MAX_EVENTS, (int)wait_ms);
    if (n < 0 && errno != EINTR) {
      perror("loadgen: epoll_wait");
      break;
    }
    for (int i = 0; i < n; i++) {
      conn_t *c = evs[i].data.ptr;
      if (c->state == ST_DEAD) continue;
      if (opt_udp) udp_event(c, evs[i].events);
      else tcp_event(c, evs[i].events);
    }
  }
  now_ns = clock_ns();
  /* Connections that never finished connecting count as errors. */
  for (long i = 0; i < opt_conns; i++) {
    if (cs[i].state == ST_CONNECTING) n_errors++;
  }
  put_json((double)(now_ns - start) / 1e9, cs);
  for (long i = 0; i < opt_conns; i++) {
    if (cs[i].fd >= 0 && cs[i].state != ST_DEAD) close(cs[i].fd);
  }
  return 0;
}
