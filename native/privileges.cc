// Dropping root after start-up: dropPrivileges({ uid, gid, groups, keep }) switches the whole
// process to uid/gid/groups and leaves the calling (main) thread only the capabilities in
// `keep`, also as ambient capabilities so that the programs it runs (nft, ip) get them.
// privileges() reports the calling thread's ids and capability sets, for logs and tests.
//
// Linux splits this between process-wide and per-thread calls, and Node has several threads
// (the V8 platform workers, the libuv threadpool):
// - glibc's setgroups/setresgid/setresuid change every thread (it signals each one);
// - prctl(PR_SET_KEEPCAPS), capset(2), PR_CAP_AMBIENT_* and PR_CAPBSET_DROP act on the
//   calling thread only.
// So the order is: bounding set down to `keep` (needs CAP_SETPCAP, still held), KEEPCAPS on
// this thread, then the id switch (every other thread loses every capability, as it lacks
// KEEPCAPS: what we want), then capset and the ambient set on this thread. Last,
// PR_SET_NO_NEW_PRIVS, which is per thread too: an allow-everything seccomp filter installed
// with SECCOMP_FILTER_FLAG_TSYNC copies it to every thread (the kernel sets no_new_privs on
// each thread it synchronises). The capabilities stay on the main thread, where the event
// loop runs: the listeners, IP_TRANSPARENT upstreams and the relay's uv_poll all live there.
//
// Started as a non-root user (systemd User= with AmbientCapabilities=) there is no id to
// switch: the sets are only trimmed to `keep`, and no_new_privs set.
//
// It shares the N-API helpers (napi_util.h) with the socket code, and the exports object.
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "napi_util.h"

namespace {

const char kDropUsage[] =
    "Usage: dropPrivileges({ uid: number, gid: number, groups: number[], keep: number[] }): ids 0-4294967294, "
    "keep lists capability numbers 0-63";

using hg::GetInteger;
using hg::ThrowSyscall;
using hg::Usage;

bool GetId(napi_env env, napi_value object, const char* key, uint32_t* out) {
  napi_value value;
  double d;
  if (napi_get_named_property(env, object, key, &value) != napi_ok) return false;
  if (!GetInteger(env, value, 0, 4294967294.0, &d)) return false;  // -1 means "unchanged" to the kernel
  *out = static_cast<uint32_t>(d);
  return true;
}

bool GetList(napi_env env, napi_value object, const char* key, double max, std::vector<uint32_t>* out) {
  napi_value list;
  bool is_array = false;
  uint32_t length = 0;
  if (napi_get_named_property(env, object, key, &list) != napi_ok) return false;
  if (napi_is_array(env, list, &is_array) != napi_ok || !is_array) return false;
  if (napi_get_array_length(env, list, &length) != napi_ok || length > 65536) return false;
  for (uint32_t i = 0; i < length; i++) {
    napi_value item;
    double d;
    if (napi_get_element(env, list, i, &item) != napi_ok || !GetInteger(env, item, 0, max, &d)) return false;
    out->push_back(static_cast<uint32_t>(d));
  }
  return true;
}

struct Caps {
  uint64_t effective = 0, permitted = 0, inheritable = 0;
};

int GetCaps(Caps* caps) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (syscall(SYS_capget, &header, data) != 0) return errno;
  caps->effective = data[0].effective | (uint64_t{data[1].effective} << 32);
  caps->permitted = data[0].permitted | (uint64_t{data[1].permitted} << 32);
  caps->inheritable = data[0].inheritable | (uint64_t{data[1].inheritable} << 32);
  return 0;
}

int SetCaps(uint64_t set) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};  // pid 0: this thread
  __user_cap_data_struct data[2]{};
  for (int i = 0; i < 2; i++) {
    uint32_t half = static_cast<uint32_t>(set >> (32 * i));
    data[i].effective = data[i].permitted = data[i].inheritable = half;
  }
  return syscall(SYS_capset, &header, data) == 0 ? 0 : errno;
}

std::string Hex(uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// dropPrivileges({ uid, gid, groups, keep }): see the top of the file. Throws on the first
// failed call; a failure after the id switch leaves the process unprivileged, never more.
napi_value DropPrivileges(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg;
  napi_valuetype type;
  if (napi_get_cb_info(env, info, &argc, &arg, nullptr, nullptr) != napi_ok || argc < 1) return Usage(env, kDropUsage);
  if (napi_typeof(env, arg, &type) != napi_ok || type != napi_object) return Usage(env, kDropUsage);
  uint32_t uid, gid;
  std::vector<uint32_t> groups, keep_list;
  if (!GetId(env, arg, "uid", &uid) || !GetId(env, arg, "gid", &gid) ||
      !GetList(env, arg, "groups", 4294967294.0, &groups) || !GetList(env, arg, "keep", 63, &keep_list))
    return Usage(env, kDropUsage);
  uint64_t keep = 0;
  for (uint32_t cap : keep_list) keep |= uint64_t{1} << cap;

  Caps before;
  if (int err = GetCaps(&before)) return ThrowSyscall(env, "capget", "", err);
  bool switch_ids = geteuid() != uid || getuid() != uid || getegid() != gid || getgid() != gid;
  if (!switch_ids) keep &= before.permitted;  // a non-root start can only lower its sets

  // The bounding set limits what any program run later could gain; needs CAP_SETPCAP.
  if (before.effective & (uint64_t{1} << CAP_SETPCAP)) {
    for (int cap = 0; cap <= 63; cap++) {
      if (keep & (uint64_t{1} << cap)) continue;
      if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 1) continue;  // 0: dropped; -1: no such cap
      if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)
        return ThrowSyscall(env, "prctl", "PR_CAPBSET_DROP, " + std::to_string(cap), errno);
    }
  }

  if (switch_ids) {
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return ThrowSyscall(env, "prctl", "PR_SET_KEEPCAPS, 1", errno);
    std::vector<gid_t> list(groups.begin(), groups.end());
    if (setgroups(list.size(), list.data()) != 0)
      return ThrowSyscall(env, "setgroups", std::to_string(list.size()) + " groups", errno);
    if (setresgid(gid, gid, gid) != 0) {
      std::string g = std::to_string(gid);
      return ThrowSyscall(env, "setresgid", g + ", " + g + ", " + g, errno);
    }
    if (setresuid(uid, uid, uid) != 0) {
      std::string u = std::to_string(uid);
      return ThrowSyscall(env, "setresuid", u + ", " + u + ", " + u, errno);
    }
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) return ThrowSyscall(env, "prctl", "PR_SET_KEEPCAPS, 0", errno);
  }

  if (int err = SetCaps(keep)) {
    return ThrowSyscall(env, "capset", "permitted, effective, inheritable " + Hex(keep), err);
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
    return ThrowSyscall(env, "prctl", "PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL", errno);
  for (int cap = 0; cap <= 63; cap++) {
    if (!(keep & (uint64_t{1} << cap))) continue;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0)
      return ThrowSyscall(env, "prctl", "PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, " + std::to_string(cap), errno);
  }

  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return ThrowSyscall(env, "prctl", "PR_SET_NO_NEW_PRIVS, 1", errno);
  // Allows every system call; TSYNC gives every thread this thread's filter and no_new_privs.
  sock_filter allow[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
  sock_fprog program{1, allow};
  long synced = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &program);
  if (synced != 0) {
    // > 0: the id of a thread that could not be synchronised.
    return ThrowSyscall(env, "seccomp", "SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, allow",
                synced > 0 ? ESRCH : errno);
  }
  return nullptr;
}

napi_value SetNumber(napi_env env, napi_value object, const char* key, double value) {
  napi_value v;
  napi_create_double(env, value, &v);
  napi_set_named_property(env, object, key, v);
  return object;
}

napi_value SetBig(napi_env env, napi_value object, const char* key, uint64_t value) {
  napi_value v;
  napi_create_bigint_uint64(env, value, &v);
  napi_set_named_property(env, object, key, v);
  return object;
}

// privileges(): { uid, euid, gid, egid, effective, permitted, inheritable, ambient (bigint
// masks), noNewPrivs } of the calling thread.
napi_value Privileges(napi_env env, napi_callback_info) {
  Caps caps;
  if (int err = GetCaps(&caps)) return ThrowSyscall(env, "capget", "", err);
  uint64_t ambient = 0;
  for (int cap = 0; cap <= 63; cap++) {
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0) == 1) ambient |= uint64_t{1} << cap;
  }
  napi_value out;
  napi_create_object(env, &out);
  SetNumber(env, out, "uid", getuid());
  SetNumber(env, out, "euid", geteuid());
  SetNumber(env, out, "gid", getgid());
  SetNumber(env, out, "egid", getegid());
  SetBig(env, out, "effective", caps.effective);
  SetBig(env, out, "permitted", caps.permitted);
  SetBig(env, out, "inheritable", caps.inheritable);
  SetBig(env, out, "ambient", ambient);
  SetNumber(env, out, "noNewPrivs", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
  return out;
}

}  // namespace

// Adds dropPrivileges and privileges to the addon's exports (called from the module's Init).
napi_value InitPrivileges(napi_env env, napi_value exports) {
  napi_property_descriptor functions[] = {
      {"dropPrivileges", nullptr, DropPrivileges, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"privileges", nullptr, Privileges, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
  return exports;
}
