// The ctnetlink parser's unit test (native/conntrack.cc), no Node, no root: a DESTROY event
// built as the kernel builds it, then every way to break it: each truncation, each attribute
// length made too short or too long, random bytes flipped, a datagram of several messages.
// Built and run by test/unit/native-core.test.ts (g++, with AddressSanitizer where it links):
//
//   g++ -std=c++17 -Inative native/conntrack.cc native/test/conntrack_test.cc -o conntrack_test
//
// Prints "ok NAME" or "not ok NAME: what" per case; exits 1 when any failed.
#include <arpa/inet.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "conntrack.h"

using namespace hg;

namespace {

int failures = 0;
std::string failure;

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond) && failure.empty()) failure = std::to_string(__LINE__) + ": " #cond; \
  } while (0)

void Case(const char* name, const std::function<void()>& body) {
  failure.clear();
  body();
  if (failure.empty()) {
    printf("ok %s\n", name);
  } else {
    printf("not ok %s: %s\n", name, failure.c_str());
    failures++;
  }
}

// Builds netlink attributes the way the kernel's nla_put does (4-byte aligned, big endian).
class Builder {
 public:
  std::vector<uint8_t> bytes;
  size_t Begin(uint16_t type) {  // a nest; End() writes its length
    size_t at = bytes.size();
    Put16(0), Put16(type | NLA_F_NESTED);
    return at;
  }
  void End(size_t at) {
    uint16_t len = static_cast<uint16_t>(bytes.size() - at);
    memcpy(&bytes[at], &len, 2);
  }
  void Attr(uint16_t type, const void* data, size_t len) {
    Put16(static_cast<uint16_t>(4 + len)), Put16(type);
    const uint8_t* p = static_cast<const uint8_t*>(data);
    bytes.insert(bytes.end(), p, p + len);
    while (bytes.size() % 4) bytes.push_back(0);
  }
  void U8(uint16_t type, uint8_t v) { Attr(type, &v, 1); }
  void Be16(uint16_t type, uint16_t v) {
    v = htons(v);
    Attr(type, &v, 2);
  }
  void Be32(uint16_t type, uint32_t v) {
    v = htonl(v);
    Attr(type, &v, 4);
  }
  void Be64(uint16_t type, uint64_t v) {
    uint8_t b[8];
    for (int i = 7; i >= 0; i--) b[i] = v & 0xff, v >>= 8;
    Attr(type, b, 8);
  }
  void Ip4(uint16_t type, const char* text) {
    in_addr a;
    inet_pton(AF_INET, text, &a);
    Attr(type, &a, 4);
  }

 private:
  void Put16(uint16_t v) { bytes.insert(bytes.end(), reinterpret_cast<uint8_t*>(&v), reinterpret_cast<uint8_t*>(&v) + 2); }
};

void Tuple(Builder& b, uint16_t type, const char* src, const char* dst, uint16_t sport, uint16_t dport) {
  size_t t = b.Begin(type);
  size_t ip = b.Begin(CTA_TUPLE_IP);
  b.Ip4(CTA_IP_V4_SRC, src);
  b.Ip4(CTA_IP_V4_DST, dst);
  b.End(ip);
  size_t proto = b.Begin(CTA_TUPLE_PROTO);
  b.U8(CTA_PROTO_NUM, IPPROTO_TCP);
  b.Be16(CTA_PROTO_SRC_PORT, sport);
  b.Be16(CTA_PROTO_DST_PORT, dport);
  b.End(proto);
  b.End(t);
}

// A DESTROY event of 198.51.100.10:40000 -> 192.0.2.74:80 DNATed to 192.0.2.100:2222.
std::vector<uint8_t> Destroy(uint32_t id = 77) {
  Builder b;
  b.bytes.resize(20);
  Tuple(b, CTA_TUPLE_ORIG, "198.51.100.10", "192.0.2.74", 40000, 80);
  Tuple(b, CTA_TUPLE_REPLY, "192.0.2.100", "198.51.100.10", 2222, 40000);
  size_t c = b.Begin(CTA_COUNTERS_ORIG);
  b.Be64(CTA_COUNTERS_PACKETS, 5);
  b.Be64(CTA_COUNTERS_BYTES, 268);
  b.End(c);
  c = b.Begin(CTA_COUNTERS_REPLY);
  b.Be64(CTA_COUNTERS_PACKETS, 4);
  b.Be64(CTA_COUNTERS_BYTES, 5000000000ull);
  b.End(c);
  size_t ts = b.Begin(CTA_TIMESTAMP);
  b.Be64(CTA_TIMESTAMP_START, 1796506269172092000ull);
  b.Be64(CTA_TIMESTAMP_STOP, 1796506274395090000ull);
  b.End(ts);
  size_t pi = b.Begin(CTA_PROTOINFO);
  size_t tcp = b.Begin(CTA_PROTOINFO_TCP);
  b.U8(CTA_PROTOINFO_TCP_STATE, 7);  // TIME_WAIT
  b.End(tcp);
  b.End(pi);
  b.Be32(CTA_STATUS, 0x18e);
  b.Be32(CTA_MARK, 0x2000);
  b.Be32(CTA_ID, id);
  nlmsghdr h{};
  h.nlmsg_len = static_cast<uint32_t>(b.bytes.size());
  h.nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE;
  memcpy(b.bytes.data(), &h, sizeof h);
  nfgenmsg g{AF_INET, NFNETLINK_V0, 0};
  memcpy(b.bytes.data() + 16, &g, 4);
  return b.bytes;
}

CtParse Parse(const std::vector<uint8_t>& m, CtFlow* f) { return ParseCtMessage(m.data(), m.size(), f); }

// The offsets of every attribute header in m (nests walked), for the length cases.
void AttrOffsets(const std::vector<uint8_t>& m, size_t from, size_t to, std::vector<size_t>* out) {
  size_t at = from;
  while (at + 4 <= to) {
    uint16_t len, type;
    memcpy(&len, &m[at], 2);
    memcpy(&type, &m[at + 2], 2);
    out->push_back(at);
    if (type & NLA_F_NESTED) AttrOffsets(m, at + 4, at + len, out);
    at += (len + 3) & ~3u;
  }
}

}  // namespace

int main() {
  Case("a DESTROY event: both tuples, id, mark, status, counters, timestamps, TCP state", [] {
    CtFlow f;
    CHECK(Parse(Destroy(), &f) == CtParse::kFlow);
    CHECK(f.destroy && f.family == 4 && f.proto == IPPROTO_TCP);
    CHECK(f.origSrc == "198.51.100.10" && f.origDst == "192.0.2.74" && f.origSport == 40000 && f.origDport == 80);
    CHECK(f.replySrc == "192.0.2.100" && f.replyDst == "198.51.100.10" && f.replySport == 2222);
    CHECK(f.hasId && f.id == 77 && f.mark == 0x2000 && f.status == 0x18e && f.tcpState == 7);
    CHECK(f.origPackets == 5 && f.origBytes == 268 && f.replyPackets == 4 && f.replyBytes == 5000000000ull);
    CHECK(f.startNs == 1796506269172092000ull && f.stopNs == 1796506274395090000ull);
  });

  Case("every truncation is malformed (as framed, and with nlmsg_len claiming the whole)", [] {
    std::vector<uint8_t> m = Destroy();
    for (size_t n = 0; n < m.size(); n++) {
      std::vector<uint8_t> cut(m.begin(), m.begin() + n);
      CtFlow f;
      CHECK(Parse(cut, &f) != CtParse::kFlow || n >= m.size() - 12);  // only trailing attrs optional
      if (n >= 16) {
        uint32_t len = static_cast<uint32_t>(n);
        memcpy(cut.data(), &len, 4);
        CtParse r = Parse(cut, &f);
        (void)r;  // framed short: a flow only if every tuple fitted; never a read past n (ASan)
      }
    }
  });

  Case("each attribute length too short, too long, or zero: refused, never read past", [] {
    std::vector<uint8_t> base = Destroy();
    std::vector<size_t> offsets;
    AttrOffsets(base, 20, base.size(), &offsets);
    CHECK(offsets.size() > 20);
    for (size_t at : offsets) {
      for (uint16_t len : {0, 1, 3, 0xffff}) {
        std::vector<uint8_t> m = base;
        memcpy(&m[at], &len, 2);
        CtFlow f;
        CHECK(Parse(m, &f) == CtParse::kMalformed);
      }
    }
  });

  Case("random bytes flipped: a flow or malformed, never a crash", [] {
    std::mt19937 rng(19);
    std::vector<uint8_t> base = Destroy();
    for (int i = 0; i < 20000; i++) {
      std::vector<uint8_t> m = base;
      for (int k = 0; k < 1 + i % 4; k++) m[16 + rng() % (m.size() - 16)] = static_cast<uint8_t>(rng());
      CtFlow f;
      Parse(m, &f);
    }
  });

  Case("not a conntrack event: skipped", [] {
    std::vector<uint8_t> m = Destroy();
    CtFlow f;
    uint16_t done = NLMSG_DONE;
    std::vector<uint8_t> d = m;
    memcpy(&d[4], &done, 2);
    CHECK(Parse(d, &f) == CtParse::kSkip);
    uint16_t exp = (NFNL_SUBSYS_CTNETLINK_EXP << 8) | 0;
    memcpy(&d[4], &exp, 2);
    CHECK(Parse(d, &f) == CtParse::kSkip);
    d = m;
    d[16] = AF_BRIDGE;
    CHECK(Parse(d, &f) == CtParse::kSkip);
  });

  Case("a datagram of three messages; a bad header ends the walk", [] {
    std::vector<uint8_t> all = Destroy(1), two = Destroy(2), three = Destroy(3);
    all.insert(all.end(), two.begin(), two.end());
    size_t third = all.size();
    all.insert(all.end(), three.begin(), three.end());
    std::vector<uint32_t> ids;
    CtWalk w = WalkCtDatagram(all.data(), all.size(), [&](const CtFlow& f) { ids.push_back(f.id); });
    CHECK(w.flows == 3 && w.malformed == 0 && ids == std::vector<uint32_t>({1, 2, 3}));
    uint32_t huge = 1u << 30;
    memcpy(&all[third], &huge, 4);
    ids.clear();
    w = WalkCtDatagram(all.data(), all.size(), [&](const CtFlow& f) { ids.push_back(f.id); });
    CHECK(w.flows == 2 && w.malformed == 1);
    w = WalkCtDatagram(all.data(), 7, [&](const CtFlow&) {});
    CHECK(w.flows == 0);
  });

  return failures ? 1 : 0;
}
