// udp.cc's exports (udpSocket, udpConnect, UdpPort), added to the addon by honeygate.cc's Init.
#pragma once
#include "napi_util.h"

namespace hg {
void InitUdp(napi_env env, napi_value exports);
}  // namespace hg
