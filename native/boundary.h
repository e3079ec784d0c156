// What the relay and JS agree on: record tags, listen flags and close reasons. Defined
// here once; relay.cc exports them to JS (the addon's relayRecords, relayListen and
// relayCloseReasons), so src/gateway/relay.ts reads these tables instead of copying them.
#pragma once
#include <cstddef>
#include <cstdint>

namespace hg {

// A record's first number (relay.cc's header comment gives each one's layout).
enum RecordTag : uint8_t {
  kRecordAccepted = 1,      // accepted on a listener
  kRecordDialed = 2,        // server connected
  kRecordDialFailed = 3,    // server connect failed
  kRecordFinished = 4,      // the flow ended
  kRecordAcceptFailed = 5,  // accept failed (EMFILE, ...)
};
struct NamedValue {
  const char* name;
  uint32_t value;
};
constexpr NamedValue kRecordTags[] = {
    {"accepted", kRecordAccepted},         {"dialed", kRecordDialed},
    {"dialFailed", kRecordDialFailed},     {"finished", kRecordFinished},
    {"acceptFailed", kRecordAcceptFailed},
};

// listen()'s flags.
constexpr uint32_t kListenLocal = 1;        // report getsockname() as dst
constexpr uint32_t kListenOriginalDst = 2;  // report SO_ORIGINAL_DST (else getsockname)
constexpr NamedValue kListenFlags[] = {{"local", kListenLocal}, {"originalDst", kListenOriginalDst}};

// Why a relayed flow ended: record 4 carries the code, JS reads kCloseNames[code]. The
// names are members of src/events/event.ts's CloseReason (a unit test checks it).
enum CloseCode : uint8_t {
  kClientClosed,
  kServerClosed,
  kClientReset,
  kServerReset,
  kByteCap,
  kCloseError,
  kCloseCodes,
};
constexpr const char* kCloseNames[kCloseCodes] = {
    "client-closed", "server-closed", "client-reset", "server-reset", "byte-cap", "error",
};

}  // namespace hg
