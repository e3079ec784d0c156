// What the relay and JS agree on: record tags, listen flags, forward()'s dial spec and
// close reasons. Defined here once; relay.cc exports them to JS (the addon's relayRecords,
// relayListen, relayDial and relayCloseReasons), so src/gateway/relay.ts reads these
// tables instead of copying them.
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

// forward()'s numbers: the Float64Array that new Relay() takes as its third argument holds
// them at these indexes, written by JS just before each forward(id, host, localIp, header).
// A typed array rather than an object: a flow costs no property lookups and no allocation.
enum DialField : uint8_t {
  kDialPort,         // the server's port
  kDialLocalPort,    // bind to this port (with localIp; 0: any; a taken one falls back to any)
  kDialTransparent,  // 1: IP_TRANSPARENT (localIp may be the attacker's)
  kDialMark,         // SO_MARK; 0: unset
  kDialTimeoutMs,    // connect timeout
  kDialFirstCap,     // keep this many of the attacker's first bytes
  kDialMaxIn,        // end the flow after this many bytes from the attacker (0: no cap)
  kDialMaxOut,       // ... or from the server
  kDialFields,
};
constexpr NamedValue kDialFieldNames[] = {
    {"port", kDialPort},         {"localPort", kDialLocalPort}, {"transparent", kDialTransparent},
    {"mark", kDialMark},         {"timeoutMs", kDialTimeoutMs}, {"firstCap", kDialFirstCap},
    {"maxIn", kDialMaxIn},       {"maxOut", kDialMaxOut},       {"length", kDialFields},
};

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
