// Conntrack events over netlink, read by hand: kernel routes' flow records (src/kernel/conntrack.ts).
// No N-API here: conntrack_reader.cc runs it on a thread and hands JS batches;
// native/test/conntrack_test.cc feeds the parser malformed messages.
//
// The parser reads what the kernel sends, but it is hardened as if it read an attacker: every
// netlink header and every attribute length is checked against what is left, nothing is read
// past a message, and a bad message is counted and skipped, never trusted.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "socket.h"

namespace hg {

// One conntrack event (a flow's end, or its start).
struct CtFlow {
  bool destroy = false;  // IPCTNL_MSG_CT_DELETE (else IPCTNL_MSG_CT_NEW)
  uint8_t family = 0;    // 4 or 6
  uint8_t proto = 0;     // CTA_PROTO_NUM of the original tuple
  int tcpState = -1;     // CTA_PROTOINFO_TCP_STATE (enum tcp_conntrack), -1 without one
  uint32_t id = 0, mark = 0, status = 0;
  bool hasId = false;
  std::string origSrc, origDst, replySrc, replyDst;  // address literals
  uint16_t origSport = 0, origDport = 0, replySport = 0, replyDport = 0;
  uint64_t origPackets = 0, origBytes = 0, replyPackets = 0, replyBytes = 0;  // CTA_COUNTERS_* (acct)
  uint64_t startNs = 0, stopNs = 0;  // CTA_TIMESTAMP_* (epoch ns; 0 without nf_conntrack_timestamp)
};

enum class CtParse {
  kFlow,       // *out holds a conntrack event with both tuples
  kSkip,       // a well-formed message that is not one (NLMSG_DONE, another subsystem, ...)
  kMalformed,  // a length that does not fit, a tuple missing: skipped and counted
};

// Parses one netlink message of exactly `len` bytes (its nlmsghdr first).
CtParse ParseCtMessage(const uint8_t* msg, size_t len, CtFlow* out);

// The counts of one datagram's walk.
struct CtWalk {
  size_t flows = 0, skipped = 0, malformed = 0;
};

// Walks a datagram of netlink messages, calling sink(const CtFlow&) per flow. A header whose
// length does not fit ends the walk (counted malformed): nothing after it can be framed.
template <typename Sink>
CtWalk WalkCtDatagram(const uint8_t* buf, size_t len, Sink&& sink);

// The socket that receives conntrack events of `groups` (NF_NETLINK_CONNTRACK_* bits),
// non-blocking, with a receive buffer of `rcvbuf` bytes forced past rmem_max
// (SO_RCVBUFFORCE; the kernel doubles it), NETLINK_BROADCAST_ERROR on so that the kernel
// redelivers a DESTROY event the buffer had no room for, and, when `mark` is nonzero, a
// socket filter that keeps only the events of flows whose ct mark has every bit of `mark`.
// NETLINK_NO_ENOBUFS stays off: an overrun shows as ENOBUFS on the next read. -1 on failure.
int CtEventSocket(uint32_t groups, int rcvbuf, uint32_t mark, SocketError* error);

// A non-blocking NETLINK_NETFILTER socket for CtSweep(). -1 on failure.
int CtSweepSocket(SocketError* error);

// Asks for a dump of the conntrack table that matches no entry (a mark filter with mask 0 and
// value 1): the kernel evicts the expired entries it walks past, so their DESTROY events come
// now rather than at the next garbage collection (which may take a minute). The replies
// (NLMSG_DONE) are read and dropped with CtDrain(). False when send() failed.
bool CtSweep(int fd, uint32_t seq);
void CtDrain(int fd);

// ---- implementation of the template ----

template <typename Sink>
CtWalk WalkCtDatagram(const uint8_t* buf, size_t len, Sink&& sink) {
  CtWalk walk;
  size_t at = 0;
  while (len - at >= 16) {
    uint32_t msgLen;
    memcpy(&msgLen, buf + at, 4);
    if (msgLen < 16 || msgLen > len - at) {
      walk.malformed++;
      break;
    }
    CtFlow flow;
    switch (ParseCtMessage(buf + at, msgLen, &flow)) {
      case CtParse::kFlow:
        walk.flows++;
        sink(static_cast<const CtFlow&>(flow));
        break;
      case CtParse::kSkip:
        walk.skipped++;
        break;
      case CtParse::kMalformed:
        walk.malformed++;
        break;
    }
    size_t step = (static_cast<size_t>(msgLen) + 3) & ~static_cast<size_t>(3);  // NLMSG_ALIGN
    if (step >= len - at) break;
    at += step;
  }
  return walk;
}

}  // namespace hg
