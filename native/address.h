// Socket addresses to text and back, for honeygate.cc (listeners, socketName, originalDst)
// and the relay (its dials and its records): one parser, one formatter.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <string>

namespace hg {

// An IPv4 or IPv6 literal and a port as a socket address. False when `host` is not a
// literal (a name, garbage): nothing here resolves names.
inline bool ParseAddress(const char* host, uint32_t port, sockaddr_storage* ss, socklen_t* len) {
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

// The address of `ss` as inet_ntop() writes it, and its port in *port. unmapV4: a
// v4-mapped IPv6 address as its IPv4 form (the relay's records; JS canonicalizes the rest).
// "" for a family other than AF_INET and AF_INET6.
inline std::string AddressText(const sockaddr_storage& ss, uint32_t* port, bool unmapV4) {
  char text[INET6_ADDRSTRLEN] = "";
  if (ss.ss_family == AF_INET) {
    auto* v4 = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    *port = ntohs(v4->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* v6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    if (unmapV4 && IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
      inet_ntop(AF_INET, &v6->sin6_addr.s6_addr[12], text, sizeof text);
    } else {
      inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
    }
    *port = ntohs(v6->sin6_port);
  }
  return text;
}

}  // namespace hg
