// New connections from many source addresses: what wrk cannot do (it never binds its
// sockets). Closed loop like `wrk -H 'Connection: close'`: CONNS connections in flight,
// each connects, sends one HTTP/1.1 request with Connection: close, reads until the
// server closes, and is replaced by a new one. Connection i binds source address
// 127.1.0.1 + (i mod SOURCES) before connecting (IP_BIND_ADDRESS_NO_PORT: the port is
// chosen at connect(), per destination), so SOURCES distinct attacker addresses reach the
// proxy; SOURCES 1 leaves the source to the kernel (127.0.0.1), as wrk does.
//
//   conn-load HOST PORT PATH CONNS SECONDS SOURCES
//
// Prints one JSON line: {"requests":N,"errors":N,"durationUs":N,"sources":N}; a request
// counts when the response's first bytes arrived and the server then closed cleanly.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum { CONNECTING, READING };

struct slot {
  int fd;
  int state;
  int got; // response bytes read
};

static struct sockaddr_in dst;
static char request[512];
static int request_len;
static unsigned sources;
static unsigned next_source;
static long long requests, errors;

static long long now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static void die(const char *what) {
  fprintf(stderr, "conn-load: %s: %s\n", what, strerror(errno));
  exit(1);
}

// Opens a new connection in slot s (registered with ep under its index).
static void start(int ep, struct slot *slots, int i) {
  struct slot *s = &slots[i];
  for (;;) {
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) die("socket");
    if (sources > 1) {
      int one = 1;
      if (setsockopt(s->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) < 0)
        die("setsockopt(IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)");
      struct sockaddr_in src = {.sin_family = AF_INET};
      src.sin_addr.s_addr = htonl(0x7f010001u + next_source);
      next_source = (next_source + 1) % sources;
      if (bind(s->fd, (struct sockaddr *)&src, sizeof src) < 0) die("bind");
    }
    s->state = CONNECTING;
    s->got = 0;
    if (connect(s->fd, (struct sockaddr *)&dst, sizeof dst) == 0 || errno == EINPROGRESS) break;
    errors++;
    close(s->fd);
  }
  struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.u32 = (unsigned)i};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) < 0) die("epoll_ctl");
}

static void finish(int ep, struct slot *slots, int i, int ok) {
  if (ok) requests++;
  else errors++;
  close(slots[i].fd); // also leaves the epoll set
  start(ep, slots, i);
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "Usage: conn-load HOST PORT PATH CONNS SECONDS SOURCES\n");
    return 2;
  }
  dst.sin_family = AF_INET;
  dst.sin_port = htons((unsigned short)atoi(argv[2]));
  if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) {
    fprintf(stderr, "conn-load: HOST must be an IPv4 address, not %s\n", argv[1]);
    return 2;
  }
  request_len = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n",
                         argv[3]);
  int conns = atoi(argv[4]);
  double seconds = atof(argv[5]);
  sources = (unsigned)atoi(argv[6]);
  if (conns < 1 || seconds <= 0 || sources < 1 || sources > 65536) {
    fprintf(stderr, "conn-load: CONNS >= 1, SECONDS > 0, 1 <= SOURCES <= 65536\n");
    return 2;
  }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  struct slot *slots = calloc((size_t)conns, sizeof *slots);
  struct epoll_event *events = calloc((size_t)conns, sizeof *events);
  char buf[65536];
  long long t0 = now_us();
  long long end = t0 + (long long)(seconds * 1e6);
  for (int i = 0; i < conns; i++) start(ep, slots, i);
  while (now_us() < end) {
    int n = epoll_wait(ep, events, conns, 100);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int k = 0; k < n; k++) {
      int i = (int)events[k].data.u32;
      struct slot *s = &slots[i];
      if (s->state == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
          finish(ep, slots, i, 0);
          continue;
        }
        if (write(s->fd, request, (size_t)request_len) != request_len) {
          finish(ep, slots, i, 0);
          continue;
        }
        s->state = READING;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (unsigned)i};
        epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
        continue;
      }
      for (;;) {
        ssize_t r = read(s->fd, buf, sizeof buf);
        if (r > 0) {
          s->got += (int)r;
          continue;
        }
        if (r == 0) finish(ep, slots, i, s->got > 0);
        else if (errno != EAGAIN) finish(ep, slots, i, 0);
        break;
      }
    }
  }
  long long elapsed = now_us() - t0;
  printf("{\"requests\":%lld,\"errors\":%lld,\"durationUs\":%lld,\"sources\":%u}\n", requests, errors, elapsed,
         sources);
  return 0;
}
