/*
 * echo_server.c - the native ceiling for the echo benchmark suite.
 *
 * A single-threaded, level-triggered epoll echo server (RFC 862) for TCP and UDP on one host:port.
 *
 *   echo_server --host 127.0.0.1 --port 0 [--tcp] [--udp]
 *
 * With neither --tcp nor --udp both are served. With port 0 the UDP socket binds to the port the
 * kernel gave TCP, so both share one port. When ready it prints, and flushes:
 *
 *   listening tcp HOST:PORT
 *   listening udp HOST:PORT
 *
 * TCP: non-blocking sockets, TCP_NODELAY, every byte echoed in order. Reads go into one shared
 * 256 KiB buffer and are written straight back; when a write is partial the rest is copied into a
 * buffer of the connection's own, reading stops (backpressure) and EPOLLOUT is awaited.
 * UDP: each datagram (up to 65,507 bytes) is sent back as-is to its sender; a datagram that cannot
 * be sent at once (EAGAIN) is dropped, as UDP allows.
 * Exits 0 on SIGTERM or SIGINT.
 *
 * Build: cc -O2 -o echo_server echo_server.c
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
#include <unistd.h>

#define BUF_SIZE (256 * 1024) /* one shared read buffer */
#define UDP_MAX 65507
#define MAX_EVENTS 256

typedef struct {
  int fd;
  size_t off;         /* first unsent byte in buf */
  size_t len;         /* bytes held in buf */
  int want_out;       /* waiting for EPOLLOUT, not reading */
  unsigned char *buf; /* what a partial write left, or NULL */
} conn_t;

static volatile sig_atomic_t stop_flag = 0;
static conn_t **conns = NULL; /* indexed by fd */
static size_t conns_cap = 0;
static int epfd = -1;
static unsigned char *rbuf; /* shared: bytes are written back at once, copied only when blocked */

static void on_signal(int sig) {
  (void)sig;
  stop_flag = 1;
}

static void die(const char *what) {
  fprintf(stderr, "echo_server: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void usage(void) {
  fprintf(stderr, "usage: echo_server --host HOST --port N [--tcp] [--udp]\n");
  exit(2);
}

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static int resolve(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len) {
  struct addrinfo hints, *res = NULL;
  char portstr[16];
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE | AI_NUMERICSERV;
  snprintf(portstr, sizeof portstr, "%d", port);
  if (getaddrinfo(host, portstr, &hints, &res) != 0 || res == NULL) return -1;
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  return 0;
}

static int bound_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) die("getsockname");
  if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void set_port(struct sockaddr_storage *ss, int port) {
  if (ss->ss_family == AF_INET6) {
    ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
  } else {
    ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
  }
}

static int open_socket(struct sockaddr_storage *ss, socklen_t len, int type) {
  int one = 1;
  int fd = socket(ss->ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)ss, len) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

static void ep_set(int fd, uint32_t events, int op) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = events;
  ev.data.fd = fd;
  if (epoll_ctl(epfd, op, fd, &ev) < 0) die("epoll_ctl");
}

static void conn_close(conn_t *c) {
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  conns[c->fd] = NULL;
  free(c->buf);
  free(c);
}

static void accept_all(int lfd) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return; /* EAGAIN, or EMFILE and friends: try again on the next event */
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if ((size_t)fd >= conns_cap) {
      size_t cap = conns_cap ? conns_cap : 1024;
      while (cap <= (size_t)fd) cap *= 2;
      conn_t **n = realloc(conns, cap * sizeof *n);
      if (!n) die("realloc");
      memset(n + conns_cap, 0, (cap - conns_cap) * sizeof *n);
      conns = n;
      conns_cap = cap;
    }
    conn_t *c = calloc(1, sizeof *c);
    if (!c) die("calloc");
    c->fd = fd;
    conns[fd] = c;
    ep_set(fd, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_ADD);
  }
}

/* Write what is buffered. Returns -1 when the connection failed. */
static int flush_conn(conn_t *c) {
  while (c->off < c->len) {
    ssize_t w = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
    if (w > 0) {
      c->off += (size_t)w;
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!c->want_out) {
        c->want_out = 1;
        ep_set(c->fd, EPOLLOUT, EPOLL_CTL_MOD); /* stop reading: backpressure */
      }
      return 0;
    } else {
      return -1;
    }
  }
  free(c->buf);
  c->buf = NULL;
  c->off = c->len = 0;
  if (c->want_out) {
    c->want_out = 0;
    ep_set(c->fd, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
  }
  return 0;
}

static void on_conn(conn_t *c, uint32_t events) {
  if (events & EPOLLOUT) {
    if (flush_conn(c) < 0) {
      conn_close(c);
      return;
    }
    if (c->want_out) return;
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    if (c->want_out) {
      if (events & (EPOLLHUP | EPOLLERR)) conn_close(c);
      return;
    }
    /* Level-triggered: one read per wakeup keeps connections fair. */
    ssize_t r = recv(c->fd, rbuf, BUF_SIZE, 0);
    if (r > 0) {
      size_t done = 0;
      while (done < (size_t)r) {
        ssize_t w = send(c->fd, rbuf + done, (size_t)r - done, MSG_NOSIGNAL);
        if (w > 0) {
          done += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
          continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
          /* Keep the rest, stop reading this connection and wait until it can be written. */
          c->len = (size_t)r - done;
          c->off = 0;
          c->buf = malloc(c->len);
          if (!c->buf) die("malloc");
          memcpy(c->buf, rbuf + done, c->len);
          c->want_out = 1;
          ep_set(c->fd, EPOLLOUT, EPOLL_CTL_MOD);
          return;
        } else {
          conn_close(c);
          return;
        }
      }
    } else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      conn_close(c);
    }
  }
}

static void on_udp(int ufd, unsigned char *buf) {
  /* Bounded burst per wakeup so TCP connections are not starved. */
  for (int i = 0; i < 64; i++) {
    struct sockaddr_storage from;
    socklen_t flen = sizeof from;
    ssize_t r = recvfrom(ufd, buf, UDP_MAX, 0, (struct sockaddr *)&from, &flen);
    if (r < 0) return;
    sendto(ufd, buf, (size_t)r, MSG_NOSIGNAL, (struct sockaddr *)&from, flen);
  }
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 7, want_tcp = 0, want_udp = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--host") && i + 1 < argc) {
      host = argv[++i];
    } else if (!strcmp(argv[i], "--port") && i + 1 < argc) {
      char *end;
      long p = strtol(argv[++i], &end, 10);
      if (*end || p < 0 || p > 65535) usage();
      port = (int)p;
    } else if (!strcmp(argv[i], "--tcp")) {
      want_tcp = 1;
    } else if (!strcmp(argv[i], "--udp")) {
      want_udp = 1;
    } else {
      usage();
    }
  }
  if (!want_tcp && !want_udp) want_tcp = want_udp = 1;
  raise_nofile();

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; /* no SA_RESTART: epoll_wait returns EINTR */
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  struct sockaddr_storage ss;
  socklen_t sslen;
  if (resolve(host, port, &ss, &sslen) < 0) {
    fprintf(stderr, "echo_server: --host must be a numeric address, got %s\n", host);
    return 2;
  }

  int tfd = -1, ufd = -1;
  /* With port 0 and both transports, retry until UDP can take the port TCP was given. */
  for (int attempt = 0; attempt < 50; attempt++) {
    set_port(&ss, port);
    if (want_tcp) {
      tfd = open_socket(&ss, sslen, SOCK_STREAM);
      if (tfd < 0) die("bind tcp");
      if (listen(tfd, 4096) < 0) die("listen");
      set_port(&ss, bound_port(tfd));
    }
    if (want_udp) {
      ufd = open_socket(&ss, sslen, SOCK_DGRAM);
      if (ufd < 0) {
        if (port == 0 && want_tcp && errno == EADDRINUSE) {
          close(tfd);
          tfd = -1;
          continue;
        }
        die("bind udp");
      }
    }
    break;
  }
  if ((want_tcp && tfd < 0) || (want_udp && ufd < 0)) {
    fprintf(stderr, "echo_server: could not bind one port for TCP and UDP\n");
    return 1;
  }

  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) die("epoll_create1");
  if (tfd >= 0) ep_set(tfd, EPOLLIN, EPOLL_CTL_ADD);
  if (ufd >= 0) {
    int big = 4 * 1024 * 1024;
    setsockopt(ufd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    setsockopt(ufd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    ep_set(ufd, EPOLLIN, EPOLL_CTL_ADD);
  }

  const char *fmt = strchr(host, ':') ? "listening %s [%s]:%d\n" : "listening %s %s:%d\n";
  if (tfd >= 0) printf(fmt, "tcp", host, bound_port(tfd));
  if (ufd >= 0) printf(fmt, "udp", host, bound_port(ufd));
  fflush(stdout);

  unsigned char *ubuf = malloc(UDP_MAX + 1);
  rbuf = malloc(BUF_SIZE);
  if (!ubuf || !rbuf) die("malloc");
  struct epoll_event events[MAX_EVENTS];
  while (!stop_flag) {
    int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      if (fd == tfd) {
        accept_all(tfd);
      } else if (fd == ufd) {
        on_udp(ufd, ubuf);
      } else if ((size_t)fd < conns_cap && conns[fd]) {
        on_conn(conns[fd], events[i].events);
      }
    }
  }
  for (size_t fd = 0; fd < conns_cap; fd++) {
    if (conns[fd]) conn_close(conns[fd]);
  }
  if (tfd >= 0) close(tfd);
  if (ufd >= 0) close(ufd);
  free(ubuf);
  free(rbuf);
  free(conns);
  return 0;
}
