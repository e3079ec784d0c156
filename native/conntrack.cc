// Conntrack events over netlink: the hand-written ctnetlink parser and the sockets
// (conntrack.h says what each does).
#include "conntrack.h"

#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace hg {
namespace {

constexpr size_t kNlHdr = 16;    // sizeof(nlmsghdr)
constexpr size_t kNfGenMsg = 4;  // sizeof(nfgenmsg)
constexpr size_t kNlaHdr = 4;    // sizeof(nlattr)

// One attribute: its type (flags masked off) and payload. Iterates a block of attributes,
// refusing any whose length is shorter than its header or longer than what is left.
struct Attr {
  uint16_t type;
  const uint8_t* data;
  size_t len;
};

class Attrs {
 public:
  Attrs(const uint8_t* p, size_t len) : p_(p), left_(len) {}
  // The next attribute into *a: true; false at the end. bad() says whether the end was a
  // length that does not fit.
  bool Next(Attr* a) {
    if (left_ == 0) return false;
    if (left_ < kNlaHdr) return Fail();
    uint16_t len, type;
    memcpy(&len, p_, 2);
    memcpy(&type, p_ + 2, 2);
    if (len < kNlaHdr || len > left_) return Fail();
    a->type = type & NLA_TYPE_MASK;
    a->data = p_ + kNlaHdr;
    a->len = len - kNlaHdr;
    size_t step = (static_cast<size_t>(len) + 3) & ~static_cast<size_t>(3);  // NLA_ALIGN
    if (step > left_) step = left_;  // the last attribute may end unpadded
    p_ += step;
    left_ -= step;
    return true;
  }
  bool bad() const { return bad_; }

 private:
  bool Fail() {
    bad_ = true;
    left_ = 0;
    return false;
  }
  const uint8_t* p_;
  size_t left_;
  bool bad_ = false;
};

bool Be16(const Attr& a, uint16_t* out) {
  if (a.len != 2) return false;
  uint16_t v;
  memcpy(&v, a.data, 2);
  *out = ntohs(v);
  return true;
}

bool Be32(const Attr& a, uint32_t* out) {
  if (a.len != 4) return false;
  uint32_t v;
  memcpy(&v, a.data, 4);
  *out = ntohl(v);
  return true;
}

// A counter: 64 bits (CTA_COUNTERS_*), or 32 (the old CTA_COUNTERS32_*).
bool Be64(const Attr& a, uint64_t* out) {
  if (a.len == 4) {
    uint32_t v;
    if (!Be32(a, &v)) return false;
    *out = v;
    return true;
  }
  if (a.len != 8) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < 8; i++) v = (v << 8) | a.data[i];
  *out = v;
  return true;
}

bool Address(const Attr& a, int family, std::string* out) {
  char text[INET6_ADDRSTRLEN];
  if ((family == AF_INET && a.len != 4) || (family == AF_INET6 && a.len != 16)) return false;
  if (!inet_ntop(family, a.data, text, sizeof text)) return false;
  *out = text;
  return true;
}

struct Tuple {
  std::string src, dst;
  uint16_t sport = 0, dport = 0;
  uint8_t proto = 0;
  bool hasProto = false;
};

// CTA_TUPLE_ORIG / CTA_TUPLE_REPLY's nest: CTA_TUPLE_IP { V4|V6 SRC, DST }, CTA_TUPLE_PROTO
// { NUM, SRC_PORT, DST_PORT }. False when a length is wrong or an address is missing.
bool ParseTuple(const Attr& nest, int family, Tuple* t) {
  Attrs it(nest.data, nest.len);
  Attr a;
  while (it.Next(&a)) {
    if (a.type == CTA_TUPLE_IP) {
      Attrs ip(a.data, a.len);
      Attr b;
      while (ip.Next(&b)) {
        bool ok = true;
        if (b.type == CTA_IP_V4_SRC || b.type == CTA_IP_V6_SRC) ok = Address(b, family, &t->src);
        if (b.type == CTA_IP_V4_DST || b.type == CTA_IP_V6_DST) ok = Address(b, family, &t->dst);
        if (!ok) return false;
      }
      if (ip.bad()) return false;
    } else if (a.type == CTA_TUPLE_PROTO) {
      Attrs proto(a.data, a.len);
      Attr b;
      while (proto.Next(&b)) {
        bool ok = true;
        if (b.type == CTA_PROTO_NUM) {
          ok = b.len == 1;
          if (ok) t->proto = b.data[0], t->hasProto = true;
        }
        if (b.type == CTA_PROTO_SRC_PORT) ok = Be16(b, &t->sport);
        if (b.type == CTA_PROTO_DST_PORT) ok = Be16(b, &t->dport);
        if (!ok) return false;
      }
      if (proto.bad()) return false;
    }
  }
  return !it.bad() && !t->src.empty() && !t->dst.empty() && t->hasProto;
}

// CTA_COUNTERS_ORIG / _REPLY's nest.
bool ParseCounters(const Attr& nest, uint64_t* packets, uint64_t* bytes) {
  Attrs it(nest.data, nest.len);
  Attr a;
  while (it.Next(&a)) {
    if ((a.type == CTA_COUNTERS_PACKETS || a.type == CTA_COUNTERS32_PACKETS) && !Be64(a, packets)) return false;
    if ((a.type == CTA_COUNTERS_BYTES || a.type == CTA_COUNTERS32_BYTES) && !Be64(a, bytes)) return false;
  }
  return !it.bad();
}

bool ParseTimestamp(const Attr& nest, uint64_t* start, uint64_t* stop) {
  Attrs it(nest.data, nest.len);
  Attr a;
  while (it.Next(&a)) {
    if (a.type == CTA_TIMESTAMP_START && !Be64(a, start)) return false;
    if (a.type == CTA_TIMESTAMP_STOP && !Be64(a, stop)) return false;
  }
  return !it.bad();
}

// CTA_PROTOINFO { CTA_PROTOINFO_TCP { CTA_PROTOINFO_TCP_STATE } }; other protocols: nothing.
bool ParseProtoinfo(const Attr& nest, int* state) {
  Attrs it(nest.data, nest.len);
  Attr a;
  while (it.Next(&a)) {
    if (a.type != CTA_PROTOINFO_TCP) continue;
    Attrs tcp(a.data, a.len);
    Attr b;
    while (tcp.Next(&b)) {
      if (b.type != CTA_PROTOINFO_TCP_STATE) continue;
      if (b.len != 1) return false;
      *state = b.data[0];
    }
    if (tcp.bad()) return false;
  }
  return !it.bad();
}

}  // namespace

CtParse ParseCtMessage(const uint8_t* msg, size_t len, CtFlow* out) {
  if (len < kNlHdr) return CtParse::kMalformed;
  nlmsghdr h;
  memcpy(&h, msg, kNlHdr);
  if (h.nlmsg_len != len) return CtParse::kMalformed;
  if (h.nlmsg_type < NLMSG_MIN_TYPE) return CtParse::kSkip;  // NOOP, ERROR, DONE, OVERRUN
  if (NFNL_SUBSYS_ID(h.nlmsg_type) != NFNL_SUBSYS_CTNETLINK) return CtParse::kSkip;
  uint16_t msgType = NFNL_MSG_TYPE(h.nlmsg_type);
  if (msgType != IPCTNL_MSG_CT_NEW && msgType != IPCTNL_MSG_CT_DELETE) return CtParse::kSkip;
  if (len < kNlHdr + kNfGenMsg) return CtParse::kMalformed;
  nfgenmsg g;
  memcpy(&g, msg + kNlHdr, kNfGenMsg);
  int family = g.nfgen_family == AF_INET ? AF_INET : g.nfgen_family == AF_INET6 ? AF_INET6 : 0;
  if (!family) return CtParse::kSkip;  // another layer 3 (bridge, ARP): not a flow of ours
  CtFlow f;
  f.destroy = msgType == IPCTNL_MSG_CT_DELETE;
  f.family = family == AF_INET ? 4 : 6;
  Tuple orig, reply;
  bool hasOrig = false, hasReply = false;
  Attrs it(msg + kNlHdr + kNfGenMsg, len - kNlHdr - kNfGenMsg);
  Attr a;
  while (it.Next(&a)) {
    bool ok = true;
    switch (a.type) {
      case CTA_TUPLE_ORIG:
        ok = hasOrig = ParseTuple(a, family, &orig);
        break;
      case CTA_TUPLE_REPLY:
        ok = hasReply = ParseTuple(a, family, &reply);
        break;
      case CTA_ID:
        ok = f.hasId = Be32(a, &f.id);
        break;
      case CTA_MARK:
        ok = Be32(a, &f.mark);
        break;
      case CTA_STATUS:
        ok = Be32(a, &f.status);
        break;
      case CTA_COUNTERS_ORIG:
        ok = ParseCounters(a, &f.origPackets, &f.origBytes);
        break;
      case CTA_COUNTERS_REPLY:
        ok = ParseCounters(a, &f.replyPackets, &f.replyBytes);
        break;
      case CTA_TIMESTAMP:
        ok = ParseTimestamp(a, &f.startNs, &f.stopNs);
        break;
      case CTA_PROTOINFO:
        ok = ParseProtoinfo(a, &f.tcpState);
        break;
      default:
        break;  // CTA_TIMEOUT, CTA_USE, CTA_ZONE, CTA_SECCTX, ...: not recorded
    }
    if (!ok) return CtParse::kMalformed;
  }
  if (it.bad() || !hasOrig || !hasReply) return CtParse::kMalformed;
  f.proto = orig.proto;
  f.origSrc = std::move(orig.src), f.origDst = std::move(orig.dst);
  f.origSport = orig.sport, f.origDport = orig.dport;
  f.replySrc = std::move(reply.src), f.replyDst = std::move(reply.dst);
  f.replySport = reply.sport, f.replyDport = reply.dport;
  *out = std::move(f);
  return CtParse::kFlow;
}

int CtEventSocket(uint32_t groups, int rcvbuf, uint32_t mark, SocketError* error) {
  auto fail = [&](int fd, const char* syscall, const std::string& args) {
    *error = SocketError{syscall, args, errno};
    if (fd >= 0) close(fd);
    return -1;
  };
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) return fail(-1, "socket", "AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER");
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0)
    return fail(fd, "setsockopt", "SOL_SOCKET, SO_RCVBUFFORCE, " + std::to_string(rcvbuf));
  int one = 1;
  if (setsockopt(fd, SOL_NETLINK, NETLINK_BROADCAST_ERROR, &one, sizeof one) != 0)
    return fail(fd, "setsockopt", "SOL_NETLINK, NETLINK_BROADCAST_ERROR, 1");
  if (mark) {
    // The event's CTA_MARK (absent when the mark is 0) has every bit of `mark`: keep it.
    // SKF_AD_NLATTR finds attribute X in the attributes from offset A (after nlmsghdr and
    // nfgenmsg); a filtered event never takes room in the buffer.
    sock_filter code[] = {
        BPF_STMT(BPF_LDX | BPF_IMM, CTA_MARK),
        BPF_STMT(BPF_LD | BPF_IMM, kNlHdr + kNfGenMsg),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, static_cast<uint32_t>(SKF_AD_OFF + SKF_AD_NLATTR)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 5, 0),  // no CTA_MARK: drop
        BPF_STMT(BPF_MISC | BPF_TAX, 0),
        BPF_STMT(BPF_LD | BPF_W | BPF_IND, kNlaHdr),  // the mark, in host order
        BPF_STMT(BPF_ALU | BPF_AND | BPF_K, mark),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, mark, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, 0xffffffff),
        BPF_STMT(BPF_RET | BPF_K, 0),
    };
    sock_fprog prog{static_cast<unsigned short>(sizeof code / sizeof code[0]), code};
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) != 0)
      return fail(fd, "setsockopt", "SOL_SOCKET, SO_ATTACH_FILTER, ct mark");
  }
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  addr.nl_groups = groups;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return fail(fd, "bind", "AF_NETLINK, groups " + std::to_string(groups));
  return fd;
}

int CtSweepSocket(SocketError* error) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) {
    *error = SocketError{"socket", "AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER", errno};
    return -1;
  }
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    *error = SocketError{"bind", "AF_NETLINK", errno};
    close(fd);
    return -1;
  }
  return fd;
}

bool CtSweep(int fd, uint32_t seq) {
  struct {
    nlmsghdr h;
    nfgenmsg g;
    nlattr markHdr;
    uint32_t mark;
    nlattr maskHdr;
    uint32_t mask;
  } req{};
  static_assert(sizeof req == kNlHdr + kNfGenMsg + 16, "no padding");
  req.h.nlmsg_len = sizeof req;
  req.h.nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.h.nlmsg_seq = seq;
  req.g.nfgen_family = AF_UNSPEC;
  req.g.version = NFNETLINK_V0;
  req.markHdr = {8, CTA_MARK};
  req.mark = htonl(1);
  req.maskHdr = {8, CTA_MARK_MASK};
  req.mask = htonl(0);  // (mark & 0) == 1: no entry matches, so nothing is sent back
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  return sendto(fd, &req, sizeof req, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) ==
         static_cast<ssize_t>(sizeof req);
}

void CtDrain(int fd) {
  uint8_t buf[8192];
  for (int i = 0; i < 64; i++) {
    if (recv(fd, buf, sizeof buf, MSG_DONTWAIT) < 0 && errno != EINTR && errno != ENOBUFS) return;
  }
}

}  // namespace hg
