// A thread of this process in SCHED_IDLE, or back to SCHED_OTHER: the store's thread runs
// only while the event loop waits, and a connection that wakes the loop preempts it at once
// (the kernel preempts an idle-policy thread on any other thread's wakeup). The loop puts
// the thread back to normal when it falls behind (src/events/store-thread.ts).
#include <sched.h>
#include <sys/resource.h>

#include <cerrno>
#include <string>

#include "napi_util.h"

namespace {

const char kThreadIdleUsage[] = "Usage: threadIdle(tid: number, idle: boolean): tid is a thread of this process";

// The nice value 0 as RLIMIT_NICE counts it (20 - nice).
constexpr rlim_t kNiceZero = 20;

napi_value ThreadIdle(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  double tid;
  bool idle = false;
  if (argc < 2 || !hg::GetInteger(env, argv[0], 1, 2147483647.0, &tid) ||
      napi_get_value_bool(env, argv[1], &idle) != napi_ok)
    return hg::Usage(env, kThreadIdleUsage);
  sched_param param{};
  const int policy = idle ? SCHED_IDLE : SCHED_OTHER;
  if (sched_setscheduler(static_cast<pid_t>(tid), policy, &param) != 0) {
    return hg::ThrowSyscall(env, "sched_setscheduler",
                            std::to_string(static_cast<long>(tid)) + (idle ? ", SCHED_IDLE" : ", SCHED_OTHER"), errno);
  }
  return hg::Undefined(env);
}

// Whether a thread put in SCHED_IDLE can be put back once privileges are dropped: an
// unprivileged process may leave SCHED_IDLE only for a nice value its RLIMIT_NICE allows.
// Raises the limit to nice 0 where it can (root, before the drop). A boolean.
napi_value AllowThreadNormal(napi_env env, napi_callback_info) {
  rlimit limit{};
  bool ok = getrlimit(RLIMIT_NICE, &limit) == 0;
  if (ok && limit.rlim_cur < kNiceZero) {
    rlimit raised{kNiceZero, limit.rlim_max < kNiceZero ? kNiceZero : limit.rlim_max};
    ok = setrlimit(RLIMIT_NICE, &raised) == 0;
  }
  napi_value result;
  napi_get_boolean(env, ok, &result);
  return result;
}

}  // namespace

void InitSched(napi_env env, napi_value exports) {
  napi_property_descriptor functions[] = {
      hg::Method("threadIdle", ThreadIdle, napi_enumerable),
      hg::Method("allowThreadNormal", AllowThreadNormal, napi_enumerable),
  };
  napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
}
