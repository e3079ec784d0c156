// The native relay's N-API glue: it runs relay_core's epoll core on the main thread's
// libuv loop (its epoll fd watched by one uv_poll_t), so a flow costs no net.Socket, no
// per-chunk JS and no thread hop. JS keeps every decision (admission, route, server, source
// mode, events); the relay tells it what happened in batches, as records: numbers in one
// Float64Array, their strings in order in one array.
//
//   numbers                                                        strings
//   [1, id, tag, srcPort, dstPort|-1]                              srcIp, dstIp (if dstPort >= 0)   accepted on listener `tag`
//   [2, id]                                                                                         upstream connected
//   [3, id]                                                        message                          upstream connect failed
//   [4, id, reason, bytesIn, bytesOut, firstStart, firstEnd, hasDetail]  detail (if hasDetail)  finished
//   [5, tag]                                                       message                          accept failed (EMFILE, ...)
//
// Out of file descriptors, a record 5 that says EMFILE or ENFILE may be followed by a record
// 1 on the core's reserve descriptor (relay_core.h): JS records and closes that flow
// (fd-exhausted). unlisten() first accepts what the kernel has queued and reports it, so a
// stop or a reload records those flows instead of resetting them.
//
// Record tags, listen flags, forward()'s dial spec and close reasons (record 4's reason is
// a code) are in boundary.h, which this file exports to JS. The finished flows' first bytes
// come as one Buffer per batch, the callback's third argument: record 4 gives its range
// (-1, -1: none). One backing store per batch instead of one per flow: the young-generation
// GC pays for each one.
#include <uv.h>

#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "boundary.h"
#include "napi_util.h"
#include "relay_core.h"

using namespace hg;

namespace {

constexpr size_t kNumbers[] = {0, 5, 2, 2, 8, 2};  // numbers per record type (header comment)

class Relay : public RecordSink {
 public:
  // counters: Float64Array(2) for Counters(); dial: Float64Array(kDialFields), forward()'s spec.
  Relay(double* counters, double* dial) : counters_(counters), dial_(dial) {}

  RelayCore& core() { return core_; }

  // Starts watching the core's epoll fd and the 100 ms tick; records go to `callback`.
  void Start(napi_env env, napi_value callback) {
    env_ = env;
    callback_.Init(env, callback, "honeygate:relay");
    uv_loop_t* loop;
    napi_get_uv_event_loop(env, &loop);
    poll_.data = this;
    timer_.data = this;
    uv_poll_init(loop, &poll_, core_.fd());
    uv_poll_start(&poll_, UV_READABLE, [](uv_poll_t* p, int, int) { static_cast<Relay*>(p->data)->OnReady(); });
    uv_timer_init(loop, &timer_);
    uv_timer_start(&timer_, [](uv_timer_t* t) { static_cast<Relay*>(t->data)->OnTick(); }, 100, 100);
    uv_unref(reinterpret_cast<uv_handle_t*>(&timer_));
    UpdateRef();
  }

  bool destroyed() const { return destroyed_; }
  double* dial() { return dial_; }

  void Push(Record&& record) override { records_.push_back(std::move(record)); }

  // Closes everything; the JS object may outlive it (methods then throw).
  void Destroy() {
    if (destroyed_) return;
    destroyed_ = true;
    core_.Shutdown();
    uv_poll_stop(&poll_);
    uv_timer_stop(&timer_);
    // The epoll fd, callback and scratch go when both handles are closed.
    pendingClose_ = 2;
    auto closed = [](uv_handle_t* h) {
      auto* self = static_cast<Relay*>(h->data);
      if (--self->pendingClose_ == 0) self->Release();
    };
    uv_close(reinterpret_cast<uv_handle_t*>(&poll_), closed);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), closed);
  }

  // The JS object was collected: free now if the handles are closed, else when they are.
  void Orphan() {
    orphaned_ = true;
    if (!destroyed_) Destroy();
    else if (released_) delete this;
  }

  // Closes listener `tag` after reporting (now, to JS) what the kernel had queued on it.
  void Unlisten(uint32_t tag) {
    core_.Drain(tag);
    Deliver();
    if (destroyed_) return;  // JS destroyed the relay meanwhile
    core_.Unlisten(tag);     // a no-op if JS unlistened this one itself
    UpdateRef();
  }

  // Writes bytesIn, bytesOut into the shared counters; false when the relay has no such flow.
  bool Counters(uint32_t id) {
    uint64_t in, out;
    if (!core_.Counters(id, &in, &out)) return false;
    counters_[0] = static_cast<double>(in);
    counters_[1] = static_cast<double>(out);
    return true;
  }

  // Keeps the loop alive while the relay has a listener or a flow.
  void UpdateRef() {
    if (destroyed_) return;
    auto* h = reinterpret_cast<uv_handle_t*>(&poll_);
    if (core_.Idle()) uv_unref(h);
    else uv_ref(h);
  }

 private:
  void Release() {
    core_.Release();
    callback_.Release(env_);
    released_ = true;
    if (orphaned_) delete this;
  }

  void OnReady() {
    if (destroyed_) return;
    core_.OnReady();
    Deliver();
  }

  void OnTick() {
    if (destroyed_) return;
    core_.OnTick();
    Deliver();
  }

  // Hands the records to JS in one call; JS may call back into the relay meanwhile. Numbers
  // go in one Float64Array, strings in one array, first bytes in one Buffer: a few napi calls
  // per batch instead of one per value, and no heap number per value.
  void Deliver() {
    if (delivering_ || records_.empty() || destroyed_) return;
    delivering_ = true;
    while (!records_.empty() && !destroyed_) {
      std::vector<Record> batch;
      batch.swap(records_);
      size_t numbers = 0, firstTotal = 0;
      for (const Record& r : batch) {
        numbers += kNumbers[r.type];
        if (r.type == kRecordFinished && r.hasFirst) firstTotal += r.first.size();
      }
      napi_handle_scope scope;
      napi_open_handle_scope(env_, &scope);
      napi_value args[3];
      double* num = nullptr;
      if (!NewNumbers(env_, numbers, &num, &args[0]) || napi_create_array(env_, &args[1]) != napi_ok) {
        // Out of memory: the records wait for the next tick (OnTick) rather than go missing.
        napi_value ignored;
        napi_get_and_clear_last_exception(env_, &ignored);
        napi_close_handle_scope(env_, scope);
        records_.swap(batch);
        break;
      }
      char* firsts = nullptr;
      if (firstTotal == 0 ||
          napi_create_buffer(env_, firstTotal, reinterpret_cast<void**>(&firsts), &args[2]) != napi_ok) {
        firsts = nullptr;
        napi_get_null(env_, &args[2]);
      }
      size_t n = 0, firstAt = 0;
      uint32_t k = 0;
      auto str = [&](const std::string& text) {
        napi_value v;
        napi_create_string_latin1(env_, text.data(), text.size(), &v);
        napi_set_element(env_, args[1], k++, v);
      };
      for (Record& r : batch) {
        num[n++] = r.type;
        switch (r.type) {
          case kRecordAccepted:
            num[n++] = r.id, num[n++] = r.tag, num[n++] = r.pa, num[n++] = r.hasDst ? static_cast<double>(r.pb) : -1.0;
            str(r.a);
            if (r.hasDst) str(r.b);
            break;
          case kRecordDialed:
            num[n++] = r.id;
            break;
          case kRecordDialFailed:
            num[n++] = r.id;
            str(r.a);
            break;
          case kRecordFinished: {
            num[n++] = r.id, num[n++] = r.reason, num[n++] = static_cast<double>(r.in), num[n++] = static_cast<double>(r.out);
            if (r.hasFirst && firsts) {
              memcpy(firsts + firstAt, r.first.data(), r.first.size());
              num[n++] = static_cast<double>(firstAt);
              firstAt += r.first.size();
              num[n++] = static_cast<double>(firstAt);
            } else {
              num[n++] = -1, num[n++] = -1;
            }
            num[n++] = r.hasDetail ? 1 : 0;
            if (r.hasDetail) str(r.b);
            break;
          }
          case kRecordAcceptFailed:
            num[n++] = r.tag;
            str(r.a);
            break;
        }
      }
      callback_.Call(env_, 3, args);
      napi_close_handle_scope(env_, scope);
    }
    delivering_ = false;
  }


  RelayCore core_{this};
  napi_env env_ = nullptr;
  BatchCallback callback_;
  double* counters_;
  double* dial_;
  uv_poll_t poll_{};
  uv_timer_t timer_{};
  int pendingClose_ = 0;
  bool destroyed_ = false, released_ = false, orphaned_ = false, delivering_ = false;
  std::vector<Record> records_;
};

// ---- JS surface ------------------------------------------------------------------------

Relay* Self(napi_env env, napi_callback_info info, size_t* argc, napi_value* argv) {
  napi_value self;
  void* data = nullptr;
  if (napi_get_cb_info(env, info, argc, argv, &self, nullptr) != napi_ok) return nullptr;
  if (napi_unwrap(env, self, &data) != napi_ok || !data) {
    Throw(env, "not a Relay");
    return nullptr;
  }
  auto* relay = static_cast<Relay*>(data);
  if (relay->destroyed()) {
    Throw(env, "relay destroyed");
    return nullptr;
  }
  return relay;
}

// The relay and the first argument of a method that takes one number (a flow id, an fd, a
// tag); nullptr after throwing `usage`. argv gets the rest, up to *argc.
Relay* WithNumber(napi_env env, napi_callback_info info, const char* usage, uint32_t* n, size_t* argc = nullptr,
                  napi_value* argv = nullptr) {
  size_t count = 2;
  napi_value args[2];
  Relay* r = Self(env, info, &count, args);
  if (!r) return nullptr;
  if (count < 1 || !GetUint32(env, args[0], n)) {
    Throw(env, usage);
    return nullptr;
  }
  if (argc && argv) {
    *argc = count - 1;
    if (count > 1) argv[0] = args[1];
  }
  return r;
}

// A Float64Array of at least `length` elements: its data, or nullptr.
double* Float64Data(napi_env env, napi_value value, size_t length) {
  bool isTyped = false;
  if (napi_is_typedarray(env, value, &isTyped) != napi_ok || !isTyped) return nullptr;
  napi_typedarray_type type;
  size_t have;
  void* data;
  napi_get_typedarray_info(env, value, &type, &have, &data, nullptr, nullptr);
  return type == napi_float64_array && have >= length ? static_cast<double*>(data) : nullptr;
}

// new Relay(onRecords(batch: unknown[]), counters: Float64Array(2), dial: Float64Array(relayDial.length))
napi_value New(napi_env env, napi_callback_info info) {
  static const char usage[] =
      "Usage: new Relay(onRecords: Function, counters: Float64Array(2), dial: Float64Array(relayDial.length))";
  size_t argc = 3;
  napi_value argv[3], self;
  napi_get_cb_info(env, info, &argc, argv, &self, nullptr);
  napi_valuetype type;
  if (argc < 3 || napi_typeof(env, argv[0], &type) != napi_ok || type != napi_function) return Usage(env, usage);
  double* counters = Float64Data(env, argv[1], 2);
  double* dial = Float64Data(env, argv[2], kDialFields);
  if (!counters || !dial) return Usage(env, usage);
  auto* relay = new Relay(counters, dial);
  std::string error = relay->core().Open();
  if (!error.empty()) {
    delete relay;
    return Throw(env, error.c_str());
  }
  relay->Start(env, argv[0]);
  // Keep the memory of both arrays alive as long as the relay.
  napi_set_named_property(env, self, "_counters", argv[1]);
  napi_set_named_property(env, self, "_dial", argv[2]);
  napi_wrap(
      env, self, relay, [](napi_env, void* data, void*) { static_cast<Relay*>(data)->Orphan(); }, nullptr, nullptr);
  return self;
}

// listen(fd, tag, flags): the relay accepts on fd (and closes it on unlisten).
napi_value Listen(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  Relay* r = Self(env, info, &argc, argv);
  if (!r) return nullptr;
  uint32_t fd, tag, flags;
  if (argc < 3 || !GetUint32(env, argv[0], &fd) || !GetUint32(env, argv[1], &tag) ||
      !GetUint32(env, argv[2], &flags))
    return Throw(env, "Usage: listen(fd, tag, flags)");
  std::string err = r->core().Listen(static_cast<int>(fd), tag, flags);
  if (!err.empty()) return Throw(env, err.c_str());
  r->UpdateRef();
  return Undefined(env);
}

napi_value Unlisten(napi_env env, napi_callback_info info) {
  uint32_t tag;
  Relay* r = WithNumber(env, info, "Usage: unlisten(tag)", &tag);
  if (!r) return nullptr;
  r->Unlisten(tag);
  return Undefined(env);
}

// A dial spec number as an unsigned integer below `max` (JS writes them; NaN and negatives
// read as 0).
uint64_t SpecNumber(double value, double max) {
  return value >= 0 && value <= max ? static_cast<uint64_t>(value) : 0;
}

// forward(id, host, localIp|null, header|null), its numbers in the dial spec (boundary.h's
// DialField): undefined, or why it could not start. When the local port was taken, the
// spec's localPort is overwritten with the port the dial went out from.
napi_value Forward(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  Relay* r = Self(env, info, &argc, argv);
  if (!r) return nullptr;
  uint32_t id;
  if (argc < 4 || !GetUint32(env, argv[0], &id) || !IsString(env, argv[1])) {
    return Throw(env, "Usage: forward(id, host, localIp | null, header | null)");
  }
  double* spec = r->dial();
  Dial d;
  d.host = GetString(env, argv[1]);
  d.port = static_cast<uint32_t>(SpecNumber(spec[kDialPort], 65535));
  if (IsString(env, argv[2])) d.localIp = GetString(env, argv[2]);
  d.localPort = static_cast<uint32_t>(SpecNumber(spec[kDialLocalPort], 65535));
  bool isBuffer = false;
  napi_is_buffer(env, argv[3], &isBuffer);
  if (isBuffer) {
    void* data;
    size_t len;
    napi_get_buffer_info(env, argv[3], &data, &len);
    d.header.assign(static_cast<char*>(data), len);
  }
  d.transparent = spec[kDialTransparent] != 0;
  d.mark = static_cast<uint32_t>(SpecNumber(spec[kDialMark], 4294967295.0));
  d.timeoutMs = static_cast<uint32_t>(SpecNumber(spec[kDialTimeoutMs], 4294967295.0));
  d.firstCap = static_cast<uint32_t>(SpecNumber(spec[kDialFirstCap], 4294967295.0));
  d.maxIn = SpecNumber(spec[kDialMaxIn], 9007199254740991.0);
  d.maxOut = SpecNumber(spec[kDialMaxOut], 9007199254740991.0);
  uint32_t fromPort;
  std::string error = r->core().Forward(id, d, &fromPort);
  if (fromPort != 0) spec[kDialLocalPort] = fromPort;
  return MessageOrUndefined(env, error);
}

napi_value Adopt(napi_env env, napi_callback_info info) {
  uint32_t fd;
  Relay* r = WithNumber(env, info, "Usage: adopt(fd)", &fd);
  if (!r) return nullptr;
  int64_t id = r->core().Adopt(static_cast<int>(fd));
  r->UpdateRef();
  napi_value v;
  napi_create_double(env, static_cast<double>(id), &v);
  return v;
}

napi_value Take(napi_env env, napi_callback_info info) {
  uint32_t id;
  Relay* r = WithNumber(env, info, "Usage: take(id)", &id);
  if (!r) return nullptr;
  int fd = r->core().Take(id);
  r->UpdateRef();
  napi_value v;
  napi_create_int32(env, fd, &v);
  return v;
}

napi_value CloseFlow(napi_env env, napi_callback_info info) {
  uint32_t id;
  size_t rest = 0;
  napi_value argv[1];
  Relay* r = WithNumber(env, info, "Usage: close(id, reset?)", &id, &rest, argv);
  if (!r) return nullptr;
  bool reset = false;
  if (rest > 0) napi_get_value_bool(env, argv[0], &reset);
  r->core().Close(id, reset);
  r->UpdateRef();
  return Undefined(env);
}

napi_value Counters(napi_env env, napi_callback_info info) {
  uint32_t id;
  Relay* r = WithNumber(env, info, "Usage: counters(id)", &id);
  if (!r) return nullptr;
  napi_value v;
  napi_get_boolean(env, r->Counters(id), &v);
  return v;
}

napi_value FirstBytes(napi_env env, napi_callback_info info) {
  uint32_t id;
  Relay* r = WithNumber(env, info, "Usage: firstBytes(id)", &id);
  if (!r) return nullptr;
  const std::string* first = r->core().First(id);
  napi_value v;
  if (!first) {
    napi_get_null(env, &v);
    return v;
  }
  // Up to the flow's firstBytes cap; a failed allocation throws rather than return garbage.
  if (napi_create_buffer_copy(env, first->size(), first->data(), nullptr, &v) != napi_ok) {
    return Throw(env, "firstBytes: out of memory");
  }
  return v;
}

napi_value Destroy(napi_env env, napi_callback_info info) {
  napi_value self;
  void* data = nullptr;
  napi_get_cb_info(env, info, nullptr, nullptr, &self, nullptr);
  if (napi_unwrap(env, self, &data) == napi_ok && data) static_cast<Relay*>(data)->Destroy();
  return Undefined(env);
}

}  // namespace

napi_value InitRelay(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      Method("listen", Listen, napi_default),       Method("unlisten", Unlisten, napi_default),
      Method("forward", Forward, napi_default),     Method("take", Take, napi_default),
      Method("adopt", Adopt, napi_default),         Method("close", CloseFlow, napi_default),
      Method("counters", Counters, napi_default),   Method("firstBytes", FirstBytes, napi_default),
      Method("destroy", Destroy, napi_default),
  };
  napi_value cls;
  napi_define_class(env, "Relay", NAPI_AUTO_LENGTH, New, nullptr, sizeof methods / sizeof methods[0], methods,
                    &cls);
  napi_set_named_property(env, exports, "Relay", cls);
  // boundary.h's tables: {name: value} objects and the close reasons' names by code.
  auto table = [&](const char* name, const NamedValue* entries, size_t count) {
    napi_value object, value;
    napi_create_object(env, &object);
    for (size_t i = 0; i < count; i++) {
      napi_create_uint32(env, entries[i].value, &value);
      napi_set_named_property(env, object, entries[i].name, value);
    }
    napi_set_named_property(env, exports, name, object);
  };
  table("relayRecords", kRecordTags, sizeof kRecordTags / sizeof kRecordTags[0]);
  table("relayListen", kListenFlags, sizeof kListenFlags / sizeof kListenFlags[0]);
  table("relayDial", kDialFieldNames, sizeof kDialFieldNames / sizeof kDialFieldNames[0]);
  napi_value reasons, name;
  napi_create_array_with_length(env, kCloseCodes, &reasons);
  for (uint32_t i = 0; i < kCloseCodes; i++) {
    napi_create_string_utf8(env, kCloseNames[i], NAPI_AUTO_LENGTH, &name);
    napi_set_element(env, reasons, i, name);
  }
  napi_set_named_property(env, exports, "relayCloseReasons", reasons);
  return exports;
}
