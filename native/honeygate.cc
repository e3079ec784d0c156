// honeygate's native addon: only what Node cannot do itself. It creates TCP sockets with
// IP_TRANSPARENT / SO_MARK / SO_REUSEPORT and hands back the fd (Node adopts it with
// server.listen({ fd }) or new net.Socket({ fd })), and reads SO_ORIGINAL_DST.
//
// Plain N-API (ABI-stable), so one build loads on every Node that has NAPI_VERSION 8.
// Every failure closes the fd it opened and throws an Error whose message is the failed
// call, e.g. "setsockopt(SOL_IP, IP_TRANSPARENT, 1): EPERM", with .code and .syscall.
// src/net/native.ts is the only importer.
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "address.h"
#include "napi_util.h"
#include "original_dst.h"
#include "socket.h"
#include "udp.h"

napi_value InitRelay(napi_env env, napi_value exports);  // relay.cc
napi_value InitPrivileges(napi_env env, napi_value exports);  // privileges.cc
namespace hg {
void InitConntrack(napi_env env, napi_value exports);  // conntrack_reader.cc
}  // namespace hg

namespace {

using hg::GetInteger;
using hg::Usage;

const char kListenUsage[] =
    "Usage: listenSocket(host: string, port: number, options?: { transparent?: boolean, mark?: number, "
    "reusePort?: boolean, backlog?: number }): host is an IPv4 or IPv6 literal, port 0-65535, "
    "mark 0-0xffffffff, backlog 1-65535";
const char kUpstreamUsage[] =
    "Usage: upstreamSocket(family: 4 | 6, options?: { transparent?: boolean, mark?: number, "
    "reusePort?: boolean })";
const char kSocketNameUsage[] = "Usage: socketName(fd: number): fd is a bound socket";
const char kOriginalDstUsage[] = "Usage: originalDst(fd: number): fd is a connected TCP socket";

struct Options : hg::SocketOptions {
  int backlog = 511;  // Node's default
};

// Closes fd (when >= 0), then throws Error("SYSCALL(ARGS): ECODE") with .code and .syscall.
// Returns nullptr so callers can `return Fail(...)`.
napi_value Fail(napi_env env, int fd, const char* syscall, const char* args, int err) {
  if (fd >= 0) close(fd);
  return hg::ThrowSyscall(env, syscall, args, err);
}

// Reads the options object; undefined properties keep their defaults. False on a bad value.
bool GetOptions(napi_env env, napi_value object, Options* opts) {
  napi_valuetype type;
  if (napi_typeof(env, object, &type) != napi_ok) return false;
  if (type == napi_undefined) return true;
  if (type != napi_object) return false;

  napi_value value;
  double number;
  if (napi_get_named_property(env, object, "transparent", &value) != napi_ok) return false;
  if (napi_typeof(env, value, &type) != napi_ok) return false;
  if (type != napi_undefined && napi_get_value_bool(env, value, &opts->transparent) != napi_ok) return false;

  if (napi_get_named_property(env, object, "reusePort", &value) != napi_ok) return false;
  if (napi_typeof(env, value, &type) != napi_ok) return false;
  if (type != napi_undefined && napi_get_value_bool(env, value, &opts->reusePort) != napi_ok) return false;

  if (napi_get_named_property(env, object, "mark", &value) != napi_ok) return false;
  if (napi_typeof(env, value, &type) != napi_ok) return false;
  if (type != napi_undefined) {
    if (!GetInteger(env, value, 0, 4294967295.0, &number)) return false;
    opts->mark = static_cast<uint32_t>(number);
  }

  if (napi_get_named_property(env, object, "backlog", &value) != napi_ok) return false;
  if (napi_typeof(env, value, &type) != napi_ok) return false;
  if (type != napi_undefined) {
    if (!GetInteger(env, value, 1, 65535, &number)) return false;
    opts->backlog = static_cast<int>(number);
  }
  return true;
}

// OpenSocket (socket.h), throwing its failure. Returns the fd, or -1 after throwing.
int NewSocket(napi_env env, int family, const Options& opts, bool v6only) {
  hg::SocketError error;
  int fd = hg::OpenSocket(family, 0, opts, v6only, &error);
  if (fd < 0) Fail(env, -1, error.syscall, error.args.c_str(), error.err);
  return fd;
}

napi_value ListenSocket(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  if (argc < 2) return Usage(env, kListenUsage);

  napi_valuetype type;
  char host[64];
  size_t host_len;
  if (napi_typeof(env, argv[0], &type) != napi_ok || type != napi_string) return Usage(env, kListenUsage);
  if (napi_get_value_string_utf8(env, argv[0], host, sizeof host, &host_len) != napi_ok) return nullptr;
  // Longer than any address literal (so possibly truncated), or with a NUL inside.
  if (host_len >= sizeof host - 1 || strlen(host) != host_len) return Usage(env, kListenUsage);
  double port;
  if (!GetInteger(env, argv[1], 0, 65535, &port)) return Usage(env, kListenUsage);
  Options opts;
  if (argc >= 3 && !GetOptions(env, argv[2], &opts)) return Usage(env, kListenUsage);

  sockaddr_storage addr;
  socklen_t addr_len;
  if (!hg::ParseAddress(host, static_cast<uint32_t>(port), &addr, &addr_len)) return Usage(env, kListenUsage);
  int family = addr.ss_family;

  int fd = NewSocket(env, family, opts, true);
  if (fd < 0) return nullptr;
  char args[sizeof host + 16];
  snprintf(args, sizeof args, family == AF_INET ? "%s:%d" : "[%s]:%d", host, static_cast<int>(port));
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) return Fail(env, fd, "bind", args, errno);
  snprintf(args, sizeof args, "%d", opts.backlog);
  if (listen(fd, opts.backlog) != 0) return Fail(env, fd, "listen", args, errno);

  napi_value result;
  if (napi_create_int32(env, fd, &result) != napi_ok) {
    close(fd);
    return nullptr;
  }
  return result;
}

napi_value UpstreamSocket(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  if (argc < 1) return Usage(env, kUpstreamUsage);
  double family;
  if (!GetInteger(env, argv[0], 4, 6, &family) || family == 5) return Usage(env, kUpstreamUsage);
  Options opts;
  if (argc >= 2 && !GetOptions(env, argv[1], &opts)) return Usage(env, kUpstreamUsage);

  // Not v6only: Node's bind6 clears IPV6_V6ONLY anyway, and IP_TRANSPARENT covers v4-mapped peers.
  int fd = NewSocket(env, family == 4 ? AF_INET : AF_INET6, opts, false);
  if (fd < 0) return nullptr;
  napi_value result;
  if (napi_create_int32(env, fd, &result) != napi_ok) {
    close(fd);
    return nullptr;
  }
  return result;
}

// { host, port } from an IPv4 or IPv6 socket address (a v4-mapped one as it is).
napi_value Endpoint(napi_env env, const sockaddr_storage& address) {
  uint32_t port = 0;
  std::string text = hg::AddressText(address, &port, false);
  if (text.empty()) return nullptr;
  napi_value object, host, port_value;
  napi_create_object(env, &object);
  napi_create_string_utf8(env, text.c_str(), text.size(), &host);
  napi_create_uint32(env, port, &port_value);
  napi_set_named_property(env, object, "host", host);
  napi_set_named_property(env, object, "port", port_value);
  return object;
}

napi_value OriginalDst(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  double fd_number;
  if (argc < 1 || !GetInteger(env, argv[0], 0, 2147483647.0, &fd_number)) return Usage(env, kOriginalDstUsage);
  int fd = static_cast<int>(fd_number);
  char args[64];

  // The conntrack entry is IPv4 also for a v4-mapped flow on an AF_INET6 socket.
  sockaddr_in6 local{};
  socklen_t len = sizeof local;
  snprintf(args, sizeof args, "%d", fd);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) {
    return Fail(env, -1, "getsockname", args, errno);
  }
  bool ipv4 = local.sin6_family == AF_INET ||
              (local.sin6_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&local.sin6_addr));
  if (!ipv4 && local.sin6_family != AF_INET6) return Usage(env, kOriginalDstUsage);

  napi_value null_value;
  napi_get_null(env, &null_value);
  sockaddr_storage dst{};
  if (ipv4) {
    len = sizeof(sockaddr_in);
    snprintf(args, sizeof args, "%d, SOL_IP, SO_ORIGINAL_DST", fd);
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &len) != 0) {
      if (errno == ENOENT) return null_value;  // conntrack does not track this flow
      return Fail(env, -1, "getsockopt", args, errno);
    }
    return Endpoint(env, dst);
  }
  len = sizeof(sockaddr_in6);
  snprintf(args, sizeof args, "%d, SOL_IPV6, IP6T_SO_ORIGINAL_DST", fd);
  if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &len) != 0) {
    if (errno == ENOENT) return null_value;
    return Fail(env, -1, "getsockopt", args, errno);
  }
  return Endpoint(env, dst);
}

// { host, port } a socket is bound to (getsockname): a listener on port 0 learns its port.
napi_value SocketName(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  double fd_number;
  if (argc < 1 || !GetInteger(env, argv[0], 0, 2147483647.0, &fd_number)) return Usage(env, kSocketNameUsage);
  int fd = static_cast<int>(fd_number);
  sockaddr_storage local{};
  socklen_t len = sizeof local;
  char args[16];
  snprintf(args, sizeof args, "%d", fd);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) return Fail(env, -1, "getsockname", args, errno);
  return Endpoint(env, local);
}

// Puts the calling thread in SCHED_IDLE and returns its thread id: it runs when nothing else
// wants the CPU, and a thread of any other policy waking on that CPU preempts it at once.
// Unprivileged, and one way: only CAP_SYS_NICE may leave SCHED_IDLE. For the store thread
// (src/events/store-thread.ts), which reads its state in /proc/self/task/TID/stat.
napi_value IdleThread(napi_env env, napi_callback_info) {
  sched_param param{};
  if (sched_setscheduler(0, SCHED_IDLE, &param) != 0) return Fail(env, -1, "sched_setscheduler", "0, SCHED_IDLE", errno);
  napi_value tid;
  napi_create_int32(env, static_cast<int32_t>(syscall(SYS_gettid)), &tid);
  return tid;
}

napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor functions[] = {
      hg::Method("listenSocket", ListenSocket, napi_enumerable),
      hg::Method("upstreamSocket", UpstreamSocket, napi_enumerable),
      hg::Method("originalDst", OriginalDst, napi_enumerable),
      hg::Method("socketName", SocketName, napi_enumerable),
      hg::Method("idleThread", IdleThread, napi_enumerable),
  };
  napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
  InitPrivileges(env, exports);
  hg::InitUdp(env, exports);
  hg::InitConntrack(env, exports);
  return InitRelay(env, exports);
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
