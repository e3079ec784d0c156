// The UDP figures' load and honeypot (bench/lib/udp.mjs), in C because a Node load
// generator would be slower than the proxies it measures.
//   udp-load echo PORT [ADDR]                        a UDP echo server on ADDR:PORT (default
//        127.0.0.1); prints "from SRC" on stderr whenever the source address changes
//   udp-load load PORT FLOWS WINDOW SECONDS SIZE [HOST]  FLOWS sockets (one flow each) to
//        HOST:PORT (default 127.0.0.1), each keeping WINDOW datagrams of SIZE bytes in flight;
//        prints the replies per second over SECONDS after one second of warm-up, as JSON
//   udp-load idle PORT FLOWS                         FLOWS sockets send one datagram each and
//        wait for the reply (sent again every 200 ms until answered, 10 s at most); prints
//        {"answered":N} and holds them until stdin closes
// A flow that got no reply in 200 ms is sent its window again (UDP may drop under load).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static const char *host = "127.0.0.1"; // the address of echo's socket, or the load's target

static struct sockaddr_in local(int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) { fprintf(stderr, "udp-load: bad address %s\n", host); exit(2); }
  return a;
}

static int flow_socket(int port) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  if (fd < 0) { perror("socket"); exit(1); }
  struct sockaddr_in to = local(port);
  if (connect(fd, (struct sockaddr *)&to, sizeof to) < 0) { perror("connect"); exit(1); }
  return fd;
}

static int echo(int port) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  int big = 8 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  struct sockaddr_in a = local(port);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); return 1; }
  static char bufs[BATCH][2048];
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  struct sockaddr_in from[BATCH];
  for (;;) {
    for (int i = 0; i < BATCH; i++) {
      iov[i] = (struct iovec){bufs[i], sizeof bufs[i]};
      msgs[i].msg_hdr = (struct msghdr){.msg_name = &from[i], .msg_namelen = sizeof from[i], .msg_iov = &iov[i], .msg_iovlen = 1};
    }
    int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
    if (n < 0) { if (errno == EINTR) continue; perror("recvmmsg"); return 1; }
    for (int i = 0; i < n; i++) iov[i].iov_len = msgs[i].msg_len;
    // The source address the echo sees, on stderr each time it changes: the transparent
    // figures check that the proxies kept the attacker's.
    static in_addr_t last;
    if (from[0].sin_addr.s_addr != last) {
      last = from[0].sin_addr.s_addr;
      char a[INET_ADDRSTRLEN];
      fprintf(stderr, "from %s\n", inet_ntop(AF_INET, &from[0].sin_addr, a, sizeof a));
    }
    sendmmsg(fd, msgs, n, 0);
  }
}

static int load(int port, int flows, int window, double seconds, int size) {
  int ep = epoll_create1(0);
  int *fds = calloc(flows, sizeof *fds);
  long *got = calloc(flows, sizeof *got), *seen = calloc(flows, sizeof *seen);
  char *payload = malloc(size);
  memset(payload, 'u', size);
  for (int i = 0; i < flows; i++) {
    fds[i] = flow_socket(port);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
    epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    for (int w = 0; w < window; w++) send(fds[i], payload, size, 0);
  }
  long replies = 0, resent = 0;
  double start = now(), measure = start + 1, end = measure + seconds, tick = start + 0.2;
  long base = -1; // replies before the measured window
  char buf[2048];
  struct epoll_event evs[256];
  for (;;) {
    double t = now();
    if (t >= end) break;
    if (t >= measure && base < 0) base = replies;
    if (t >= tick) {
      for (int i = 0; i < flows; i++) {
        if (got[i] == seen[i])
          for (int w = 0; w < window; w++) { send(fds[i], payload, size, 0); resent++; }
        seen[i] = got[i];
      }
      tick = t + 0.2;
    }
    int n = epoll_wait(ep, evs, 256, 50);
    for (int e = 0; e < n; e++) {
      int i = evs[e].data.u32;
      while (recv(fds[i], buf, sizeof buf, 0) > 0) {
        got[i]++;
        replies++;
        send(fds[i], payload, size, 0);
      }
    }
  }
  long inWindow = replies - (base < 0 ? 0 : base);
  printf("{\"replies\":%ld,\"total\":%ld,\"seconds\":%.3f,\"rate\":%.1f,\"resent\":%ld}\n", inWindow,
         replies, seconds, inWindow / seconds, resent);
  return 0;
}

static int idle(int port, int flows) {
  int *fds = calloc(flows, sizeof *fds);
  struct pollfd *p = calloc(flows, sizeof *p);
  for (int i = 0; i < flows; i++) {
    fds[i] = flow_socket(port);
    send(fds[i], "idle", 4, 0);
    p[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
  }
  int answered = 0;
  char buf[64];
  double end = now() + 10;
  double resend = now() + 0.2;
  while (answered < flows && now() < end) {
    if (now() >= resend) { // a datagram the proxy's queue dropped: send it again
      for (int i = 0; i < flows; i++)
        if (p[i].fd >= 0) send(fds[i], "idle", 4, 0);
      resend = now() + 0.2;
    }
    if (poll(p, flows, 100) <= 0) continue;
    for (int i = 0; i < flows; i++)
      if (p[i].revents & POLLIN) {
        while (recv(fds[i], buf, sizeof buf, 0) > 0) {}
        p[i].fd = -1;
        answered++;
      }
  }
  printf("{\"answered\":%d}\n", answered);
  fflush(stdout);
  while (read(0, buf, sizeof buf) > 0) {}
  return 0;
}

int main(int argc, char **argv) {
  if ((argc == 3 || argc == 4) && !strcmp(argv[1], "echo")) {
    if (argc == 4) host = argv[3];
    return echo(atoi(argv[2]));
  }
  if ((argc == 7 || argc == 8) && !strcmp(argv[1], "load")) {
    if (argc == 8) host = argv[7];
    return load(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atof(argv[5]), atoi(argv[6]));
  }
  if (argc == 4 && !strcmp(argv[1], "idle")) return idle(atoi(argv[2]), atoi(argv[3]));
  fprintf(stderr, "usage: udp-load echo PORT [ADDR] | load PORT FLOWS WINDOW SECONDS SIZE [HOST] | idle PORT FLOWS\n");
  return 2;
}
