// The relay's epoll core (relay_core.h says what it does and does not do).
#include "relay_core.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "address.h"
#include "original_dst.h"
#include "socket.h"

namespace hg {

namespace {

constexpr size_t kScratch = 256 * 1024;  // one read at most (64 KiB cost 25% more CPU per GB)
constexpr int kAcceptBatch = 64;          // accepts per readiness event
constexpr int kReadsPerEvent = 4;         // fairness between flows

int OpenReserve() { return open("/dev/null", O_RDONLY | O_CLOEXEC); }

// CLOCK_MONOTONIC in ms, as libuv's uv_hrtime() reads it.
uint64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

void FreeHalf(Half& h) {
  free(h.buf);
  h.buf = nullptr;
  h.len = h.off = 0;
}

}  // namespace

RelayCore::~RelayCore() {
  Shutdown();
  Release();
}

std::string RelayCore::Open() {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) return "epoll_create1: " + ErrName(errno);
  scratch_ = static_cast<char*>(malloc(kScratch));
  if (!scratch_) {
    Release();
    return "relay: out of memory";
  }
  reserve_ = OpenReserve();
  return "";
}

void RelayCore::Shutdown() {
  shutDown_ = true;
  for (auto& [tag, l] : listeners_) {
    close(l->fd);
    delete l;
  }
  listeners_.clear();
  for (auto& [id, c] : conns_) Free(c);
  conns_.clear();
  for (Conn* c : graveyard_) Free(c);
  graveyard_.clear();
  if (reserve_ >= 0) close(reserve_);
  reserve_ = -1;
}

void RelayCore::Release() {
  if (epfd_ >= 0) close(epfd_);
  epfd_ = -1;
  free(scratch_);
  scratch_ = nullptr;
}

std::string RelayCore::Listen(int fd, uint32_t tag, uint32_t flags) {
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
  return "";
}

void RelayCore::Drain(uint32_t tag) {
  auto it = listeners_.find(tag);
  if (it == listeners_.end()) return;
  while (OnAccept(it->second)) {
  }
}

void RelayCore::Unlisten(uint32_t tag) {
  auto it = listeners_.find(tag);
  if (it == listeners_.end()) return;
  close(it->second->fd);  // also leaves epoll
  delete it->second;
  listeners_.erase(it);
}

Conn* RelayCore::Find(uint32_t id) const {
  auto it = conns_.find(id);
  return it == conns_.end() ? nullptr : it->second;
}

int64_t RelayCore::Adopt(int fd) {
  int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) return -errno;
  int fl = fcntl(own, F_GETFL);
  if (fl >= 0) fcntl(own, F_SETFL, fl | O_NONBLOCK);
  return Waiting(own)->id;
}

int RelayCore::Take(uint32_t id) {
  Conn* c = Find(id);
  if (!c || c->state != Conn::kWaiting) return -1;
  int fd = c->cfd;
  c->cfd = -1;
  conns_.erase(id);
  Free(c);
  return fd;
}

void RelayCore::Close(uint32_t id, bool reset) {
  Conn* c = Find(id);
  if (!c) return;
  if (reset && c->cfd >= 0) {
    linger lg{1, 0};
    setsockopt(c->cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  conns_.erase(id);
  Free(c);
  RestoreReserve();
}

std::string RelayCore::Forward(uint32_t id, const Dial& d, uint32_t* fromPort) {
  *fromPort = 0;
  Conn* c = Find(id);
  if (!c || c->state != Conn::kWaiting) return "no such flow waiting";
  sockaddr_storage to;
  socklen_t toLen;
  if (!ParseAddress(d.host.c_str(), d.port, &to, &toLen)) return "not an address: " + d.host;
  char* header = nullptr;
  if (!d.header.empty() && !(header = static_cast<char*>(malloc(d.header.size())))) return "out of memory";
  c->where = (to.ss_family == AF_INET6 ? "[" + d.host + "]" : d.host) + ":" + std::to_string(d.port);
  std::string error;
  int fd = Connect(d, to, toLen, d.localPort, &error);
  if (fd < 0 && d.localPort != 0 && (error.find("EADDRINUSE") != std::string::npos ||
                                      error.find("EADDRNOTAVAIL") != std::string::npos)) {
    fd = Connect(d, to, toLen, 0, &error);  // the attacker's port is taken here: any port
    sockaddr_storage from;
    socklen_t fromLen = sizeof from;
    if (fd >= 0 && getsockname(fd, reinterpret_cast<sockaddr*>(&from), &fromLen) == 0) {
      AddressText(from, fromPort, false);
    }
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

bool RelayCore::Counters(uint32_t id, uint64_t* in, uint64_t* out) const {
  Conn* c = Find(id);
  if (!c) return false;
  *in = c->up.bytes;
  *out = c->down.bytes;
  return true;
}

const std::string* RelayCore::First(uint32_t id) const {
  Conn* c = Find(id);
  return c && !c->first.empty() ? &c->first : nullptr;
}

int RelayCore::Connect(const Dial& d, const sockaddr_storage& to, socklen_t toLen, uint32_t localPort, std::string* error) {
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
    if (!ParseAddress(d.localIp.c_str(), localPort, &from, &fromLen) || from.ss_family != family) {
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

void RelayCore::Free(Conn* c) {
  if (c->state == Conn::kConnecting) connecting_--;
  if (c->cfd >= 0) close(c->cfd);
  if (c->ufd >= 0) close(c->ufd);
  FreeHalf(c->up);
  FreeHalf(c->down);
  delete c;
}

// A new flow on the attacker's socket `fd`, waiting for the owner to forward or take it.
Conn* RelayCore::Waiting(int fd) {
  auto* c = new Conn{};
  c->id = nextId_++;
  if (nextId_ == 0) nextId_ = 1;
  c->cfd = fd;
  conns_[c->id] = c;
  return c;
}

// Registers each socket for what its flow needs now.
void RelayCore::Sync(Conn* c) {
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

void RelayCore::SetMask(Conn* c, int fd, Kind kind, uint32_t mask, bool* reg, uint32_t* cur) {
  if (*reg && *cur == mask) return;
  epoll_event ev{};
  ev.events = mask;
  ev.data.u64 = reinterpret_cast<uintptr_t>(c) | kind;
  epoll_ctl(epfd_, *reg ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
  *reg = true;
  *cur = mask;
}

void RelayCore::Finish(Conn* c, CloseCode reason, const std::string& detail) {
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
  sink_->Push(std::move(r));
  // Closing leaves epoll; events already fetched for it see kDone. Freed after the batch.
  close(c->cfd);
  c->cfd = -1;
  if (c->ufd >= 0) close(c->ufd);
  c->ufd = -1;
  conns_.erase(c->id);
  graveyard_.push_back(c);
}

void RelayCore::ConnectFailed(Conn* c, const std::string& message) {
  connecting_--;
  close(c->ufd);
  c->ufd = -1;
  c->uReg = false;
  c->uMask = 0;
  FreeHalf(c->up);
  c->state = Conn::kWaiting;
  Record r{kRecordDialFailed, c->id};
  r.a = message;
  sink_->Push(std::move(r));
}

void RelayCore::OnConnectReady(Conn* c, uint32_t events) {
  if (events & (EPOLLERR | EPOLLHUP)) {  // writable alone means connected: no SO_ERROR to read
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return ConnectFailed(c, "connect " + ErrName(err) + " " + c->where);
  }
  connecting_--;
  c->state = Conn::kRelaying;
  sink_->Push(Record{kRecordDialed, c->id});
  if (c->up.Pending() && !Flush(c, &c->up, c->ufd, false)) return;
  // What the attacker sent during the dial goes out now, as HAProxy does, rather than a
  // loop turn later when epoll would report it: most clients speak first (HTTP, SSH).
  if (!c->up.Pending() && !Transfer(c, true, false)) return;
  Sync(c);
}

// Keeps the attacker's first bytes and enforces the byte caps. False: the flow ended.
bool RelayCore::Count(Conn* c, bool up, const char* data, size_t n) {
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
void RelayCore::Failed(Conn* c, bool client, int err) {
  if (err == ECONNRESET || err == EPIPE || err == ECONNABORTED || err == ETIMEDOUT) {
    Finish(c, client ? kClientReset : kServerReset);
  } else {
    Finish(c, kCloseError, std::string(client ? "client: " : "server: ") + ErrName(err));
  }
}

// Passes the FIN on once everything before it is out; ends the flow when both ways are done.
bool RelayCore::MaybeShut(Conn* c, Half* h, int to) {
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
bool RelayCore::Flush(Conn* c, Half* h, int to, bool toClient) {
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
bool RelayCore::Transfer(Conn* c, bool up, bool finSeen) {
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
void RelayCore::OnError(Conn* c, bool client) {
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(client ? c->cfd : c->ufd, SOL_SOCKET, SO_ERROR, &err, &len);
  Failed(c, client, err ? err : ECONNRESET);
}

void RelayCore::OnConn(Conn* c, bool client, uint32_t events) {
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

// Reopens the reserve descriptor once one is free; listeners that rested for want of it
// accept again at once (each such round sheds one connection: progress, not a spin).
void RelayCore::RestoreReserve() {
  if (reserve_ >= 0 || shutDown_) return;
  reserve_ = OpenReserve();
  if (reserve_ >= 0) ResumeListeners();
}

void RelayCore::ResumeListeners() {
  for (auto& [tag, l] : listeners_) {
    if (!l->paused) continue;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = reinterpret_cast<uintptr_t>(l) | kListener;
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, l->fd, &ev) == 0) l->paused = false;
  }
}

// Accepts up to a batch; true when the batch ended with more possibly queued.
bool RelayCore::OnAccept(Listener* l) {
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
      sink_->Push(std::move(r));
      if ((err == EMFILE || err == ENFILE) && reserve_ >= 0) {
        // The reserve's descriptor takes one connection, reported next: the owner sheds it.
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
    r.a = AddressText(peer, &r.pa, true);
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
        r.b = AddressText(dst, &r.pb, true);
        r.hasDst = true;
      }
    }
    sink_->Push(std::move(r));
  }
  return true;
}

void RelayCore::OnReady() {
  if (epfd_ < 0) return;
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
  RestoreReserve();
}

void RelayCore::OnTick() {
  if (epfd_ < 0) return;
  RestoreReserve();
  ResumeListeners();
  if (connecting_ > 0) {
    uint64_t now = NowMs();
    std::vector<Conn*> late;
    for (auto& [id, c] : conns_) {
      if (c->state == Conn::kConnecting && now >= c->connectDeadline) late.push_back(c);
    }
    for (Conn* c : late) {
      // libuv runs timers before it polls: after a stall of the loop, a connect that
      // completed meanwhile is still unreported here. Ask the socket before timing it out.
      pollfd p{c->ufd, POLLOUT, 0};
      if (poll(&p, 1, 0) == 1 && (p.revents & (POLLOUT | POLLERR | POLLHUP))) {
        uint32_t events = 0;
        if (p.revents & POLLOUT) events |= EPOLLOUT;
        if (p.revents & POLLERR) events |= EPOLLERR;
        if (p.revents & POLLHUP) events |= EPOLLHUP;
        OnConnectReady(c, events);
      } else {
        ConnectFailed(c, "timeout");
      }
    }
  }
}

}  // namespace hg
