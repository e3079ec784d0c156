// UDP for honeygate's listeners and upstream sockets (src/gateway/udp):
//
//   udpSocket(host, port, { transparent?, reuseAddr?, mark?, origDst? }) -> fd
//     a bound SOCK_DGRAM socket. transparent: IP_TRANSPARENT (bind a non-local address: the
//     attacker's, for a transparent forward; the original destination, to answer from it).
//     origDst: IP_RECVORIGDSTADDR / IPV6_RECVORIGDSTADDR (a tproxy listener's socket).
//     With HONEYGATE_RELAY=off, Node adopts the fd with dgram's bind({ fd }).
//
//   udpConnect(fd, host, port): connect() it to its one peer (a forward's server).
//
//   new UdpPort(fd, onBatch(numbers: Float64Array, hosts: string[], payload: Buffer), addresses?)
//     reads fd with recvmmsg in batches of kBatch (dgram cannot read ancillary data, and
//     pays a callback per datagram), each datagram as 4 numbers [srcPort, dstPort, start,
//     end] (bytes payload[start, end)) and, unless addresses is false, 2 strings [srcHost,
//     dstHost]; dstHost is "" when the kernel gave no original destination.
//     send(payloads, start, hosts | null, ports | null) sends up to kSendBatch with one
//     sendmmsg; waitWritable() asks for one onBatch() call without arguments once the
//     socket takes datagrams again. close() stops and closes the fd.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "address.h"
#include "napi_util.h"
#include "socket.h"
#include "udp.h"

namespace hg {
namespace {

constexpr const char kUdpSocketUsage[] =
    "Usage: udpSocket(host: string, port: number, options?: { transparent?: boolean, reuseAddr?: boolean, "
    "mark?: number, origDst?: boolean })";

bool GetBool(napi_env env, napi_value object, const char* name, bool* out) {
  napi_value value;
  napi_valuetype type;
  if (napi_get_named_property(env, object, name, &value) != napi_ok) return false;
  if (napi_typeof(env, value, &type) != napi_ok) return false;
  if (type == napi_undefined) return true;
  return napi_get_value_bool(env, value, out) == napi_ok;
}

napi_value UdpSocket(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  if (argc < 2 || !IsString(env, argv[0])) return Usage(env, kUdpSocketUsage);
  std::string host = GetString(env, argv[0]);
  double port;
  if (host.size() > 63 || strlen(host.c_str()) != host.size() || !GetInteger(env, argv[1], 0, 65535, &port))
    return Usage(env, kUdpSocketUsage);
  SocketOptions opts;
  opts.reuseAddr = false;
  bool origDst = false;
  if (argc >= 3) {
    napi_valuetype type;
    if (napi_typeof(env, argv[2], &type) != napi_ok) return nullptr;
    if (type != napi_undefined) {
      if (type != napi_object) return Usage(env, kUdpSocketUsage);
      napi_value mark;
      napi_valuetype markType;
      if (!GetBool(env, argv[2], "transparent", &opts.transparent) ||
          !GetBool(env, argv[2], "reuseAddr", &opts.reuseAddr) || !GetBool(env, argv[2], "origDst", &origDst) ||
          napi_get_named_property(env, argv[2], "mark", &mark) != napi_ok ||
          napi_typeof(env, mark, &markType) != napi_ok)
        return Usage(env, kUdpSocketUsage);
      if (markType != napi_undefined) {
        double m;
        if (!GetInteger(env, mark, 0, 4294967295.0, &m)) return Usage(env, kUdpSocketUsage);
        opts.mark = static_cast<uint32_t>(m);
      }
    }
  }
  sockaddr_storage addr;
  socklen_t addr_len;
  if (!ParseAddress(host.c_str(), static_cast<uint32_t>(port), &addr, &addr_len)) return Usage(env, kUdpSocketUsage);
  int family = addr.ss_family;
  SocketError error;
  int fd = OpenSocket(family, SOCK_NONBLOCK, opts, true, &error, SOCK_DGRAM);
  if (fd < 0) return ThrowSyscall(env, error.syscall, error.args, error.err);
  auto fail = [&](const char* syscall, const std::string& args) {
    int err = errno;
    close(fd);
    return ThrowSyscall(env, syscall, args, err);
  };
  int one = 1;
  if (origDst) {
    if (family == AF_INET && setsockopt(fd, SOL_IP, IP_RECVORIGDSTADDR, &one, sizeof one) != 0)
      return fail("setsockopt", "SOL_IP, IP_RECVORIGDSTADDR, 1");
    if (family == AF_INET6 && setsockopt(fd, SOL_IPV6, IPV6_RECVORIGDSTADDR, &one, sizeof one) != 0)
      return fail("setsockopt", "SOL_IPV6, IPV6_RECVORIGDSTADDR, 1");
  }
  std::string where = (family == AF_INET ? host : "[" + host + "]") + ":" + std::to_string(static_cast<int>(port));
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) return fail("bind", where);
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

constexpr unsigned kBatch = 32;
constexpr unsigned kSendBatch = 64;
constexpr size_t kDatagram = 65536;

// What recvmmsg reads into. Every UdpPort of a thread reads on that thread's loop and copies
// a batch out before calling JS, so one scratch per thread serves them all: a port costs a
// poll handle, not 2 MiB of buffers (a forward opens one port per flow).
struct Scratch {
  std::vector<char> buffers = std::vector<char>(kBatch * kDatagram);
  iovec iov[kBatch]{};
  mmsghdr msgs[kBatch]{};
  sockaddr_storage names[kBatch]{};
  char control[kBatch][CMSG_SPACE(sizeof(sockaddr_in6)) + 64]{};
  Scratch() {
    for (unsigned i = 0; i < kBatch; i++) {
      iov[i] = {buffers.data() + i * kDatagram, kDatagram};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
  }
};

Scratch& ThreadScratch() {
  thread_local Scratch scratch;
  return scratch;
}

class UdpPort {
 public:
  UdpPort(napi_env env, int fd, napi_value onBatch, bool addresses) : env_(env), fd_(fd), addresses_(addresses) {
    callback_.Init(env, onBatch, "honeygate:udp");
    uv_loop_t* loop;
    napi_get_uv_event_loop(env, &loop);
    poll_.data = this;
    uv_poll_init(loop, &poll_, fd);
    Poll();
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    uv_poll_stop(&poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(&poll_), [](uv_handle_t* h) {
      auto* self = static_cast<UdpPort*>(h->data);
      close(self->fd_);
      self->handleClosed_ = true;
      if (self->orphaned_) delete self;
    });
    callback_.Release(env_);
  }

  void Orphan() {
    orphaned_ = true;
    if (!closed_) Close();
    else if (handleClosed_) delete this;
  }

  bool closed() const { return closed_; }

  // Asks for one onBatch() call without arguments when the socket can take datagrams again.
  void WaitWritable() {
    if (closed_) return;
    wantWritable_ = true;
    Poll();
  }

  // sendmmsg of msgs[0, n): the count sent, or -errno when the first one failed.
  int Send(mmsghdr* msgs, unsigned n) {
    if (closed_) return -EBADF;
    int sent;
    do sent = sendmmsg(fd_, msgs, n, MSG_DONTWAIT);
    while (sent < 0 && errno == EINTR);
    return sent < 0 ? -errno : sent;
  }

 private:
  void Poll() {
    uv_poll_start(&poll_, UV_READABLE | (wantWritable_ ? UV_WRITABLE : 0), [](uv_poll_t* p, int status, int events) {
      auto* self = static_cast<UdpPort*>(p->data);
      if (status < 0) events = UV_READABLE | (self->wantWritable_ ? UV_WRITABLE : 0);
      if (events & UV_READABLE) self->OnReadable();
      if ((events & UV_WRITABLE) && self->wantWritable_ && !self->closed_) {
        self->wantWritable_ = false;
        self->Poll();
        napi_handle_scope scope;
        napi_open_handle_scope(self->env_, &scope);
        self->callback_.Call(self->env_, 0, nullptr);
        napi_close_handle_scope(self->env_, scope);
      }
    });
  }

  void OnReadable() {
    Scratch& s = ThreadScratch();
    // At most a few batches per wakeup: other handles get their turn under a flood.
    for (int round = 0; round < 8 && !closed_; round++) {
      for (unsigned i = 0; i < kBatch; i++) {
        s.msgs[i].msg_hdr.msg_name = addresses_ ? &s.names[i] : nullptr;
        s.msgs[i].msg_hdr.msg_namelen = addresses_ ? sizeof s.names[i] : 0;
        s.msgs[i].msg_hdr.msg_control = addresses_ ? s.control[i] : nullptr;
        s.msgs[i].msg_hdr.msg_controllen = addresses_ ? sizeof s.control[i] : 0;
        s.msgs[i].msg_hdr.msg_flags = 0;
      }
      int n = recvmmsg(fd_, s.msgs, kBatch, MSG_DONTWAIT, nullptr);
      // EAGAIN; or an ICMP error queued on a connected socket (ECONNREFUSED), which this
      // call consumed: the next wakeup reads what follows it.
      if (n <= 0) return;
      Deliver(s, static_cast<unsigned>(n));
      if (static_cast<unsigned>(n) < kBatch) return;
    }
  }

  // The original destination from IP_ORIGDSTADDR / IPV6_ORIGDSTADDR, "" without one.
  static std::string OrigDst(msghdr* h, uint32_t* port) {
    for (cmsghdr* c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
      sockaddr_storage ss{};
      if (c->cmsg_level == SOL_IP && c->cmsg_type == IP_ORIGDSTADDR && c->cmsg_len >= CMSG_LEN(sizeof(sockaddr_in))) {
        memcpy(&ss, CMSG_DATA(c), sizeof(sockaddr_in));
        return AddressText(ss, port, true);
      }
      if (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_ORIGDSTADDR &&
          c->cmsg_len >= CMSG_LEN(sizeof(sockaddr_in6))) {
        memcpy(&ss, CMSG_DATA(c), sizeof(sockaddr_in6));
        return AddressText(ss, port, true);
      }
    }
    return "";
  }

  void Deliver(Scratch& s, unsigned n) {
    napi_handle_scope scope;
    napi_open_handle_scope(env_, &scope);
    size_t total = 0;
    for (unsigned i = 0; i < n; i++) total += s.msgs[i].msg_len;
    napi_value args[3];
    double* num = nullptr;
    char* data = nullptr;
    if (!NewNumbers(env_, n * 4, &num, &args[0]) ||
        napi_create_array_with_length(env_, addresses_ ? n * 2 : 0, &args[1]) != napi_ok ||
        napi_create_buffer(env_, total ? total : 1, reinterpret_cast<void**>(&data), &args[2]) != napi_ok) {
      napi_value ignored;
      napi_get_and_clear_last_exception(env_, &ignored);
      napi_close_handle_scope(env_, scope);
      return;  // out of memory: these datagrams are lost, as the kernel would lose them
    }
    size_t at = 0;
    for (unsigned i = 0; i < n; i++) {
      size_t len = s.msgs[i].msg_len;
      if (len > kDatagram) len = kDatagram;  // MSG_TRUNC cannot apply here; kept as a bound on the copy
      memcpy(data + at, s.iov[i].iov_base, len);
      uint32_t srcPort = 0, dstPort = 0;
      if (addresses_) {
        std::string src = AddressText(s.names[i], &srcPort, true);
        std::string dst = OrigDst(&s.msgs[i].msg_hdr, &dstPort);
        napi_value sv, dv;
        napi_create_string_latin1(env_, src.data(), src.size(), &sv);
        napi_create_string_latin1(env_, dst.data(), dst.size(), &dv);
        napi_set_element(env_, args[1], i * 2, sv);
        napi_set_element(env_, args[1], i * 2 + 1, dv);
      }
      num[i * 4] = srcPort, num[i * 4 + 1] = dstPort, num[i * 4 + 2] = static_cast<double>(at);
      at += len;
      num[i * 4 + 3] = static_cast<double>(at);
    }
    callback_.Call(env_, 3, args);
    napi_close_handle_scope(env_, scope);
  }

  napi_env env_;
  int fd_;
  bool addresses_;
  BatchCallback callback_;  // one per port (each holds an async context): writable calls it too
  bool wantWritable_ = false;
  uv_poll_t poll_{};
  bool closed_ = false;
  bool handleClosed_ = false;
  bool orphaned_ = false;
};

UdpPort* Unwrap(napi_env env, napi_callback_info info, size_t* argc, napi_value* argv) {
  napi_value self;
  napi_get_cb_info(env, info, argc, argv, &self, nullptr);
  void* data = nullptr;
  if (napi_unwrap(env, self, &data) != napi_ok || !data) {
    Throw(env, "not a UdpPort");
    return nullptr;
  }
  return static_cast<UdpPort*>(data);
}

napi_value PortNew(napi_env env, napi_callback_info info) {
  static const char usage[] =
      "Usage: new UdpPort(fd: number, onBatch: Function, addresses?: boolean)";
  size_t argc = 3;
  napi_value argv[3], self;
  napi_get_cb_info(env, info, &argc, argv, &self, nullptr);
  double fd;
  napi_valuetype type;
  if (argc < 2 || !GetInteger(env, argv[0], 0, 2147483647.0, &fd) || napi_typeof(env, argv[1], &type) != napi_ok ||
      type != napi_function)
    return Usage(env, usage);
  bool addresses = true;
  if (argc >= 3) {
    if (napi_typeof(env, argv[2], &type) != napi_ok) return Usage(env, usage);
    if (type == napi_boolean) napi_get_value_bool(env, argv[2], &addresses);
    else if (type != napi_undefined) return Usage(env, usage);
  }
  int flags = fcntl(static_cast<int>(fd), F_GETFL);
  if (flags < 0 || fcntl(static_cast<int>(fd), F_SETFL, flags | O_NONBLOCK) != 0)
    return ThrowSyscall(env, "fcntl", std::to_string(static_cast<int>(fd)) + ", F_SETFL, O_NONBLOCK", errno);
  auto* port = new UdpPort(env, static_cast<int>(fd), argv[1], addresses);
  napi_wrap(
      env, self, port, [](napi_env, void* data, void*) { static_cast<UdpPort*>(data)->Orphan(); }, nullptr, nullptr);
  return self;
}

napi_value PortClose(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  UdpPort* port = Unwrap(env, info, &argc, nullptr);
  if (!port) return nullptr;
  port->Close();
  return Undefined(env);
}

napi_value PortWaitWritable(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  UdpPort* port = Unwrap(env, info, &argc, nullptr);
  if (!port) return nullptr;
  port->WaitWritable();
  return Undefined(env);
}

// send(payloads: Buffer[], start: number, hosts: string[] | null, ports: number[] | null)
//   sends payloads[start, ...), at most kSendBatch, with one sendmmsg: to hosts[i]:ports[i],
//   or to the connected peer when hosts is null. Returns the count sent, or -errno when the
//   first of them failed (EAGAIN: call waitWritable() and send the rest on onBatch()).
napi_value PortSend(napi_env env, napi_callback_info info) {
  static const char usage[] =
      "Usage: port.send(payloads: Buffer[], start: number, hosts: string[] | null, ports: number[] | null)";
  size_t argc = 4;
  napi_value argv[4];
  UdpPort* port = Unwrap(env, info, &argc, argv);
  if (!port) return nullptr;
  bool isArray = false;
  uint32_t length = 0;
  double start;
  if (argc < 4 || napi_is_array(env, argv[0], &isArray) != napi_ok || !isArray ||
      napi_get_array_length(env, argv[0], &length) != napi_ok || !GetInteger(env, argv[1], 0, length, &start))
    return Usage(env, usage);
  napi_valuetype hostsType;
  if (napi_typeof(env, argv[2], &hostsType) != napi_ok) return Usage(env, usage);
  bool addressed = hostsType != napi_null && hostsType != napi_undefined;
  uint32_t hostsLength = 0, portsLength = 0;
  if (addressed && (napi_is_array(env, argv[2], &isArray) != napi_ok || !isArray ||
                    napi_get_array_length(env, argv[2], &hostsLength) != napi_ok ||
                    napi_is_array(env, argv[3], &isArray) != napi_ok || !isArray ||
                    napi_get_array_length(env, argv[3], &portsLength) != napi_ok || hostsLength < length ||
                    portsLength < length))
    return Usage(env, usage);
  unsigned from = static_cast<unsigned>(start);
  unsigned n = length - from < kSendBatch ? length - from : kSendBatch;
  if (n == 0) {
    napi_value zero;
    napi_create_int32(env, 0, &zero);
    return zero;
  }
  mmsghdr msgs[kSendBatch]{};
  iovec iov[kSendBatch]{};
  sockaddr_storage to[kSendBatch];
  for (unsigned i = 0; i < n; i++) {
    napi_value item;
    bool isBuffer = false;
    void* data = nullptr;
    size_t len = 0;
    if (napi_get_element(env, argv[0], from + i, &item) != napi_ok || napi_is_buffer(env, item, &isBuffer) != napi_ok ||
        !isBuffer || napi_get_buffer_info(env, item, &data, &len) != napi_ok)
      return Usage(env, usage);
    iov[i] = {data, len};
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    if (!addressed) continue;
    napi_value host, portValue;
    double p;
    char text[64];
    size_t textLength = 0;
    socklen_t toLength = 0;
    if (napi_get_element(env, argv[2], from + i, &host) != napi_ok ||
        napi_get_element(env, argv[3], from + i, &portValue) != napi_ok ||
        napi_get_value_string_latin1(env, host, text, sizeof text, &textLength) != napi_ok ||
        textLength >= sizeof text - 1 || strlen(text) != textLength || !GetInteger(env, portValue, 1, 65535, &p) ||
        !ParseAddress(text, static_cast<uint32_t>(p), &to[i], &toLength))
      return Usage(env, usage);
    msgs[i].msg_hdr.msg_name = &to[i];
    msgs[i].msg_hdr.msg_namelen = toLength;
  }
  napi_value result;
  napi_create_int32(env, port->Send(msgs, n), &result);
  return result;
}

// udpConnect(fd, host, port): connect() a datagram socket, so it sends to that peer without
// an address per datagram and the kernel drops datagrams from anyone else.
napi_value UdpConnect(napi_env env, napi_callback_info info) {
  static const char usage[] = "Usage: udpConnect(fd: number, host: string, port: number)";
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  double fd, port;
  if (argc < 3 || !GetInteger(env, argv[0], 0, 2147483647.0, &fd) || !IsString(env, argv[1]) ||
      !GetInteger(env, argv[2], 1, 65535, &port))
    return Usage(env, usage);
  std::string host = GetString(env, argv[1]);
  sockaddr_storage addr;
  socklen_t addr_len;
  if (host.size() > 63 || strlen(host.c_str()) != host.size() ||
      !ParseAddress(host.c_str(), static_cast<uint32_t>(port), &addr, &addr_len))
    return Usage(env, usage);
  if (connect(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) {
    std::string where = (addr.ss_family == AF_INET ? host : "[" + host + "]") + ":" +
                        std::to_string(static_cast<int>(port));
    return ThrowSyscall(env, "connect", where, errno);
  }
  return Undefined(env);
}

}  // namespace

void InitUdp(napi_env env, napi_value exports) {
  napi_property_descriptor fns[] = {Method("udpSocket", UdpSocket, napi_enumerable),
                                    Method("udpConnect", UdpConnect, napi_enumerable)};
  napi_define_properties(env, exports, 2, fns);
  napi_property_descriptor methods[] = {Method("close", PortClose, napi_default_method),
                                        Method("send", PortSend, napi_default_method),
                                        Method("waitWritable", PortWaitWritable, napi_default_method)};
  napi_value cls;
  napi_define_class(env, "UdpPort", NAPI_AUTO_LENGTH, PortNew, nullptr, 3, methods, &cls);
  napi_set_named_property(env, exports, "UdpPort", cls);
}

}  // namespace hg
