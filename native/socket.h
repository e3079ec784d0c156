// The TCP socket that honeygate's listeners and upstreams share (honeygate.cc for Node,
// relay.cc for the relay's own dials): its options, and the errno names of its messages.
#pragma once
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

namespace hg {

inline std::string ErrName(int err) {
  const char* name = strerrorname_np(err);
  return name ? name : "errno " + std::to_string(err);
}

struct SocketOptions {
  bool transparent = false;
  uint32_t mark = 0;  // 0: leave unset (setting it needs privilege for nothing)
  bool reusePort = false;
  bool reuseAddr = true;  // listeners, and upstreams that bind (a plain connect needs none)
};

// The call that failed: "SYSCALL(ARGS): ECODE".
struct SocketError {
  const char* syscall = "";
  std::string args;
  int err = 0;
  std::string Message() const { return std::string(syscall) + "(" + args + "): " + ErrName(err); }
};

// socket(family, type | SOCK_CLOEXEC | flags) plus the options. Returns the fd, or -1
// with *error filled in (and nothing left open). v6only: an AF_INET6 socket that takes no
// IPv4 (listeners: IPv4 gets its own socket). type: SOCK_STREAM, or SOCK_DGRAM (udp.cc).
inline int OpenSocket(int family, int flags, const SocketOptions& opts, bool v6only, SocketError* error,
                      int type = SOCK_STREAM) {
  int fd = socket(family, type | SOCK_CLOEXEC | flags, 0);
  if (fd < 0) {
    std::string args = family == AF_INET ? "AF_INET, " : "AF_INET6, ";
    *error = {"socket", args + (type == SOCK_DGRAM ? "SOCK_DGRAM" : "SOCK_STREAM"), errno};
    return -1;
  }
  auto set = [&](int level, int name, int value, std::string args) {
    if (setsockopt(fd, level, name, &value, sizeof value) == 0) return true;
    *error = {"setsockopt", std::move(args), errno};
    close(fd);
    return false;
  };
  // SO_REUSEADDR: an upstream may bind the attacker's ip:port while honeygate's own
  // downstream socket (or a TIME_WAIT one) holds the same address.
  if (opts.reuseAddr && !set(SOL_SOCKET, SO_REUSEADDR, 1, "SOL_SOCKET, SO_REUSEADDR, 1")) return -1;
  if (family == AF_INET6 && v6only && !set(SOL_IPV6, IPV6_V6ONLY, 1, "SOL_IPV6, IPV6_V6ONLY, 1")) return -1;
  if (opts.transparent) {
    if (family == AF_INET6 && !set(SOL_IPV6, IPV6_TRANSPARENT, 1, "SOL_IPV6, IPV6_TRANSPARENT, 1")) return -1;
    // A dual-stack AF_INET6 socket also carries IPv4 flows, which obey IP_TRANSPARENT.
    if ((family == AF_INET || !v6only) && !set(SOL_IP, IP_TRANSPARENT, 1, "SOL_IP, IP_TRANSPARENT, 1")) return -1;
  }
  if (opts.mark != 0) {
    char args[64];
    snprintf(args, sizeof args, "SOL_SOCKET, SO_MARK, 0x%x", opts.mark);
    if (!set(SOL_SOCKET, SO_MARK, static_cast<int>(opts.mark), args)) return -1;
  }
  if (opts.reusePort && !set(SOL_SOCKET, SO_REUSEPORT, 1, "SOL_SOCKET, SO_REUSEPORT, 1")) return -1;
  return fd;
}

}  // namespace hg
