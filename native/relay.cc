// The native relay: accept, connect and copy for the flows JS hands it, on the main
// thread's libuv loop (one epoll fd watched by one uv_poll_t), so a flow costs no
// net.Socket, no per-chunk JS and no thread hop. JS keeps every decision (admission,
// route, server, source mode, events); the relay tells it what happened in batches, as
// records: numbers in one Float64Array, their strings in order in one array.
//
//   numbers                                                        strings
//   [1, id, tag, srcPort, dstPort|-1]                              srcIp, dstIp (if dstPort >= 0)   accepted on listener `tag`
//   [2, id]                                                                                         upstream connected
//   [3, id]                                                        message                          upstream connect failed
//   [4, id, reason, bytesIn, bytesOut, firstStart, firstEnd, hasDetail]  detail (if hasDetail)  finished
//   [5, tag]                                                       message                          accept failed (EMFILE, ...)
//
// Out of file descriptors, the relay keeps one in reserve (as nginx and HAProxy do): it
// closes it, accepts one connection and reports it as record 1 right after the record 5
// that says EMFILE or ENFILE, so JS records and closes that flow (fd-exhausted) instead of
// the listener staying readable and the queue waiting; the reserve is reopened once a
// descriptor is free again. Unlisten() first accepts what the kernel has queued and
// reports it, so a stop or a reload records those flows instead of resetting them.
//
// Record tags, listen flags and close reasons (record 4's reason is a code) are in
// boundary.h, which this file exports to JS. The finished flows' first bytes come as one
// Buffer per batch, the callback's third argument: record 4 gives its range (-1, -1:
// none). One backing store per batch instead of one per flow: the young-generation GC
// pays for each one.
//
// Written by hand because it is honeygate's data path: it reads hostile peers, so every
// read is bounded, every buffer is owned by one connection, and a peer can only end its
// own connection. Level-triggered epoll; a direction whose peer's socket is full stops
// reading until it drains (backpressure). No splice(): to a peer on this host (loopback,
// a container's veth) its page references cost the reader more than our copy saves
// (docs/performance.md).
#define NAPI_VERSION 8
#include <node_api.h>
#include <uv.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "boundary.h"
#include "original_dst.h"
#include "socket.h"

using namespace hg;

namespace {

constexpr size_t kScratch = 256 * 1024;        // one read at most (64 KiB cost 25% more CPU per GB)
constexpr int kAcceptBatch = 64;                // accepts per readiness event
constexpr int kReadsPerEvent = 4;               // fairness between flows

enum Kind : uintptr_t { kListener = 0, kClientSide = 1, kServerSide = 2 };
constexpr size_t kNumbers[] = {0, 5, 2, 2, 8, 2};  // numbers per record type (header comment)

uint64_t NowMs() {
  return uv_hrtime() / 1000000;
}


struct Listener {
  int fd;
  uint32_t tag;
  uint32_t flags;
  bool paused = false;  // out of fds: taken out of epoll until the next tick
};

// One direction of a flow: bytes read from one socket, owed to the other.
struct Half {
  char* buf = nullptr;  // unsent bytes, only while the other socket is full
  size_t len = 0;
  size_t off = 0;
  bool eof = false;   // read its FIN
  bool shut = false;  // passed the FIN on
  uint64_t bytes = 0;
  bool Pending() const { return len > off; }
};

struct Conn {
  uint32_t id;
  int cfd;
  int ufd = -1;
  enum State : uint8_t { kWaiting, kConnecting, kRelaying, kDone } state = kWaiting;
  bool cReg = false, uReg = false;
  uint32_t cMask = 0, uMask = 0;
  Half up;    // attacker -> honeypot
  Half down;  // honeypot -> attacker
  std::string first;
  uint32_t firstCap = 0;
  uint64_t maxIn = 0, maxOut = 0;  // 0: no cap
  uint64_t connectDeadline = 0;
  std::string where;  // "host:port" of the server being dialed
  CloseCode firstEnd = kCloseCodes;  // kCloseCodes: neither side closed yet
};

struct Record {
  Record(uint8_t t, uint32_t i) : type(t), id(i) {}
  uint8_t type;
  uint32_t id;
  uint32_t tag = 0;
  std::string a, b;  // src / dst ip, message, detail
  uint32_t pa = 0, pb = 0;
  bool hasDst = false;
  uint64_t in = 0, out = 0;
  std::string first;
  bool hasFirst = false, hasDetail = false;
  CloseCode reason = kCloseError;
};

void FreeHalf(Half& h) {
  free(h.buf);
  h.buf = nullptr;
  h.len = h.off = 0;
}

std::string AddrText(const sockaddr_storage& ss, uint32_t* port) {
  char text[INET6_ADDRSTRLEN] = "";
  if (ss.ss_family == AF_INET) {
    auto* v4 = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    *port = ntohs(v4->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* v6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
      inet_ntop(AF_INET, &v6->sin6_addr.s6_addr[12], text, sizeof text);
    } else {
      inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
    }
    *port = ntohs(v6->sin6_port);
  }
  return text;
}

// An address literal and port as a sockaddr; false when `host` is not a literal.
bool ParseAddr(const char* host, uint32_t port, sockaddr_storage* ss, socklen_t* len) {
  memset(ss, 0, sizeof *ss);
  auto* v4 = reinterpret_cast<sockaddr_in*>(ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(ss);
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    *len = sizeof *v4;
    return true;
  }
  if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    *len = sizeof *v6;
    return true;
  }
  return false;
}

class Relay {
 public:
  // epfd and scratch (kScratch bytes) are the relay's from now on.
  Relay(napi_env env, napi_value callback, double* counters, int epfd, char* scratch)
      : env_(env), counters_(counters), epfd_(epfd), scratch_(scratch) {
    napi_create_reference(env, callback, 1, &callback_);
    // The callback's `this` and async resource: napi_make_callback needs an object.
    napi_value name, resource;
    napi_create_object(env, &resource);
    napi_create_reference(env, resource, 1, &resource_);
    napi_create_string_utf8(env, "honeygate:relay", NAPI_AUTO_LENGTH, &name);
    napi_async_init(env, resource, name, &async_);
    uv_loop_t* loop;
    napi_get_uv_event_loop(env, &loop);
    poll_.data = this;
    timer_.data = this;
    uv_poll_init(loop, &poll_, epfd_);
    uv_poll_start(&poll_, UV_READABLE, [](uv_poll_t* p, int, int) { static_cast<Relay*>(p->data)->OnReady(); });
    reserve_ = OpenReserve();
    uv_timer_init(loop, &timer_);
    uv_timer_start(&timer_, [](uv_timer_t* t) { static_cast<Relay*>(t->data)->OnTick(); }, 100, 100);
    uv_unref(reinterpret_cast<uv_handle_t*>(&timer_));
    UpdateRef();
  }

  bool destroyed() const { return destroyed_; }

  // Closes everything; the JS object may outlive it (methods then throw).
  void Destroy() {
    if (destroyed_) return;
    destroyed_ = true;
    for (auto& [tag, l] : listeners_) {
      close(l->fd);
      delete l;
    }
    listeners_.clear();
    for (auto& [id, c] : conns_) Free(c);
    conns_.clear();
    if (reserve_ >= 0) close(reserve_);
    reserve_ = -1;
    uv_poll_stop(&poll_);
    uv_timer_stop(&timer_);
    // epfd_, callback and scratch go when both handles are closed.
    pendingClose_ = 2;
    auto closed = [](uv_handle_t* h) {
      auto* self = static_cast<Relay*>(h->data);
      if (--self->pendingClose_ == 0) self->Release();
    };
    uv_close(reinterpret_cast<uv_handle_t*>(&poll_), closed);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), closed);
  }

  std::string Listen(int fd, uint32_t tag, uint32_t flags) {
    if (listeners_.count(tag)) return "tag in use";
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return "fcntl(O_NONBLOCK): " + ErrName(errno);
    // Accepted sockets inherit it: no setsockopt per flow.
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto* l = new Listener{fd, tag, flags};
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = reinterpret_cast<uintptr_t>(l) | kListener;
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      int err = errno;
      delete l;
      return "epoll_ctl: " + ErrName(err);
    }
    listeners_[tag] = l;
    UpdateRef();
    return "";
  }

  // Closes a listener after accepting (and reporting, now) what the kernel has queued on it:
  // close() would reset those connections, which their clients saw accepted.
  void Unlisten(uint32_t tag) {
    auto it = listeners_.find(tag);
    if (it == listeners_.end()) return;
    while (OnAccept(it->second)) {
    }
    Deliver();
    it = listeners_.find(tag);  // JS ran: it may have unlistened this one itself
    if (it == listeners_.end()) return;
    close(it->second->fd);  // also leaves epoll
    delete it->second;
    listeners_.erase(it);
    UpdateRef();
  }

  Conn* Find(uint32_t id) {
    auto it = conns_.find(id);
    return it == conns_.end() ? nullptr : it->second;
  }

  // Takes back a flow Node has read from (a peek, a PROXY header): a dup of Node's fd, which
  // Node then closes. A waiting flow, or -1 (errno) when the fd cannot be duplicated.
  int64_t Adopt(int fd) {
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0) return -errno;
    int fl = fcntl(own, F_GETFL);
    if (fl >= 0) fcntl(own, F_SETFL, fl | O_NONBLOCK);
    Conn* c = Waiting(own);
    UpdateRef();
    return c->id;
  }

  // Hands the attacker's socket to JS; the relay forgets the flow. -1: not waiting.
  int Take(uint32_t id) {
    Conn* c = Find(id);
    if (!c || c->state != Conn::kWaiting) return -1;
    int fd = c->cfd;
    c->cfd = -1;
    conns_.erase(id);
    Free(c);
    UpdateRef();
    return fd;
  }

  // Ends a flow JS decided to end; no record. reset: RST instead of FIN to the attacker.
  void Close(uint32_t id, bool reset) {
    Conn* c = Find(id);
    if (!c) return;
    if (reset && c->cfd >= 0) {
      linger lg{1, 0};
      setsockopt(c->cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    conns_.erase(id);
    Free(c);
    RestoreReserve();
    UpdateRef();
  }

  struct Dial {
    std::string host;
    uint32_t port;
    std::string header;
    std::string localIp;  // empty: let the kernel choose
    uint32_t localPort = 0;
    bool transparent = false;
    uint32_t mark = 0;
    uint32_t timeoutMs = 5000;
    uint32_t firstCap = 0;
    uint64_t maxIn = 0, maxOut = 0;
  };

  // Starts connecting; the outcome comes as record 2 or 3. Returns an error message when it
  // cannot even start (the flow then stays waiting).
  std::string Forward(uint32_t id, const Dial& d) {
    Conn* c = Find(id);
    if (!c || c->state != Conn::kWaiting) return "no such flow waiting";
    sockaddr_storage to;
    socklen_t toLen;
    if (!ParseAddr(d.host.c_str(), d.port, &to, &toLen)) return "not an address: " + d.host;
    char* header = nullptr;
    if (!d.header.empty() && !(header = static_cast<char*>(malloc(d.header.size())))) return "out of memory";
    c->where = (to.ss_family == AF_INET6 ? "[" + d.host + "]" : d.host) + ":" + std::to_string(d.port);
    std::string error;
    int fd = Connect(d, to, toLen, d.localPort, &error);
    if (fd < 0 && d.localPort != 0 && (error.find("EADDRINUSE") != std::string::npos ||
                                        error.find("EADDRNOTAVAIL") != std::string::npos)) {
      fd = Connect(d, to, toLen, 0, &error);  // the attacker's port is taken here: any port
    }
    if (fd < 0) {
      free(header);
      return error;
    }
    c->ufd = fd;
    c->state = Conn::kConnecting;
    c->connectDeadline = NowMs() + d.timeoutMs;
    c->firstCap = d.firstCap;
    c->maxIn = d.maxIn;
    c->maxOut = d.maxOut;
    if (!d.header.empty()) {
      c->up.buf = header;
      memcpy(c->up.buf, d.header.data(), d.header.size());
      c->up.len = d.header.size();
    }
    connecting_++;
    Sync(c);
    return "";
  }

  // Writes bytesIn, bytesOut into the shared counters; false when the relay has no such flow.
  bool Counters(uint32_t id) {
    Conn* c = Find(id);
    if (!c) return false;
    counters_[0] = static_cast<double>(c->up.bytes);
    counters_[1] = static_cast<double>(c->down.bytes);
    return true;
  }

  // The attacker's first bytes so far (an update event of an open flow); nullptr when none.
  const std::string* First(uint32_t id) {
    Conn* c = Find(id);
    return c && !c->first.empty() ? &c->first : nullptr;
  }

 private:
  int Connect(const Dial& d, const sockaddr_storage& to, socklen_t toLen, uint32_t localPort, std::string* error) {
    int family = to.ss_family;
    hg::SocketOptions opts;
    opts.transparent = d.transparent;
    opts.mark = d.mark;
    opts.reuseAddr = !d.localIp.empty();
    hg::SocketError failed;
    int fd = hg::OpenSocket(family, SOCK_NONBLOCK, opts, false, &failed);
    if (fd < 0) {
      *error = failed.Message();
      return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto fail = [&](const std::string& what) {
      *error = what + ": " + ErrName(errno);
      close(fd);
      return -1;
    };
    if (!d.localIp.empty()) {
      sockaddr_storage from;
      socklen_t fromLen;
      if (!ParseAddr(d.localIp.c_str(), localPort, &from, &fromLen) || from.ss_family != family) {
        *error = "bind: not an address of the server's family: " + d.localIp;
        close(fd);
        return -1;
      }
      if (bind(fd, reinterpret_cast<sockaddr*>(&from), fromLen) != 0) return fail("bind");
    }
    if (connect(fd, reinterpret_cast<const sockaddr*>(&to), toLen) != 0 && errno != EINPROGRESS) {
      return fail("connect");
    }
    return fd;
  }

  void Release() {
    close(epfd_);
    free(scratch_);
    napi_delete_reference(env_, callback_);
    napi_delete_reference(env_, resource_);
    napi_async_destroy(env_, async_);
    released_ = true;
    if (orphaned_) delete this;
  }

 public:
  // The JS object was collected: free now if the handles are closed, else when they are.
  void Orphan() {
    orphaned_ = true;
    if (!destroyed_) Destroy();
    else if (released_) delete this;
  }

 private:
  void Free(Conn* c) {
    if (c->state == Conn::kConnecting) connecting_--;
    if (c->cfd >= 0) close(c->cfd);
    if (c->ufd >= 0) close(c->ufd);
    FreeHalf(c->up);
    FreeHalf(c->down);
    delete c;
  }

  // A new flow on the attacker's socket `fd`, waiting for JS to forward or take it.
  Conn* Waiting(int fd) {
    auto* c = new Conn{};
    c->id = nextId_++;
    if (nextId_ == 0) nextId_ = 1;
    c->cfd = fd;
    conns_[c->id] = c;
    return c;
  }

  void UpdateRef() {
    if (destroyed_) return;
    auto* h = reinterpret_cast<uv_handle_t*>(&poll_);
    if (listeners_.empty() && conns_.empty()) uv_unref(h);
    else uv_ref(h);
  }

  // Registers each socket for what its flow needs now.
  void Sync(Conn* c) {
    uint32_t cm = 0, um = 0;
    if (c->state == Conn::kConnecting) {
      um = EPOLLOUT;
    } else if (c->state == Conn::kRelaying) {
      // EPOLLRDHUP: a FIN behind the data is read in the same turn (see Transfer).
      if (!c->up.eof && !c->up.Pending()) cm |= EPOLLIN | EPOLLRDHUP;
      if (c->down.Pending()) cm |= EPOLLOUT;
      if (!c->down.eof && !c->down.Pending()) um |= EPOLLIN | EPOLLRDHUP;
      if (c->up.Pending()) um |= EPOLLOUT;
    }
    if (c->state == Conn::kRelaying || c->cReg) SetMask(c, c->cfd, kClientSide, cm, &c->cReg, &c->cMask);
    if (c->ufd >= 0) SetMask(c, c->ufd, kServerSide, um, &c->uReg, &c->uMask);
  }

  void SetMask(Conn* c, int fd, Kind kind, uint32_t mask, bool* reg, uint32_t* cur) {
    if (*reg && *cur == mask) return;
    epoll_event ev{};
    ev.events = mask;
    ev.data.u64 = reinterpret_cast<uintptr_t>(c) | kind;
    epoll_ctl(epfd_, *reg ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
    *reg = true;
    *cur = mask;
  }

  void Finish(Conn* c, CloseCode reason, const std::string& detail = "") {
    if (c->state == Conn::kDone) return;
    if (c->state == Conn::kConnecting) connecting_--;
    c->state = Conn::kDone;
    Record r{kRecordFinished, c->id};
    r.reason = reason;
    r.b = detail;
    r.hasDetail = !detail.empty();
    r.in = c->up.bytes;
    r.out = c->down.bytes;
    r.hasFirst = !c->first.empty();
    r.first.swap(c->first);
    records_.push_back(std::move(r));
    // Closing leaves epoll; events already fetched for it see kDone. Freed after the batch.
    close(c->cfd);
    c->cfd = -1;
    if (c->ufd >= 0) close(c->ufd);
    c->ufd = -1;
    conns_.erase(c->id);
    graveyard_.push_back(c);
  }

  void ConnectFailed(Conn* c, const std::string& message) {
    connecting_--;
    close(c->ufd);
    c->ufd = -1;
    c->uReg = false;
    c->uMask = 0;
    FreeHalf(c->up);
    c->state = Conn::kWaiting;
    Record r{kRecordDialFailed, c->id};
    r.a = message;
    records_.push_back(std::move(r));
  }

  void OnConnectReady(Conn* c, uint32_t events) {
    if (events & (EPOLLERR | EPOLLHUP)) {  // writable alone means connected: no SO_ERROR to read
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) return ConnectFailed(c, "connect " + ErrName(err) + " " + c->where);
    }
    connecting_--;
    c->state = Conn::kRelaying;
    records_.push_back(Record{kRecordDialed, c->id});
    if (c->up.Pending() && !Flush(c, &c->up, c->ufd, false)) return;
    // What the attacker sent during the dial goes out now, as HAProxy does, rather than a
    // loop turn later when epoll would report it: most clients speak first (HTTP, SSH).
    if (!c->up.Pending() && !Transfer(c, true, false)) return;
    Sync(c);
  }

  // Keeps the attacker's first bytes and enforces the byte caps. False: the flow ended.
  bool Count(Conn* c, bool up, const char* data, size_t n) {
    Half& h = up ? c->up : c->down;
    h.bytes += n;
    if (up && c->first.size() < c->firstCap) {
      c->first.append(data, std::min<size_t>(n, c->firstCap - c->first.size()));
    }
    uint64_t cap = up ? c->maxIn : c->maxOut;
    if (cap > 0 && h.bytes > cap) {
      Finish(c, kByteCap, up ? "maxBytesIn" : "maxBytesOut");
      return false;
    }
    return true;
  }

  // A read or write failed with `err` on the `client` (or server) side.
  void Failed(Conn* c, bool client, int err) {
    if (err == ECONNRESET || err == EPIPE || err == ECONNABORTED || err == ETIMEDOUT) {
      Finish(c, client ? kClientReset : kServerReset);
    } else {
      Finish(c, kCloseError, std::string(client ? "client: " : "server: ") + ErrName(err));
    }
  }

  // Passes the FIN on once everything before it is out; ends the flow when both ways are done.
  bool MaybeShut(Conn* c, Half* h, int to) {
    if (h->eof && !h->shut && !h->Pending()) {
      h->shut = true;
      // The last FIN: close() sends it, both sides have nothing left to read.
      Half& other = h == &c->up ? c->down : c->up;
      if (!other.shut) shutdown(to, SHUT_WR);
    }
    if (c->up.shut && c->down.shut) {
      Finish(c, c->firstEnd != kCloseCodes ? c->firstEnd : kClientClosed);
      return false;
    }
    return true;
  }

  // Sends what `h` owes to `to`. False: the flow ended.
  bool Flush(Conn* c, Half* h, int to, bool toClient) {
    while (h->len > h->off) {
      ssize_t w = send(to, h->buf + h->off, h->len - h->off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return true;
        Failed(c, toClient, errno);
        return false;
      }
      h->off += static_cast<size_t>(w);
    }
    if (h->buf) {
      free(h->buf);
      h->buf = nullptr;
      h->len = h->off = 0;
    }
    return MaybeShut(c, h, to);
  }

  // Moves bytes from `from` to `to` until `from` is empty, `to` is full or the turn is over.
  // `finSeen` (EPOLLRDHUP): the peer's FIN is queued behind the data, so read on to it and
  // pass it on at once. A client that gets the data without the FIN closes first and keeps
  // a TIME_WAIT per flow: a scanner or wrk reusing ports then spends its CPU finding one.
  bool Transfer(Conn* c, bool up, bool finSeen) {
    Half* h = up ? &c->up : &c->down;
    int from = up ? c->cfd : c->ufd;
    int to = up ? c->ufd : c->cfd;
    for (int i = 0; i < kReadsPerEvent && !h->eof && !h->Pending(); i++) {
      ssize_t n = recv(from, scratch_, kScratch, MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) break;
        Failed(c, up, errno);
        return false;
      }
      if (n == 0) {
        h->eof = true;
        if (c->firstEnd == kCloseCodes) c->firstEnd = up ? kClientClosed : kServerClosed;
        break;
      }
      if (!Count(c, up, scratch_, static_cast<size_t>(n))) return false;
      // Read up to the peer's FIN: the next recv() returns 0 and MaybeShut() sends our FIN.
      // MSG_MORE holds this data for it, so data and FIN go in one segment, as one wake-up.
      bool last = finSeen && static_cast<size_t>(n) < kScratch && i + 1 < kReadsPerEvent;
      int flags = MSG_NOSIGNAL | MSG_DONTWAIT | (last ? MSG_MORE : 0);
      ssize_t w = send(to, scratch_, static_cast<size_t>(n), flags);
      if (w < 0) {
        if (errno != EAGAIN && errno != EINTR) {
          Failed(c, !up, errno);
          return false;
        }
        w = 0;
      }
      if (w < n) {
        h->len = static_cast<size_t>(n - w);
        h->off = 0;
        h->buf = static_cast<char*>(malloc(h->len));
        if (!h->buf) {
          h->len = 0;
          Finish(c, kCloseError, "relay: out of memory");
          return false;
        }
        memcpy(h->buf, scratch_ + w, h->len);
      }
      if (h->Pending() && !Flush(c, h, to, !up)) return false;
      if (static_cast<size_t>(n) < kScratch && !finSeen) break;  // read all there was
    }
    return MaybeShut(c, h, to);
  }

  // A socket error (RST while we waited for nothing else): end the flow by its cause.
  void OnError(Conn* c, bool client) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(client ? c->cfd : c->ufd, SOL_SOCKET, SO_ERROR, &err, &len);
    Failed(c, client, err ? err : ECONNRESET);
  }

  void OnConn(Conn* c, bool client, uint32_t events) {
    if (c->state == Conn::kDone) return;
    if (c->state == Conn::kConnecting) {
      if (!client) OnConnectReady(c, events);
      return;
    }
    if (c->state != Conn::kRelaying) return;
    Half* in = client ? &c->up : &c->down;    // read from this socket
    Half* out = client ? &c->down : &c->up;   // owed to this socket
    int fd = client ? c->cfd : c->ufd;
    if ((events & EPOLLERR) && !(events & EPOLLIN)) return OnError(c, client);
    if ((events & EPOLLOUT) && out->Pending() && !Flush(c, out, fd, client)) return;
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !in->eof && !in->Pending()) {
      if (!Transfer(c, client, events & EPOLLRDHUP)) return;
    }
    Sync(c);
    // A socket shut both ways with nothing asked of it reports EPOLLHUP forever.
    uint32_t mask = client ? c->cMask : c->uMask;
    if ((events & EPOLLHUP) && mask == 0) {
      epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
      (client ? c->cReg : c->uReg) = false;
    }
  }

  static int OpenReserve() { return open("/dev/null", O_RDONLY | O_CLOEXEC); }

  // Reopens the reserve descriptor once one is free; listeners that rested for want of it
  // accept again at once (each such round sheds one connection: progress, not a spin).
  void RestoreReserve() {
    if (reserve_ >= 0 || destroyed_) return;
    reserve_ = OpenReserve();
    if (reserve_ >= 0) ResumeListeners();
  }

  void ResumeListeners() {
    for (auto& [tag, l] : listeners_) {
      if (!l->paused) continue;
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = reinterpret_cast<uintptr_t>(l) | kListener;
      if (epoll_ctl(epfd_, EPOLL_CTL_ADD, l->fd, &ev) == 0) l->paused = false;
    }
  }

  // Accepts up to a batch; true when the batch ended with more possibly queued.
  bool OnAccept(Listener* l) {
    for (int i = 0; i < kAcceptBatch; i++) {
      sockaddr_storage peer{};
      socklen_t len = sizeof peer;
      int fd = accept4(l->fd, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EAGAIN) return false;
        int err = errno;
        Record r{kRecordAcceptFailed, 0};
        r.tag = l->tag;
        r.a = "accept: " + ErrName(err);
        records_.push_back(std::move(r));
        if ((err == EMFILE || err == ENFILE) && reserve_ >= 0) {
          // The reserve's descriptor takes one connection, reported next: JS sheds it.
          close(reserve_);
          reserve_ = -1;
          len = sizeof peer;
          fd = accept4(l->fd, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        }
        if (fd < 0) {
          RestoreReserve();
          // Out of fds (or memory): rest until a descriptor is free or the next tick, rather
          // than spin on a full queue.
          epoll_ctl(epfd_, EPOLL_CTL_DEL, l->fd, nullptr);
          l->paused = true;
          return false;
        }
        i = kAcceptBatch;  // this one, then rest until the reserve is back
        epoll_ctl(epfd_, EPOLL_CTL_DEL, l->fd, nullptr);
        l->paused = true;
      }
      Conn* c = Waiting(fd);
      Record r{kRecordAccepted, c->id};
      r.tag = l->tag;
      r.a = AddrText(peer, &r.pa);
      if (l->flags & (kListenLocal | kListenOriginalDst)) {
        sockaddr_storage dst{};
        socklen_t dlen = sizeof dst;
        bool got = false;
        if (l->flags & kListenOriginalDst) {
          bool v4 = peer.ss_family == AF_INET ||
                    IN6_IS_ADDR_V4MAPPED(&reinterpret_cast<sockaddr_in6*>(&peer)->sin6_addr);
          got = v4 ? getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &dlen) == 0
                   : getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &dlen) == 0;
        }
        dlen = sizeof dst;
        if (!got) got = getsockname(fd, reinterpret_cast<sockaddr*>(&dst), &dlen) == 0;
        if (got) {
          r.b = AddrText(dst, &r.pb);
          r.hasDst = true;
        }
      }
      records_.push_back(std::move(r));
    }
    return true;
  }

  void OnReady() {
    if (destroyed_) return;
    epoll_event events[256];
    int n = epoll_wait(epfd_, events, 256, 0);
    for (int i = 0; i < n; i++) {
      uintptr_t data = events[i].data.u64;
      Kind kind = static_cast<Kind>(data & 3);
      if (kind == kListener) {
        OnAccept(reinterpret_cast<Listener*>(data & ~uintptr_t{3}));
      } else {
        OnConn(reinterpret_cast<Conn*>(data & ~uintptr_t{3}), kind == kClientSide, events[i].events);
      }
    }
    for (Conn* c : graveyard_) Free(c);
    graveyard_.clear();
    Deliver();
    RestoreReserve();
  }

  void OnTick() {
    if (destroyed_) return;
    RestoreReserve();
    ResumeListeners();
    if (connecting_ > 0) {
      uint64_t now = NowMs();
      std::vector<Conn*> late;
      for (auto& [id, c] : conns_) {
        if (c->state == Conn::kConnecting && now >= c->connectDeadline) late.push_back(c);
      }
      for (Conn* c : late) ConnectFailed(c, "timeout");
    }
    Deliver();
  }

  // Hands the records to JS in one call; JS may call back into the relay meanwhile. Numbers
  // go in one Float64Array, strings in one array, first bytes in one Buffer: a few napi calls
  // per batch instead of one per value, and no heap number per value.
  void Deliver() {
    if (delivering_ || records_.empty() || destroyed_) return;
    delivering_ = true;
    while (!records_.empty() && !destroyed_) {
      std::vector<Record> batch;
      batch.swap(records_);
      size_t numbers = 0, firstTotal = 0;
      for (const Record& r : batch) {
        numbers += kNumbers[r.type];
        if (r.type == kRecordFinished && r.hasFirst) firstTotal += r.first.size();
      }
      napi_handle_scope scope;
      napi_open_handle_scope(env_, &scope);
      napi_value args[3], cb, recv, buffer;
      double* num = nullptr;
      if (napi_create_arraybuffer(env_, numbers * sizeof(double), reinterpret_cast<void**>(&num), &buffer) !=
              napi_ok ||
          napi_create_typedarray(env_, napi_float64_array, numbers, buffer, 0, &args[0]) != napi_ok ||
          napi_create_array(env_, &args[1]) != napi_ok) {
        // Out of memory: the records wait for the next tick (OnTick) rather than go missing.
        napi_value ignored;
        napi_get_and_clear_last_exception(env_, &ignored);
        napi_close_handle_scope(env_, scope);
        records_.swap(batch);
        break;
      }
      char* firsts = nullptr;
      if (firstTotal == 0 ||
          napi_create_buffer(env_, firstTotal, reinterpret_cast<void**>(&firsts), &args[2]) != napi_ok) {
        firsts = nullptr;
        napi_get_null(env_, &args[2]);
      }
      size_t n = 0, firstAt = 0;
      uint32_t k = 0;
      auto str = [&](const std::string& text) {
        napi_value v;
        napi_create_string_latin1(env_, text.data(), text.size(), &v);
        napi_set_element(env_, args[1], k++, v);
      };
      for (Record& r : batch) {
        num[n++] = r.type;
        switch (r.type) {
          case kRecordAccepted:
            num[n++] = r.id, num[n++] = r.tag, num[n++] = r.pa, num[n++] = r.hasDst ? static_cast<double>(r.pb) : -1.0;
            str(r.a);
            if (r.hasDst) str(r.b);
            break;
          case kRecordDialed:
            num[n++] = r.id;
            break;
          case kRecordDialFailed:
            num[n++] = r.id;
            str(r.a);
            break;
          case kRecordFinished: {
            num[n++] = r.id, num[n++] = r.reason, num[n++] = static_cast<double>(r.in), num[n++] = static_cast<double>(r.out);
            if (r.hasFirst && firsts) {
              memcpy(firsts + firstAt, r.first.data(), r.first.size());
              num[n++] = static_cast<double>(firstAt);
              firstAt += r.first.size();
              num[n++] = static_cast<double>(firstAt);
            } else {
              num[n++] = -1, num[n++] = -1;
            }
            num[n++] = r.hasDetail ? 1 : 0;
            if (r.hasDetail) str(r.b);
            break;
          }
          case kRecordAcceptFailed:
            num[n++] = r.tag;
            str(r.a);
            break;
        }
      }
      napi_get_reference_value(env_, callback_, &cb);
      napi_get_reference_value(env_, resource_, &recv);
      napi_status status = napi_make_callback(env_, async_, recv, cb, 3, args, nullptr);
      if (status == napi_pending_exception) {
        napi_value err;
        napi_get_and_clear_last_exception(env_, &err);
        napi_fatal_exception(env_, err);
      }
      napi_close_handle_scope(env_, scope);
    }
    delivering_ = false;
  }

  napi_env env_;
  napi_ref callback_ = nullptr;
  napi_ref resource_ = nullptr;
  napi_async_context async_ = nullptr;
  double* counters_;
  int epfd_ = -1;
  char* scratch_ = nullptr;
  uv_poll_t poll_{};
  uv_timer_t timer_{};
  int pendingClose_ = 0;
  bool destroyed_ = false, released_ = false, orphaned_ = false, delivering_ = false;
  uint32_t nextId_ = 1;
  int connecting_ = 0;
  int reserve_ = -1;  // /dev/null, held for the accept that sheds a flow when fds run out
  std::unordered_map<uint32_t, Listener*> listeners_;
  std::unordered_map<uint32_t, Conn*> conns_;
  std::vector<Conn*> graveyard_;
  std::vector<Record> records_;
};

// ---- JS surface ------------------------------------------------------------------------

napi_value Throw(napi_env env, const char* message) {
  napi_throw_error(env, nullptr, message);
  return nullptr;
}

Relay* Self(napi_env env, napi_callback_info info, size_t* argc, napi_value* argv) {
  napi_value self;
  void* data = nullptr;
  if (napi_get_cb_info(env, info, argc, argv, &self, nullptr) != napi_ok) return nullptr;
  if (napi_unwrap(env, self, &data) != napi_ok || !data) {
    Throw(env, "not a Relay");
    return nullptr;
  }
  auto* relay = static_cast<Relay*>(data);
  if (relay->destroyed()) {
    Throw(env, "relay destroyed");
    return nullptr;
  }
  return relay;
}

bool U32(napi_env env, napi_value v, uint32_t* out) {
  return napi_get_value_uint32(env, v, out) == napi_ok;
}

// The relay and the first argument of a method that takes one number (a flow id, an fd, a
// tag); nullptr after throwing `usage`. argv gets the rest, up to *argc.
Relay* WithNumber(napi_env env, napi_callback_info info, const char* usage, uint32_t* n, size_t* argc = nullptr,
                  napi_value* argv = nullptr) {
  size_t count = 2;
  napi_value args[2];
  Relay* r = Self(env, info, &count, args);
  if (!r) return nullptr;
  if (count < 1 || !U32(env, args[0], n)) {
    Throw(env, usage);
    return nullptr;
  }
  if (argc && argv) {
    *argc = count - 1;
    if (count > 1) argv[0] = args[1];
  }
  return r;
}

double NumberOr(napi_env env, napi_value v, double fallback) {
  double d;
  return napi_get_value_double(env, v, &d) == napi_ok ? d : fallback;
}

std::string String(napi_env env, napi_value v) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, nullptr, 0, &len) != napi_ok) return "";
  std::string s(len, '\0');
  napi_get_value_string_utf8(env, v, s.data(), len + 1, &len);
  return s;
}

napi_value Undefined(napi_env env) {
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}

napi_value MessageOrUndefined(napi_env env, const std::string& message) {
  if (message.empty()) return Undefined(env);
  napi_value v;
  napi_create_string_utf8(env, message.data(), message.size(), &v);
  return v;
}

// new Relay(onRecords(batch: unknown[]), counters: Float64Array(2))
napi_value New(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], self;
  napi_get_cb_info(env, info, &argc, argv, &self, nullptr);
  napi_valuetype type;
  bool isTyped = false;
  if (argc < 2 || napi_typeof(env, argv[0], &type) != napi_ok || type != napi_function ||
      napi_is_typedarray(env, argv[1], &isTyped) != napi_ok || !isTyped) {
    napi_throw_type_error(env, nullptr, "Usage: new Relay(onRecords: Function, counters: Float64Array(2))");
    return nullptr;
  }
  napi_typedarray_type ta;
  size_t length;
  void* data;
  napi_get_typedarray_info(env, argv[1], &ta, &length, &data, nullptr, nullptr);
  if (ta != napi_float64_array || length < 2) {
    napi_throw_type_error(env, nullptr, "counters: a Float64Array of length 2");
    return nullptr;
  }
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) return Throw(env, ("epoll_create1: " + ErrName(errno)).c_str());
  auto* scratch = static_cast<char*>(malloc(kScratch));
  if (!scratch) {
    close(epfd);
    return Throw(env, "relay: out of memory");
  }
  auto* relay = new Relay(env, argv[0], static_cast<double*>(data), epfd, scratch);
  napi_set_named_property(env, self, "_counters", argv[1]);  // keeps the memory alive
  napi_wrap(
      env, self, relay, [](napi_env, void* data, void*) { static_cast<Relay*>(data)->Orphan(); }, nullptr, nullptr);
  return self;
}

// listen(fd, tag, flags): the relay accepts on fd (and closes it on unlisten).
napi_value Listen(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  Relay* r = Self(env, info, &argc, argv);
  if (!r) return nullptr;
  uint32_t fd, tag, flags;
  if (argc < 3 || !U32(env, argv[0], &fd) || !U32(env, argv[1], &tag) || !U32(env, argv[2], &flags))
    return Throw(env, "Usage: listen(fd, tag, flags)");
  std::string err = r->Listen(static_cast<int>(fd), tag, flags);
  if (!err.empty()) return Throw(env, err.c_str());
  return Undefined(env);
}

napi_value Unlisten(napi_env env, napi_callback_info info) {
  uint32_t tag;
  Relay* r = WithNumber(env, info, "Usage: unlisten(tag)", &tag);
  if (!r) return nullptr;
  r->Unlisten(tag);
  return Undefined(env);
}

// forward(id, host, port, header|null, localIp|null, localPort, transparent, mark, timeoutMs,
//         firstCap, maxIn, maxOut): undefined, or why it could not start.
napi_value Forward(napi_env env, napi_callback_info info) {
  size_t argc = 12;
  napi_value argv[12];
  Relay* r = Self(env, info, &argc, argv);
  if (!r) return nullptr;
  uint32_t id;
  if (argc < 12 || !U32(env, argv[0], &id)) return Throw(env, "Usage: forward(id, host, port, ...)");
  Relay::Dial d;
  d.host = String(env, argv[1]);
  U32(env, argv[2], &d.port);
  bool isBuffer = false;
  napi_is_buffer(env, argv[3], &isBuffer);
  if (isBuffer) {
    void* data;
    size_t len;
    napi_get_buffer_info(env, argv[3], &data, &len);
    d.header.assign(static_cast<char*>(data), len);
  }
  napi_valuetype type;
  napi_typeof(env, argv[4], &type);
  if (type == napi_string) d.localIp = String(env, argv[4]);
  U32(env, argv[5], &d.localPort);
  napi_get_value_bool(env, argv[6], &d.transparent);
  U32(env, argv[7], &d.mark);
  U32(env, argv[8], &d.timeoutMs);
  U32(env, argv[9], &d.firstCap);
  d.maxIn = static_cast<uint64_t>(NumberOr(env, argv[10], 0));
  d.maxOut = static_cast<uint64_t>(NumberOr(env, argv[11], 0));
  return MessageOrUndefined(env, r->Forward(id, d));
}

napi_value Adopt(napi_env env, napi_callback_info info) {
  uint32_t fd;
  Relay* r = WithNumber(env, info, "Usage: adopt(fd)", &fd);
  if (!r) return nullptr;
  napi_value v;
  napi_create_double(env, static_cast<double>(r->Adopt(static_cast<int>(fd))), &v);
  return v;
}

napi_value Take(napi_env env, napi_callback_info info) {
  uint32_t id;
  Relay* r = WithNumber(env, info, "Usage: take(id)", &id);
  if (!r) return nullptr;
  napi_value v;
  napi_create_int32(env, r->Take(id), &v);
  return v;
}

napi_value CloseFlow(napi_env env, napi_callback_info info) {
  uint32_t id;
  size_t rest = 0;
  napi_value argv[1];
  Relay* r = WithNumber(env, info, "Usage: close(id, reset?)", &id, &rest, argv);
  if (!r) return nullptr;
  bool reset = false;
  if (rest > 0) napi_get_value_bool(env, argv[0], &reset);
  r->Close(id, reset);
  return Undefined(env);
}

napi_value Counters(napi_env env, napi_callback_info info) {
  uint32_t id;
  Relay* r = WithNumber(env, info, "Usage: counters(id)", &id);
  if (!r) return nullptr;
  napi_value v;
  napi_get_boolean(env, r->Counters(id), &v);
  return v;
}

napi_value FirstBytes(napi_env env, napi_callback_info info) {
  uint32_t id;
  Relay* r = WithNumber(env, info, "Usage: firstBytes(id)", &id);
  if (!r) return nullptr;
  const std::string* first = r->First(id);
  napi_value v;
  if (first) napi_create_buffer_copy(env, first->size(), first->data(), nullptr, &v);
  else napi_get_null(env, &v);
  return v;
}

napi_value Destroy(napi_env env, napi_callback_info info) {
  napi_value self;
  void* data = nullptr;
  napi_get_cb_info(env, info, nullptr, nullptr, &self, nullptr);
  if (napi_unwrap(env, self, &data) == napi_ok && data) static_cast<Relay*>(data)->Destroy();
  return Undefined(env);
}

}  // namespace

napi_value InitRelay(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"listen", nullptr, Listen, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"unlisten", nullptr, Unlisten, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"forward", nullptr, Forward, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"take", nullptr, Take, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"adopt", nullptr, Adopt, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"close", nullptr, CloseFlow, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"counters", nullptr, Counters, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"firstBytes", nullptr, FirstBytes, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"destroy", nullptr, Destroy, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_value cls;
  napi_define_class(env, "Relay", NAPI_AUTO_LENGTH, New, nullptr, sizeof methods / sizeof methods[0], methods,
                    &cls);
  napi_set_named_property(env, exports, "Relay", cls);
  // boundary.h's tables: {name: value} objects and the close reasons' names by code.
  auto table = [&](const char* name, const NamedValue* entries, size_t count) {
    napi_value object, value;
    napi_create_object(env, &object);
    for (size_t i = 0; i < count; i++) {
      napi_create_uint32(env, entries[i].value, &value);
      napi_set_named_property(env, object, entries[i].name, value);
    }
    napi_set_named_property(env, exports, name, object);
  };
  table("relayRecords", kRecordTags, sizeof kRecordTags / sizeof kRecordTags[0]);
  table("relayListen", kListenFlags, sizeof kListenFlags / sizeof kListenFlags[0]);
  napi_value reasons, name;
  napi_create_array_with_length(env, kCloseCodes, &reasons);
  for (uint32_t i = 0; i < kCloseCodes; i++) {
    napi_create_string_utf8(env, kCloseNames[i], NAPI_AUTO_LENGTH, &name);
    napi_set_element(env, reasons, i, name);
  }
  napi_set_named_property(env, exports, "relayCloseReasons", reasons);
  return exports;
}
