// Loaded into honeygate with `node --import` by the latency figure (BENCH_PROBE=1): what
// holds its event loop back, as a timeline the runner cuts to each run's window.
//
//   HG_PROBE_ROOT  the honeygate tree (its dist/src/events/sqlite.js is patched to time writes)
//   HG_PROBE_FILE  JSON lines appended every 500 ms:
//     {"t":ms,"delay":{"n","p50","p99","max"}}  the loop's delay over the last 100 ms
//                                               (perf_hooks monitorEventLoopDelay, 1 ms resolution)
//     {"t":ms,"gc":kind,"ms":pause}              each GC pause (PerformanceObserver 'gc')
//     {"t":ms,"promoted":bytes,"scavenges":n}    what the scavenges of the last 500 ms moved to the
//                                               old generation (v8.GCProfiler: old space after
//                                               minus before each): a finished flow kept alive
//                                               through two scavenges shows up here
//     {"t":ms,"sqlite":rows,"ms":took,"cpuMs":cpu} each SQLite batch's time on the loop (SqliteSink.write:
//                                               insert + commit; ThreadedSqliteSink.write: the post,
//                                               with "commitMs" until the thread committed), wall time
//                                               and the calling thread's time on a CPU
//                                               (/proc/thread-self/schedstat, ns: not the relay's
//                                               threads; on a busy core, wall > CPU); with "thread":1
//                                               the store thread's transaction (SqliteSink.write there);
//                                               with "slices" a write sliced on the loop (sliceMs): "ms"
//                                               and "cpuMs" its slices' sum, "sliceMaxMs" the longest
// t is the end of the thing, wall clock (Date.now()), as the load client's clock.
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay, PerformanceObserver, performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import v8 from 'node:v8';
import { isMainThread, workerData } from 'node:worker_threads';

const file = process.env.HG_PROBE_FILE;
const root = process.env.HG_PROBE_ROOT;
// --import runs in honeygate's worker threads too: in the store's thread (store-thread.ts) it
// times the batches there, tagged "thread": 1 (the loop's delay and GC are the main thread's
// only); in any other thread (the checkpointer's) it does nothing.
const thread = !isMainThread;
if (file && root && (isMainThread || workerData?.role === 'store')) {
  const lines = [];
  const origin = Date.now() - performance.now(); // performance time -> wall clock
  const flush = () => {
    if (lines.length) appendFileSync(file, `${lines.splice(0).join('\n')}\n`);
  };

  const h = monitorEventLoopDelay({ resolution: 1 });
  if (!thread) h.enable();
  const ms = (ns) => Number((ns / 1e6).toFixed(3));
  setInterval(() => {
    if (h.count > 0)
      lines.push(
        JSON.stringify({
          t: Date.now(),
          delay: { n: h.count, p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max) },
        }),
      );
    h.reset();
  }, 100).unref();

  const kinds = { 1: 'scavenge', 2: 'mark-compact', 4: 'incremental', 8: 'weak-callbacks' };
  const gcs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = kinds[e.detail?.kind ?? e.kind] ?? String(e.detail?.kind ?? e.kind);
      lines.push(
        JSON.stringify({
          t: Math.round(origin + e.startTime + e.duration),
          gc: kind,
          ms: Number(e.duration.toFixed(3)),
        }),
      );
    }
  });
  if (!thread) gcs.observe({ entryTypes: ['gc'] });

  // Restarted at every flush: GCProfiler reports only when stopped, with no time per GC.
  let profiler = null;
  const oldUsed = (at) => at.heapSpaceStatistics.find((s) => s.spaceName === 'old_space')?.spaceUsedSize ?? 0;
  const promotions = () => {
    if (thread || !v8.GCProfiler) return;
    const report = profiler?.stop();
    profiler = new v8.GCProfiler();
    profiler.start();
    let promoted = 0;
    let scavenges = 0;
    for (const gc of report?.statistics ?? []) {
      if (gc.gcType !== 'Scavenge') continue;
      promoted += Math.max(0, oldUsed(gc.afterGC) - oldUsed(gc.beforeGC));
      scavenges++;
    }
    if (scavenges > 0) lines.push(JSON.stringify({ t: Date.now(), promoted, scavenges }));
  };
  promotions();

  // The loop's part of each SQLite batch: the whole transaction when the sink writes on the
  // loop (SqliteSink; main before issue 21, or HONEYGATE_STORE_THREAD=off), only the clone
  // and post when it writes on its thread (ThreadedSqliteSink: `commitMs` is then the wall
  // time until the thread's commit answered, off the loop); in the store's thread, its
  // SqliteSink's transactions.
  const timeWrites = (Sink) => {
    // A sliced write (SqliteSink sliceMs, on the loop): each slice timed; the write's row
    // gets their sum, the longest and the count when it committed.
    const slice = Sink.prototype.slice;
    if (typeof slice === 'function') {
      Sink.prototype.slice = function timedSlice(steps, ms) {
        const t0 = performance.now();
        const cpu0 = onCpuNs();
        try {
          return slice.call(this, steps, ms);
        } finally {
          const took = performance.now() - t0;
          if (!this.probeSlices) this.probeSlices = { ms: 0, cpuMs: 0, maxMs: 0, count: 0 };
          const acc = this.probeSlices;
          acc.ms += took;
          acc.cpuMs += (onCpuNs() - cpu0) / 1e6;
          acc.maxMs = Math.max(acc.maxMs, took);
          acc.count++;
        }
      };
    }
    const write = Sink.prototype.write;
    Sink.prototype.write = function timedWrite(events) {
      const t0 = performance.now();
      const cpu0 = onCpuNs();
      let result;
      try {
        result = write.call(this, events);
        return result;
      } finally {
        const took = performance.now() - t0;
        const cpuMs = (onCpuNs() - cpu0) / 1e6;
        const row = {
          t: Date.now(),
          sqlite: events.length,
          ms: Number(took.toFixed(3)),
          cpuMs: Number(cpuMs.toFixed(3)),
        };
        if (thread) row.thread = 1;
        if (result && typeof result.then === 'function' && typeof slice === 'function') {
          const sliced = (ok) => {
            const acc = this.probeSlices ?? { ms: 0, cpuMs: 0, maxMs: 0, count: 0 };
            this.probeSlices = null;
            row.ms = Number((row.ms + acc.ms).toFixed(3));
            row.cpuMs = Number((row.cpuMs + acc.cpuMs).toFixed(3));
            row.sliceMaxMs = Number(acc.maxMs.toFixed(3));
            row.slices = acc.count;
            row.commitMs = ok ? Number((performance.now() - t0).toFixed(3)) : null;
            lines.push(JSON.stringify(row));
          };
          result.then(
            () => sliced(true),
            () => sliced(false),
          );
        } else if (result && typeof result.then === 'function') {
          result.then(
            () =>
              lines.push(JSON.stringify({ ...row, commitMs: Number((performance.now() - t0).toFixed(3)) })),
            () => lines.push(JSON.stringify({ ...row, commitMs: null })),
          );
        } else lines.push(JSON.stringify(row));
      }
    };
  };
  timeWrites((await import(pathToFileURL(join(root, 'dist/src/events/sqlite.js')).href)).SqliteSink);
  const threaded = pathToFileURL(join(root, 'dist/src/events/store-thread.js')).href;
  const mod = await import(threaded).catch(() => null); // absent in builds before issue 21
  if (!thread && mod?.ThreadedSqliteSink) timeWrites(mod.ThreadedSqliteSink);

  /** The calling thread's time on a CPU so far, ns (the first field of schedstat). */
  function onCpuNs() {
    return Number(readFileSync('/proc/thread-self/schedstat', 'latin1').split(' ')[0]);
  }

  setInterval(() => {
    promotions();
    flush();
  }, 500).unref();
  process.on('exit', flush);
}
