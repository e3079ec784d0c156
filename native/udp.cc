// UDP for honeygate's tproxy listeners and transparent sends (src/gateway/udp):
//
//   udpSocket(host, port, { transparent?, reuseAddr?, mark?, origDst? }) -> fd
//     a bound SOCK_DGRAM socket. transparent: IP_TRANSPARENT (bind a non-local address: the
//     attacker's, for a transparent forward; the original destination, to answer from it).
//     origDst: IP_RECVORIGDSTADDR / IPV6_RECVORIGDSTADDR (a tproxy listener's socket).
//     Node adopts the fd with dgram's bind({ fd }) when it only sends and receives.
//
//   new UdpReceiver(fd, onBatch(numbers: Float64Array, hosts: string[], payload: Buffer))
//     reads a tproxy socket (dgram cannot read ancillary data): recvmmsg in batches of
//     kBatch, each datagram as 4 numbers [srcPort, dstPort, start, end] (bytes
//     payload[start, end)) and 2 strings [srcHost, dstHost]. dstHost is "" when the kernel
//     gave no original destination. close() stops and closes the fd.
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
constexpr size_t kDatagram = 65536;

class UdpReceiver {
 public:
  UdpReceiver(napi_env env, int fd, napi_value callback) : env_(env), fd_(fd), buffers_(kBatch * kDatagram) {
    callback_.Init(env, callback, "honeygate:udp");
    for (unsigned i = 0; i < kBatch; i++) {
      iov_[i] = {buffers_.data() + i * kDatagram, kDatagram};
      msgs_[i].msg_hdr.msg_iov = &iov_[i];
      msgs_[i].msg_hdr.msg_iovlen = 1;
    }
    uv_loop_t* loop;
    napi_get_uv_event_loop(env, &loop);
    poll_.data = this;
    uv_poll_init(loop, &poll_, fd);
    uv_poll_start(&poll_, UV_READABLE, [](uv_poll_t* p, int, int) { static_cast<UdpReceiver*>(p->data)->OnReady(); });
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    uv_poll_stop(&poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(&poll_), [](uv_handle_t* h) {
      auto* self = static_cast<UdpReceiver*>(h->data);
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

 private:
  void OnReady() {
    // At most a few batches per wakeup: other handles get their turn under a flood.
    for (int round = 0; round < 8 && !closed_; round++) {
      for (unsigned i = 0; i < kBatch; i++) {
        msgs_[i].msg_hdr.msg_name = &names_[i];
        msgs_[i].msg_hdr.msg_namelen = sizeof names_[i];
        msgs_[i].msg_hdr.msg_control = control_[i];
        msgs_[i].msg_hdr.msg_controllen = sizeof control_[i];
        msgs_[i].msg_hdr.msg_flags = 0;
      }
      int n = recvmmsg(fd_, msgs_, kBatch, MSG_DONTWAIT, nullptr);
      if (n <= 0) return;  // EAGAIN, or an ICMP error queued on the socket: nothing to deliver
      Deliver(static_cast<unsigned>(n));
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

  void Deliver(unsigned n) {
    napi_handle_scope scope;
    napi_open_handle_scope(env_, &scope);
    size_t total = 0;
    for (unsigned i = 0; i < n; i++) total += msgs_[i].msg_len;
    napi_value args[3];
    double* num = nullptr;
    char* data = nullptr;
    if (!NewNumbers(env_, n * 4, &num, &args[0]) ||
        napi_create_array_with_length(env_, n * 2, &args[1]) != napi_ok ||
        napi_create_buffer(env_, total ? total : 1, reinterpret_cast<void**>(&data), &args[2]) != napi_ok) {
      napi_value ignored;
      napi_get_and_clear_last_exception(env_, &ignored);
      napi_close_handle_scope(env_, scope);
      return;  // out of memory: these datagrams are lost, as the kernel would lose them
    }
    size_t at = 0;
    for (unsigned i = 0; i < n; i++) {
      uint32_t srcPort = 0, dstPort = 0;
      std::string src = AddressText(names_[i], &srcPort, true);
      std::string dst = OrigDst(&msgs_[i].msg_hdr, &dstPort);
      size_t len = msgs_[i].msg_len;
      memcpy(data + at, iov_[i].iov_base, len);
      num[i * 4] = srcPort, num[i * 4 + 1] = dstPort, num[i * 4 + 2] = static_cast<double>(at);
      at += len;
      num[i * 4 + 3] = static_cast<double>(at);
      napi_value s, d;
      napi_create_string_latin1(env_, src.data(), src.size(), &s);
      napi_create_string_latin1(env_, dst.data(), dst.size(), &d);
      napi_set_element(env_, args[1], i * 2, s);
      napi_set_element(env_, args[1], i * 2 + 1, d);
    }
    callback_.Call(env_, 3, args);
    napi_close_handle_scope(env_, scope);
  }

  napi_env env_;
  int fd_;
  std::vector<char> buffers_;
  iovec iov_[kBatch]{};
  mmsghdr msgs_[kBatch]{};
  sockaddr_storage names_[kBatch]{};
  char control_[kBatch][CMSG_SPACE(sizeof(sockaddr_in6)) + 64]{};
  BatchCallback callback_;
  uv_poll_t poll_{};
  bool closed_ = false;
  bool handleClosed_ = false;
  bool orphaned_ = false;
};

napi_value ReceiverNew(napi_env env, napi_callback_info info) {
  static const char usage[] = "Usage: new UdpReceiver(fd: number, onBatch: Function)";
  size_t argc = 2;
  napi_value argv[2], self;
  napi_get_cb_info(env, info, &argc, argv, &self, nullptr);
  double fd;
  napi_valuetype type;
  if (argc < 2 || !GetInteger(env, argv[0], 0, 2147483647.0, &fd) || napi_typeof(env, argv[1], &type) != napi_ok ||
      type != napi_function)
    return Usage(env, usage);
  int flags = fcntl(static_cast<int>(fd), F_GETFL);
  if (flags < 0 || fcntl(static_cast<int>(fd), F_SETFL, flags | O_NONBLOCK) != 0)
    return ThrowSyscall(env, "fcntl", std::to_string(static_cast<int>(fd)) + ", F_SETFL, O_NONBLOCK", errno);
  auto* receiver = new UdpReceiver(env, static_cast<int>(fd), argv[1]);
  napi_wrap(
      env, self, receiver, [](napi_env, void* data, void*) { static_cast<UdpReceiver*>(data)->Orphan(); }, nullptr,
      nullptr);
  return self;
}

napi_value ReceiverClose(napi_env env, napi_callback_info info) {
  napi_value self;
  napi_get_cb_info(env, info, nullptr, nullptr, &self, nullptr);
  void* data = nullptr;
  if (napi_unwrap(env, self, &data) != napi_ok || !data) return Throw(env, "not a UdpReceiver");
  static_cast<UdpReceiver*>(data)->Close();
  return Undefined(env);
}

}  // namespace

void InitUdp(napi_env env, napi_value exports) {
  napi_property_descriptor fn = Method("udpSocket", UdpSocket, napi_enumerable);
  napi_define_properties(env, exports, 1, &fn);
  napi_property_descriptor methods[] = {Method("close", ReceiverClose, napi_default_method)};
  napi_value cls;
  napi_define_class(env, "UdpReceiver", NAPI_AUTO_LENGTH, ReceiverNew, nullptr, 1, methods, &cls);
  napi_set_named_property(env, exports, "UdpReceiver", cls);
}

}  // namespace hg
