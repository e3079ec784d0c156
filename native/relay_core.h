// The relay's epoll core: accept, dial, copy and close for the flows its owner hands it.
// No N-API and no libuv: relay.cc drives it from Node's loop (its epoll fd watched by one
// uv_poll_t, OnTick() from a uv timer) and turns its records into JS batches;
// native/test/relay_core_test.cc drives it over loopback sockets.
//
// It reads hostile peers, so every read is bounded, every buffer is owned by one
// connection, and a peer can only end its own connection. Level-triggered epoll; a
// direction whose peer's socket is full stops reading until it drains (backpressure). No
// splice(): to a peer on this host (loopback, a container's veth) its page references cost
// the reader more than our copy saves (docs/performance.md).
#pragma once
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "boundary.h"

namespace hg {

// What happened, one per event; relay.cc's header comment gives each tag's numbers and
// strings as JS reads them.
struct Record {
  Record(uint8_t t, uint32_t i) : type(t), id(i) {}
  uint8_t type;  // RecordTag
  uint32_t id;
  uint32_t tag = 0;  // the listener's (accepted, acceptFailed)
  std::string a, b;  // src / dst ip, message, detail
  uint32_t pa = 0, pb = 0;
  bool hasDst = false;
  uint64_t in = 0, out = 0;
  std::string first;
  bool hasFirst = false, hasDetail = false;
  CloseCode reason = kCloseError;
};

// Where the core's records go, in order, as they happen (inside the core's calls).
class RecordSink {
 public:
  virtual ~RecordSink() = default;
  virtual void Push(Record&& record) = 0;
};

// A server to dial for a waiting flow, and the flow's limits from then on.
struct Dial {
  std::string host;  // an address literal
  uint32_t port = 0;
  std::string header;   // sent before the attacker's bytes (PROXY protocol)
  std::string localIp;  // empty: let the kernel choose
  uint32_t localPort = 0;
  bool transparent = false;
  uint32_t mark = 0;
  uint32_t timeoutMs = 5000;
  uint32_t firstCap = 0;
  uint64_t maxIn = 0, maxOut = 0;  // 0: no cap
};

struct Listener {
  int fd;
  uint32_t tag;
  uint32_t flags;
  bool paused = false;  // out of fds: taken out of epoll until a descriptor is free or the next tick
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
  std::string where;                 // "host:port" of the server being dialed
  CloseCode firstEnd = kCloseCodes;  // kCloseCodes: neither side closed yet
};

class RelayCore {
 public:
  explicit RelayCore(RecordSink* sink) : sink_(sink) {}
  ~RelayCore();
  RelayCore(const RelayCore&) = delete;
  RelayCore& operator=(const RelayCore&) = delete;

  // Creates the epoll fd and the read buffer: "" or why not ("epoll_create1: EMFILE").
  std::string Open();
  // The epoll fd: readable when OnReady() has work.
  int fd() const { return epfd_; }
  // No listener and no flow.
  bool Idle() const { return listeners_.empty() && conns_.empty(); }

  // Accepts on fd (made non-blocking; closed by Unlisten) as listener `tag`; records 1 and
  // 5. flags: kListen*. "" or why not.
  //
  // Out of file descriptors, the core keeps one in reserve (as nginx and HAProxy do): it
  // closes it, accepts one connection and reports it as record 1 right after the record 5
  // that says EMFILE or ENFILE, so the owner can shed that flow instead of the listener
  // staying readable and the queue waiting; the reserve is reopened once a descriptor is
  // free again.
  std::string Listen(int fd, uint32_t tag, uint32_t flags);
  // Accepts what the kernel has queued on listener `tag` now (records 1 and 5), so that the
  // owner can report those flows before Unlisten: close() would reset connections that
  // their clients saw accepted.
  void Drain(uint32_t tag);
  // Closes listener `tag`'s socket; flows it accepted go on.
  void Unlisten(uint32_t tag);
  // Takes back a flow the owner has read from: a dup of its fd (the owner closes its
  // own). The new flow's id, or -errno when the fd cannot be duplicated.
  int64_t Adopt(int fd);
  // Hands the attacker's socket of a waiting flow to the owner; the core forgets the flow.
  // -1: no such flow waiting.
  int Take(uint32_t id);
  // Ends a flow the owner decided to end; no record. reset: RST instead of FIN.
  void Close(uint32_t id, bool reset);
  // Starts dialing for a waiting flow; the outcome comes as record 2 or 3 (after which the
  // flow waits again). "" or why it cannot even start (the flow then stays waiting).
  // *fromPort: the local port the dial went out from when dial.localPort was taken, else 0.
  std::string Forward(uint32_t id, const Dial& dial, uint32_t* fromPort);
  // A flow's bytes so far: false when the core has no such flow.
  bool Counters(uint32_t id, uint64_t* in, uint64_t* out) const;
  // The attacker's first bytes so far; nullptr when none (or no such flow).
  const std::string* First(uint32_t id) const;

  // Handles what epoll reports now; never blocks.
  void OnReady();
  // Every 100 ms: reopens the reserve descriptor, resumes listeners paused for lack of
  // fds, times out dials.
  void OnTick();
  // Closes every listener, flow and the reserve descriptor (no records); the epoll fd
  // stays until Release().
  void Shutdown();
  // Closes the epoll fd and frees the read buffer.
  void Release();

 private:
  enum Kind : uintptr_t { kListener = 0, kClientSide = 1, kServerSide = 2 };

  Conn* Find(uint32_t id) const;
  Conn* Waiting(int fd);
  void Free(Conn* c);
  int Connect(const Dial& d, const sockaddr_storage& to, socklen_t toLen, uint32_t localPort, std::string* error);
  void Sync(Conn* c);
  void SetMask(Conn* c, int fd, Kind kind, uint32_t mask, bool* reg, uint32_t* cur);
  void Finish(Conn* c, CloseCode reason, const std::string& detail = "");
  void ConnectFailed(Conn* c, const std::string& message);
  void OnConnectReady(Conn* c, uint32_t events);
  bool Count(Conn* c, bool up, const char* data, size_t n);
  void Failed(Conn* c, bool client, int err);
  bool MaybeShut(Conn* c, Half* h, int to);
  bool Flush(Conn* c, Half* h, int to, bool toClient);
  bool Transfer(Conn* c, bool up, bool finSeen);
  void OnError(Conn* c, bool client);
  void OnConn(Conn* c, bool client, uint32_t events);
  bool OnAccept(Listener* l);
  void RestoreReserve();
  void ResumeListeners();

  RecordSink* sink_;
  int epfd_ = -1;
  char* scratch_ = nullptr;
  uint32_t nextId_ = 1;
  int connecting_ = 0;
  int reserve_ = -1;  // /dev/null, held for the accept that sheds a flow when fds run out
  bool shutDown_ = false;
  std::unordered_map<uint32_t, Listener*> listeners_;
  std::unordered_map<uint32_t, Conn*> conns_;
  std::vector<Conn*> graveyard_;
};

}  // namespace hg
