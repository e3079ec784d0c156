// The conntrack event reader for kernel routes (src/kernel/conntrack.ts):
//
//   new ConntrackReader({ mark, rcvbuf }, onBatch(numbers: Float64Array, hosts: string[]))
//     subscribes this network namespace's conntrack DESTROY events (conntrack.h's
//     CtEventSocket: a forced receive buffer of `rcvbuf` bytes, NETLINK_BROADCAST_ERROR, a
//     socket filter keeping the flows whose ct mark has every bit of `mark`). A thread of its
//     own reads the socket, so a busy JS loop never leaves the kernel's queue full; it parses
//     each event by hand and hands batches to onBatch on the JS thread (a threadsafe
//     function, one call per batch). close() stops the thread and closes the sockets.
//   reader.sweep(): false when the kernel refused it
//     sends CtSweep's dump request (expired entries evicted now, so their DESTROY follows).
//     Called from the JS thread: the kernel wants CAP_NET_ADMIN of the sender, which only the
//     main thread keeps after dropPrivileges (privileges.cc); the reader thread drains the
//     (empty) answer.
//
// Per record kRecordFields numbers, first the kind:
//   kFlow      [0, family, proto, tcpState (-1: none), id, mark, status, origSport,
//               origDport, replySport, replyDport, origPackets, origBytes, replyPackets,
//               replyBytes, startMs (0: none), stopMs (0: none), atMs] and 4 strings
//               [origSrc, origDst, replySrc, replyDst]
//   kOverrun   [1, overruns so far]: recv() said ENOBUFS, the kernel had no room for events
//   kMalformed [2, messages so far]: events that did not parse, skipped
//   kDropped   [3, flows so far]: JS did not take its batches, kMaxQueued were waiting
// Other records carry 4 empty strings, so record i's strings are always hosts[4i, 4i+4).
#include <linux/netfilter/nfnetlink_compat.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <mutex>
#include <thread>
#include <vector>

#include "conntrack.h"
#include "napi_util.h"

namespace hg {
namespace {

constexpr unsigned kRecordFields = 19;
constexpr size_t kMaxQueued = 1 << 20;  // flows waiting for JS; beyond, counted and dropped
constexpr unsigned kSlots = 64;         // recvmmsg batch
constexpr size_t kSlotBytes = 16384;    // one event is a few hundred bytes

enum Kind { kFlow, kOverrun, kMalformed, kDropped };

struct Item {
  Kind kind;
  double count;  // kOverrun, kMalformed, kDropped
  CtFlow flow;   // kFlow
  double atMs;
};

double NowMs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) * 1000 + static_cast<double>(ts.tv_nsec) / 1e6;
}

class Reader {
 public:
  Reader(int events, int sweep, int stopRead, int stopWrite, uint32_t mark)
      : events_(events), sweep_(sweep), stopRead_(stopRead), stopWrite_(stopWrite), mark_(mark) {}

  bool Sweep() { return !closed_ && CtSweep(sweep_, sweepSeq_++); }

  void Start(napi_threadsafe_function tsfn) {
    tsfn_ = tsfn;
    thread_ = std::thread([this] { Run(); });
  }

  // Stops the thread and closes the sockets. On the JS thread; idempotent.
  void Close() {
    if (closed_) return;
    closed_ = true;
    char one = 1;
    if (write(stopWrite_, &one, 1) < 0) {
      // the pipe is ours and empty: cannot fail; the thread still ends at its next wakeup
    }
    if (thread_.joinable()) thread_.join();
    close(events_), close(sweep_), close(stopRead_), close(stopWrite_);
    napi_release_threadsafe_function(tsfn_, napi_tsfn_abort);
  }

  // On the JS thread: the waiting items as one onBatch call.
  void Deliver(napi_env env, napi_value callback) {
    std::vector<Item> items;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      items.swap(queue_);
      signalled_ = false;
    }
    if (!env || closed_ || items.empty()) return;
    size_t n = items.size();
    double* num = nullptr;
    napi_value args[2], buffer, recv;
    if (napi_create_arraybuffer(env, n * kRecordFields * sizeof(double), reinterpret_cast<void**>(&num), &buffer) !=
            napi_ok ||
        napi_create_typedarray(env, napi_float64_array, n * kRecordFields, buffer, 0, &args[0]) != napi_ok ||
        napi_create_array_with_length(env, n * 4, &args[1]) != napi_ok) {
      napi_value ignored;
      napi_get_and_clear_last_exception(env, &ignored);
      std::lock_guard<std::mutex> lock(mutex_);
      dropped_ += n;  // out of memory: say so with the next batch
      return;
    }
    napi_value empty;
    napi_create_string_latin1(env, "", 0, &empty);
    for (size_t i = 0; i < n; i++) {
      const Item& it = items[i];
      double* r = num + i * kRecordFields;
      for (unsigned k = 0; k < kRecordFields; k++) r[k] = 0;
      r[0] = it.kind;
      const std::string* hosts[4] = {nullptr, nullptr, nullptr, nullptr};
      if (it.kind != kFlow) {
        r[1] = it.count;
      } else {
        const CtFlow& f = it.flow;
        double fields[kRecordFields] = {
            0,
            static_cast<double>(f.family),
            static_cast<double>(f.proto),
            static_cast<double>(f.tcpState),
            static_cast<double>(f.id),
            static_cast<double>(f.mark),
            static_cast<double>(f.status),
            static_cast<double>(f.origSport),
            static_cast<double>(f.origDport),
            static_cast<double>(f.replySport),
            static_cast<double>(f.replyDport),
            static_cast<double>(f.origPackets),
            static_cast<double>(f.origBytes),
            static_cast<double>(f.replyPackets),
            static_cast<double>(f.replyBytes),
            static_cast<double>(f.startNs / 1000) / 1000,
            static_cast<double>(f.stopNs / 1000) / 1000,
            it.atMs,
        };
        for (unsigned k = 0; k < kRecordFields; k++) r[k] = fields[k];
        hosts[0] = &f.origSrc, hosts[1] = &f.origDst, hosts[2] = &f.replySrc, hosts[3] = &f.replyDst;
      }
      for (unsigned k = 0; k < 4; k++) {
        napi_value s = empty;
        if (hosts[k]) napi_create_string_latin1(env, hosts[k]->data(), hosts[k]->size(), &s);
        napi_set_element(env, args[1], static_cast<uint32_t>(i * 4 + k), s);
      }
    }
    napi_get_undefined(env, &recv);
    napi_call_function(env, recv, callback, 2, args, nullptr);
  }

 private:
  void Push(std::vector<Item>* batch) {
    if (batch->empty()) return;
    bool signal = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (Item& it : *batch) {
        if (it.kind == kFlow && queue_.size() >= kMaxQueued) {
          dropped_++;
          continue;
        }
        queue_.push_back(std::move(it));
      }
      if (dropped_ != droppedSaid_ && queue_.size() < kMaxQueued) {
        droppedSaid_ = dropped_;
        queue_.push_back(Item{kDropped, static_cast<double>(dropped_), {}, 0});
      }
      if (!signalled_ && !queue_.empty()) signal = signalled_ = true;
    }
    batch->clear();
    if (signal) napi_call_threadsafe_function(tsfn_, nullptr, napi_tsfn_nonblocking);
  }

  // Reads what the socket holds: true while there may be more.
  bool ReadEvents(std::vector<Item>* batch) {
    for (unsigned i = 0; i < kSlots; i++) {
      iov_[i] = {buffers_.data() + i * kSlotBytes, kSlotBytes};
      msgs_[i] = {};
      msgs_[i].msg_hdr.msg_iov = &iov_[i];
      msgs_[i].msg_hdr.msg_iovlen = 1;
    }
    int n = recvmmsg(events_, msgs_, kSlots, MSG_DONTWAIT, nullptr);
    if (n < 0) {
      if (errno == ENOBUFS) {
        // The kernel found the buffer full: events were not queued (DESTROY ones are
        // redelivered, NETLINK_BROADCAST_ERROR). Counted; reading goes on.
        batch->push_back(Item{kOverrun, static_cast<double>(++overruns_), {}, NowMs()});
        return true;
      }
      return errno == EINTR;
    }
    double at = NowMs();
    size_t malformed = 0;
    for (int i = 0; i < n; i++) {
      if (msgs_[i].msg_hdr.msg_flags & MSG_TRUNC) {
        malformed++;
        continue;
      }
      CtWalk w = WalkCtDatagram(static_cast<uint8_t*>(iov_[i].iov_base), msgs_[i].msg_len, [&](const CtFlow& f) {
        if (!f.destroy || (f.mark & mark_) != mark_) return;  // the socket filter's check, again
        batch->push_back(Item{kFlow, 0, f, at});
      });
      malformed += w.malformed;
    }
    if (malformed) {
      malformed_ += malformed;
      batch->push_back(Item{kMalformed, static_cast<double>(malformed_), {}, at});
    }
    return static_cast<unsigned>(n) == kSlots;
  }

  void Run() {
    std::vector<Item> batch;
    for (;;) {
      pollfd fds[3] = {{stopRead_, POLLIN, 0}, {events_, POLLIN, 0}, {sweep_, POLLIN, 0}};
      if (poll(fds, 3, -1) < 0 && errno != EINTR) break;
      if (fds[0].revents) break;
      if (fds[2].revents) CtDrain(sweep_);
      if (fds[1].revents & (POLLIN | POLLERR)) {
        // Read until the socket is empty, delivering every few thousand events.
        for (int round = 0; round < 64 && ReadEvents(&batch); round++) {
          if (batch.size() >= 4096) Push(&batch);
        }
        Push(&batch);
      }
    }
  }

  int events_, sweep_, stopRead_, stopWrite_;
  uint32_t mark_;
  uint32_t sweepSeq_ = 1;  // the JS thread's
  napi_threadsafe_function tsfn_ = nullptr;
  std::thread thread_;
  std::mutex mutex_;
  std::vector<Item> queue_;
  bool signalled_ = false;
  size_t dropped_ = 0, droppedSaid_ = 0;
  // the reader thread's own
  size_t overruns_ = 0, malformed_ = 0;
  std::vector<char> buffers_ = std::vector<char>(kSlots * kSlotBytes);
  iovec iov_[kSlots]{};
  mmsghdr msgs_[kSlots]{};

 public:
  bool closed_ = false;
  bool orphaned_ = false, released_ = false;
};

constexpr const char kUsage[] =
    "Usage: new ConntrackReader({ mark: number, rcvbuf: number }, onBatch: Function): mark 0-0xffffffff, "
    "rcvbuf 65536-1073741824";

bool GetNumber(napi_env env, napi_value object, const char* name, double min, double max, double* out) {
  napi_value v;
  return napi_get_named_property(env, object, name, &v) == napi_ok && GetInteger(env, v, min, max, out);
}

napi_value ReaderNew(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], self;
  napi_get_cb_info(env, info, &argc, argv, &self, nullptr);
  napi_valuetype t0, t1;
  double mark, rcvbuf;
  if (argc < 2 || napi_typeof(env, argv[0], &t0) != napi_ok || t0 != napi_object ||
      napi_typeof(env, argv[1], &t1) != napi_ok || t1 != napi_function ||
      !GetNumber(env, argv[0], "mark", 0, 4294967295.0, &mark) ||
      !GetNumber(env, argv[0], "rcvbuf", 65536, 1073741824.0, &rcvbuf))
    return Usage(env, kUsage);
  SocketError error;
  int events = CtEventSocket(NF_NETLINK_CONNTRACK_DESTROY, static_cast<int>(rcvbuf), static_cast<uint32_t>(mark), &error);
  if (events < 0) return ThrowSyscall(env, error.syscall, error.args, error.err);
  int sweep = CtSweepSocket(&error);
  if (sweep < 0) {
    close(events);
    return ThrowSyscall(env, error.syscall, error.args, error.err);
  }
  int stop[2];
  if (pipe2(stop, O_CLOEXEC) != 0) {
    int err = errno;
    close(events), close(sweep);
    return ThrowSyscall(env, "pipe2", "O_CLOEXEC", err);
  }
  auto* reader = new Reader(events, sweep, stop[0], stop[1], static_cast<uint32_t>(mark));
  napi_value name;
  napi_create_string_utf8(env, "honeygate:conntrack", NAPI_AUTO_LENGTH, &name);
  napi_threadsafe_function tsfn;
  napi_status status = napi_create_threadsafe_function(
      env, argv[1], nullptr, name, 0, 1, reader,
      [](napi_env, void*, void* hint) {
        auto* r = static_cast<Reader*>(hint);
        r->released_ = true;
        if (r->orphaned_) delete r;
      },
      reader,
      [](napi_env env, napi_value callback, void* context, void*) {
        static_cast<Reader*>(context)->Deliver(env, callback);
      },
      &tsfn);
  if (status != napi_ok) {
    close(events), close(sweep), close(stop[0]), close(stop[1]);
    delete reader;
    return Throw(env, "napi_create_threadsafe_function failed");
  }
  napi_unref_threadsafe_function(env, tsfn);  // the reader never keeps the process alive
  reader->Start(tsfn);
  napi_wrap(
      env, self, reader,
      [](napi_env, void* data, void*) {
        auto* r = static_cast<Reader*>(data);
        r->orphaned_ = true;
        if (!r->closed_) r->Close();
        else if (r->released_) delete r;
      },
      nullptr, nullptr);
  return self;
}

napi_value ReaderClose(napi_env env, napi_callback_info info) {
  napi_value self;
  napi_get_cb_info(env, info, nullptr, nullptr, &self, nullptr);
  void* data = nullptr;
  if (napi_unwrap(env, self, &data) != napi_ok || !data) return Throw(env, "not a ConntrackReader");
  static_cast<Reader*>(data)->Close();
  return Undefined(env);
}

napi_value ReaderSweep(napi_env env, napi_callback_info info) {
  napi_value self, result;
  napi_get_cb_info(env, info, nullptr, nullptr, &self, nullptr);
  void* data = nullptr;
  if (napi_unwrap(env, self, &data) != napi_ok || !data) return Throw(env, "not a ConntrackReader");
  napi_get_boolean(env, static_cast<Reader*>(data)->Sweep(), &result);
  return result;
}

}  // namespace

void InitConntrack(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {Method("close", ReaderClose, napi_default_method),
                                        Method("sweep", ReaderSweep, napi_default_method)};
  napi_value cls;
  napi_define_class(env, "ConntrackReader", NAPI_AUTO_LENGTH, ReaderNew, nullptr, 2, methods, &cls);
  napi_set_named_property(env, exports, "ConntrackReader", cls);
}

}  // namespace hg
