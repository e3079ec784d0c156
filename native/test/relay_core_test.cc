// relay_core's unit test: the epoll core driven over loopback sockets, with no Node. A
// client socket plays the attacker, a listening socket the honeypot; the test checks what
// each one receives and the records the core reports. Built and run by
// test/unit/native-core.test.ts (g++, with AddressSanitizer where it links):
//
//   g++ -std=c++17 -Inative native/relay_core.cc native/test/relay_core_test.cc -o relay_core_test
//
// Prints "ok NAME" or "not ok NAME: what" per case; exits 1 when any failed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "boundary.h"
#include "relay_core.h"

using namespace hg;

namespace {

int failures = 0;
std::string failure;  // the current case's first failed check

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond) && failure.empty()) failure = std::to_string(__LINE__) + ": " #cond; \
  } while (0)

struct Sink : RecordSink {
  std::vector<Record> records;
  void Push(Record&& record) override { records.push_back(std::move(record)); }
  // The first record of `type` (for `id` when nonzero), or nullptr.
  const Record* Find(uint8_t type, uint32_t id = 0) const {
    for (const Record& r : records) {
      if (r.type == type && (id == 0 || r.id == id)) return &r;
    }
    return nullptr;
  }
};

uint64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

// Runs the core (as relay.cc's uv_poll and timer do) until done() or 3 s have passed.
bool RunUntil(RelayCore& core, const std::function<bool()>& done) {
  uint64_t deadline = NowMs() + 3000;
  while (!done()) {
    if (NowMs() > deadline) return false;
    pollfd p{core.fd(), POLLIN, 0};
    poll(&p, 1, 10);
    core.OnReady();
    core.OnTick();
  }
  return true;
}

// A listening socket on 127.0.0.1, port chosen by the kernel.
int ListenLoopback(uint16_t* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 16) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    perror("listen socket");
    return -1;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

// A blocking client connected to 127.0.0.1:port (the backlog completes the handshake).
int Connect(uint16_t port, uint16_t* localPort = nullptr) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    perror("connect");
    return -1;
  }
  timeval tv{3, 0};  // a lost byte fails the case instead of hanging it
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  if (localPort) *localPort = ntohs(a.sin_port);
  return fd;
}

int Accept(int listener) {
  int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  timeval tv{3, 0};
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

void Send(int fd, const std::string& data) {
  CHECK(send(fd, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size()));
}

// n bytes from fd, running the core meanwhile (fewer at EOF, on an error or after 3 s).
std::string Read(RelayCore& core, int fd, size_t n) {
  std::string out;
  bool end = false;
  RunUntil(core, [&] {
    char buf[65536];
    ssize_t r = 1;
    while (out.size() < n && (r = recv(fd, buf, std::min(sizeof buf, n - out.size()), MSG_DONTWAIT)) > 0) {
      out.append(buf, static_cast<size_t>(r));
    }
    if (out.size() < n && r <= 0 && !(r < 0 && errno == EAGAIN)) end = true;
    return out.size() == n || end;
  });
  return out;
}

// Whether the peer's FIN comes next (recv() returns 0), running the core meanwhile.
bool AtEof(RelayCore& core, int fd) {
  ssize_t r = -1;
  RunUntil(core, [&] {
    char c;
    r = recv(fd, &c, 1, MSG_DONTWAIT);
    return !(r < 0 && errno == EAGAIN);
  });
  return r == 0;
}

// A relay with one listener (tag 7) and one accepted flow, the attacker's client socket
// and the honeypot's listening socket. Closes what it opened.
struct Fixture {
  Sink sink;
  RelayCore core{&sink};
  uint16_t relayPort = 0, serverPort = 0, clientPort = 0;
  int server = -1;  // the honeypot's listening socket
  int client = -1;  // the attacker
  uint32_t id = 0;  // the accepted flow
  uint32_t fromPort = 0;  // Forward's: the port the dial went out from when the asked one was taken

  bool Start() {
    if (!core.Open().empty()) return false;
    int listener = ListenLoopback(&relayPort);
    server = ListenLoopback(&serverPort);
    if (listener < 0 || server < 0 || !core.Listen(listener, 7, kListenLocal).empty()) return false;
    client = Connect(relayPort, &clientPort);
    if (client < 0) return false;
    if (!RunUntil(core, [&] { return sink.Find(kRecordAccepted) != nullptr; })) return false;
    id = sink.Find(kRecordAccepted)->id;
    return true;
  }

  // Forwards the flow to the honeypot and accepts there: the honeypot's socket, or -1.
  int Forward(Dial d) {
    d.host = "127.0.0.1";
    d.port = serverPort;
    std::string error = core.Forward(id, d, &fromPort);
    if (!error.empty()) return -1;
    if (!RunUntil(core, [&] { return sink.Find(kRecordDialed, id) != nullptr; })) return -1;
    return Accept(server);
  }

  ~Fixture() {
    if (client >= 0) close(client);
    if (server >= 0) close(server);
  }
};

void Accepted() {
  Fixture f;
  CHECK(f.Start());
  const Record* r = f.sink.Find(kRecordAccepted);
  CHECK(r && r->tag == 7);
  CHECK(r && r->a == "127.0.0.1" && r->pa == f.clientPort);
  CHECK(r && r->hasDst && r->b == "127.0.0.1" && r->pb == f.relayPort);
  uint64_t in = 1, out = 1;
  CHECK(f.core.Counters(f.id, &in, &out) && in == 0 && out == 0);
  CHECK(!f.core.Idle());
}

void CopiesBothWaysHeaderFirst() {
  Fixture f;
  CHECK(f.Start());
  Dial d;
  d.header = "HEADER\r\n";
  d.firstCap = 3;
  int up = f.Forward(d);
  CHECK(up >= 0);
  Send(f.client, "hello");
  CHECK(Read(f.core, up, 13) == "HEADER\r\nhello");
  Send(up, "welcome");
  bool done = RunUntil(f.core, [&] {
    uint64_t in = 0, out = 0;
    return f.core.Counters(f.id, &in, &out) && in == 5 && out == 7;
  });
  CHECK(done);
  CHECK(Read(f.core, f.client, 7) == "welcome");
  const std::string* first = f.core.First(f.id);
  CHECK(first && *first == "hel");  // firstCap bytes, the header not among them
  // A large transfer: more than one read, with backpressure on the way.
  std::string big(1 << 20, 'x');
  for (size_t i = 0; i < big.size(); i++) big[i] = static_cast<char>('a' + i % 26);
  std::string got;
  size_t sent = 0;
  RunUntil(f.core, [&] {
    if (sent < big.size()) {
      ssize_t w = send(f.client, big.data() + sent, big.size() - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (w > 0) sent += static_cast<size_t>(w);
    }
    char buf[65536];
    ssize_t r;
    while ((r = recv(up, buf, sizeof buf, MSG_DONTWAIT)) > 0) got.append(buf, static_cast<size_t>(r));
    return got.size() == big.size();
  });
  CHECK(got == big);
  if (up >= 0) close(up);
}

void HalfCloseEachWay() {
  Fixture f;
  CHECK(f.Start());
  int up = f.Forward(Dial{});
  CHECK(up >= 0);
  Send(f.client, "request");
  shutdown(f.client, SHUT_WR);  // the attacker is done sending, still reading
  // The honeypot gets the data and then the FIN, and can still answer.
  RunUntil(f.core, [&] {
    uint64_t in = 0, out = 0;
    return f.core.Counters(f.id, &in, &out) && in == 7;
  });
  CHECK(Read(f.core, up, 7) == "request");
  CHECK(AtEof(f.core, up));
  Send(up, "late answer");
  close(up);
  CHECK(RunUntil(f.core, [&] { return f.sink.Find(kRecordFinished, f.id) != nullptr; }));
  CHECK(Read(f.core, f.client, 11) == "late answer");
  CHECK(AtEof(f.core, f.client));
  const Record* r = f.sink.Find(kRecordFinished, f.id);
  CHECK(r && r->reason == kClientClosed);  // the side that closed first
  CHECK(r && r->in == 7 && r->out == 11 && !r->hasDetail);
  CHECK(f.core.Idle() == false);  // the listener is still there
}

void ServerClosesFirst() {
  Fixture f;
  CHECK(f.Start());
  int up = f.Forward(Dial{});
  CHECK(up >= 0);
  Send(up, "banner");
  shutdown(up, SHUT_WR);
  CHECK(Read(f.core, f.client, 6) == "banner");
  CHECK(AtEof(f.core, f.client));
  Send(f.client, "bye");
  close(f.client);
  f.client = -1;
  CHECK(Read(f.core, up, 3) == "bye");
  close(up);
  CHECK(RunUntil(f.core, [&] { return f.sink.Find(kRecordFinished, f.id) != nullptr; }));
  const Record* r = f.sink.Find(kRecordFinished, f.id);
  CHECK(r && r->reason == kServerClosed);
}

void ResetByClient() {
  Fixture f;
  CHECK(f.Start());
  int up = f.Forward(Dial{});
  CHECK(up >= 0);
  linger lg{1, 0};
  setsockopt(f.client, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(f.client);  // RST
  f.client = -1;
  CHECK(RunUntil(f.core, [&] { return f.sink.Find(kRecordFinished, f.id) != nullptr; }));
  const Record* r = f.sink.Find(kRecordFinished, f.id);
  CHECK(r && r->reason == kClientReset);
  char c;
  CHECK(recv(up, &c, 1, 0) <= 0);  // the honeypot's side was closed too
  if (up >= 0) close(up);
}

void ResetByServer() {
  Fixture f;
  CHECK(f.Start());
  int up = f.Forward(Dial{});
  CHECK(up >= 0);
  linger lg{1, 0};
  setsockopt(up, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(up);
  CHECK(RunUntil(f.core, [&] { return f.sink.Find(kRecordFinished, f.id) != nullptr; }));
  const Record* r = f.sink.Find(kRecordFinished, f.id);
  CHECK(r && r->reason == kServerReset);
}

void ByteCap() {
  Fixture f;
  CHECK(f.Start());
  Dial d;
  d.maxIn = 4;
  int up = f.Forward(d);
  CHECK(up >= 0);
  Send(f.client, "0123456789");
  CHECK(RunUntil(f.core, [&] { return f.sink.Find(kRecordFinished, f.id) != nullptr; }));
  const Record* r = f.sink.Find(kRecordFinished, f.id);
  CHECK(r && r->reason == kByteCap && r->hasDetail && r->b == "maxBytesIn");
  if (up >= 0) close(up);
}

// The honeypot's peer port of an accepted socket.
uint16_t PeerPort(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  return getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0 ? ntohs(a.sin_port) : 0;
}

void TakenLocalPortFallsBackAndSaysWhich() {
  Fixture f;
  CHECK(f.Start());
  uint16_t taken = 0;
  int holder = ListenLoopback(&taken);  // a listener holds the port the dial asks for
  Dial d;
  d.localIp = "127.0.0.1";
  d.localPort = taken;
  int up = f.Forward(d);
  CHECK(up >= 0);
  CHECK(f.fromPort != 0 && f.fromPort != taken);
  CHECK(PeerPort(up) == f.fromPort);
  if (up >= 0) close(up);
  close(holder);
  // A free port is used as asked, and nothing is reported.
  Fixture g;
  CHECK(g.Start());
  uint16_t free = 0;
  close(ListenLoopback(&free));
  d.localPort = free;
  up = g.Forward(d);
  CHECK(up >= 0);
  CHECK(g.fromPort == 0);
  CHECK(PeerPort(up) == free);
  if (up >= 0) close(up);
}

void FailedConnectWaitsAgain() {
  Fixture f;
  CHECK(f.Start());
  // A port nothing listens on: bound, then closed.
  uint16_t closedPort = 0;
  close(ListenLoopback(&closedPort));
  Dial d;
  d.host = "127.0.0.1";
  d.port = closedPort;
  CHECK(f.core.Forward(f.id, d, &f.fromPort).empty());
  CHECK(RunUntil(f.core, [&] { return f.sink.Find(kRecordDialFailed, f.id) != nullptr; }));
  const Record* r = f.sink.Find(kRecordDialFailed, f.id);
  std::string where = "127.0.0.1:" + std::to_string(closedPort);
  CHECK(r && r->a == "connect ECONNREFUSED " + where);
  // The flow waits again: another server, or JS takes it.
  int fd = f.core.Take(f.id);
  CHECK(fd >= 0);
  CHECK(f.core.Take(f.id) == -1);
  if (fd >= 0) close(fd);
}

void ConnectDoneDuringAStallIsNotATimeout() {
  Fixture f;
  CHECK(f.Start());
  Dial d;
  d.host = "127.0.0.1";
  d.port = f.serverPort;
  d.timeoutMs = 50;
  CHECK(f.core.Forward(f.id, d, &f.fromPort).empty());
  // A stalled loop: the connect completes (the backlog answers), its deadline passes, and
  // the timer runs before epoll is read, as libuv orders them.
  timespec pause{0, 200 * 1000 * 1000};
  nanosleep(&pause, nullptr);
  f.core.OnTick();
  CHECK(f.sink.Find(kRecordDialFailed, f.id) == nullptr);
  CHECK(f.sink.Find(kRecordDialed, f.id) != nullptr);
  int up = Accept(f.server);
  CHECK(up >= 0);
  Send(f.client, "late");
  CHECK(Read(f.core, up, 4) == "late");
  if (up >= 0) close(up);
}

void ForwardRefusesBadInput() {
  Fixture f;
  CHECK(f.Start());
  Dial d;
  d.host = "honeypot.example";
  d.port = 80;
  CHECK(f.core.Forward(f.id, d, &f.fromPort) == "not an address: honeypot.example");
  d.host = "127.0.0.1";
  CHECK(f.core.Forward(f.id + 1000, d, &f.fromPort) == "no such flow waiting");
  d.localIp = "2001:db8::1";
  std::string error = f.core.Forward(f.id, d, &f.fromPort);
  CHECK(error == "bind: not an address of the server's family: 2001:db8::1");
  // Still waiting after each refusal.
  int fd = f.core.Take(f.id);
  CHECK(fd >= 0);
  if (fd >= 0) close(fd);
}

void CloseWithReset() {
  Fixture f;
  CHECK(f.Start());
  f.core.Close(f.id, true);
  char c;
  errno = 0;
  CHECK(recv(f.client, &c, 1, 0) < 0 && errno == ECONNRESET);
  CHECK(!f.core.Counters(f.id, nullptr, nullptr));
  CHECK(f.sink.Find(kRecordFinished) == nullptr);  // JS's decision: no record
}

void AdoptAndShutdown() {
  Fixture f;
  CHECK(f.Start());
  int fd = f.core.Take(f.id);
  CHECK(fd >= 0);
  int64_t id = f.core.Adopt(fd);
  close(fd);  // the core holds a dup
  CHECK(id > 0 && static_cast<uint32_t>(id) != f.id);
  CHECK(f.core.Adopt(-1) == -EBADF);
  f.core.Shutdown();
  CHECK(f.core.Idle());
  CHECK(AtEof(f.core, f.client));
}

void DrainReportsTheQueueBeforeUnlisten() {
  Fixture f;
  CHECK(f.Start());
  // Two more clients, accepted by the kernel (backlog) but not yet by the core.
  int more[2] = {Connect(f.relayPort), Connect(f.relayPort)};
  CHECK(more[0] >= 0 && more[1] >= 0);
  f.core.Drain(7);
  size_t accepted = 0;
  for (const Record& r : f.sink.records) accepted += r.type == kRecordAccepted;
  CHECK(accepted == 3);
  f.core.Unlisten(7);
  // Refused: the listener is closed.
  int probe = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(f.relayPort);
  errno = 0;
  CHECK(connect(probe, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno == ECONNREFUSED);
  close(probe);
  // The drained flows are the core's, open, not reset.
  char c;
  errno = 0;
  CHECK(recv(more[1], &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN);
  for (int fd : more) {
    if (fd >= 0) close(fd);
  }
}

void ShedsOnTheReserveWhenOutOfFds() {
  Fixture f;
  CHECK(f.Start());
  int client = Connect(f.relayPort);
  CHECK(client >= 0);
  // No descriptor left above the lowest free one: accept4() fails with EMFILE.
  int lowest = dup(0);
  close(lowest);
  rlimit before;
  getrlimit(RLIMIT_NOFILE, &before);
  rlimit low = before;
  low.rlim_cur = static_cast<rlim_t>(lowest);
  CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
  f.sink.records.clear();
  RunUntil(f.core, [&] { return f.sink.Find(kRecordAccepted) != nullptr; });
  setrlimit(RLIMIT_NOFILE, &before);
  // Record 5 says why, then the connection taken on the reserve's descriptor.
  CHECK(f.sink.records.size() >= 2);
  if (f.sink.records.size() >= 2) {
    CHECK(f.sink.records[0].type == kRecordAcceptFailed && f.sink.records[0].a == "accept: EMFILE");
    CHECK(f.sink.records[1].type == kRecordAccepted && f.sink.records[1].tag == 7);
    // The owner sheds it; the reserve comes back and the listener accepts again.
    f.core.Close(f.sink.records[1].id, true);
  }
  f.sink.records.clear();
  int again = Connect(f.relayPort);
  CHECK(again >= 0);
  CHECK(RunUntil(f.core, [&] { return f.sink.Find(kRecordAccepted) != nullptr; }));
  if (client >= 0) close(client);
  if (again >= 0) close(again);
}

void Run(const char* name, void (*fn)()) {
  failure.clear();
  fn();
  if (failure.empty()) {
    printf("ok %s\n", name);
  } else {
    printf("not ok %s: line %s\n", name, failure.c_str());
    failures++;
  }
  fflush(stdout);
}

}  // namespace

int main() {
  Run("accepted: the attacker's address and the listener's", Accepted);
  Run("copies both ways, the header first, the first bytes kept", CopiesBothWaysHeaderFirst);
  Run("half-close: the attacker's FIN passes on, the answer still comes back", HalfCloseEachWay);
  Run("half-close the other way: server-closed", ServerClosesFirst);
  Run("an attacker's reset: client-reset", ResetByClient);
  Run("a honeypot's reset: server-reset", ResetByServer);
  Run("the byte cap ends the flow: byte-cap maxBytesIn", ByteCap);
  Run("a taken local port: the dial goes out from another, and says which", TakenLocalPortFallsBackAndSaysWhich);
  Run("a refused connect: dialFailed, and the flow waits again", FailedConnectWaitsAgain);
  Run("a connect done during a stall of the loop is not a timeout", ConnectDoneDuringAStallIsNotATimeout);
  Run("forward refuses a name, an unknown flow, a local address of the other family", ForwardRefusesBadInput);
  Run("close(reset) sends RST and records nothing", CloseWithReset);
  Run("adopt a dup, shutdown closes everything", AdoptAndShutdown);
  Run("drain accepts the queued connections before unlisten closes", DrainReportsTheQueueBeforeUnlisten);
  Run("out of fds: record 5, then one flow on the reserve descriptor", ShedsOnTheReserveWhenOutOfFds);
  return failures == 0 ? 0 : 1;
}
