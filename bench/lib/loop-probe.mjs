// Loaded into honeygate with `node --import` by the latency figure (BENCH_PROBE=1): what
// holds its event loop back, as a timeline the runner cuts to each run's window.
//
//   HG_PROBE_ROOT  the honeygate tree (its dist/src/events/sqlite.js is patched to time writes)
//   HG_PROBE_FILE  JSON lines appended every 500 ms:
//     {"t":ms,"delay":{"n","p50","p99","max"}}  the loop's delay over the last 100 ms
//                                               (perf_hooks monitorEventLoopDelay, 1 ms resolution)
//     {"t":ms,"gc":kind,"ms":pause}              each GC pause (PerformanceObserver 'gc')
//     {"t":ms,"sqlite":rows,"ms":took,"cpuMs":cpu} each SQLite batch (SqliteSink.write: insert +
//                                               commit), wall time and the main thread's time on a
//                                               CPU (/proc/thread-self/schedstat, ns: not the relay's
//                                               threads; on a busy core, wall > CPU)
// t is the end of the thing, wall clock (Date.now()), as the load client's clock.
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay, PerformanceObserver, performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';

const file = process.env.HG_PROBE_FILE;
const root = process.env.HG_PROBE_ROOT;
if (file && root) {
  const lines = [];
  const origin = Date.now() - performance.now(); // performance time -> wall clock
  const flush = () => {
    if (lines.length) appendFileSync(file, `${lines.splice(0).join('\n')}\n`);
  };

  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
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
  new PerformanceObserver((list) => {
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
  }).observe({ entryTypes: ['gc'] });

  const { SqliteSink } = await import(pathToFileURL(join(root, 'dist/src/events/sqlite.js')).href);
  const write = SqliteSink.prototype.write;
  SqliteSink.prototype.write = function timedWrite(events) {
    const t0 = performance.now();
    const cpu0 = onCpuNs();
    try {
      return write.call(this, events);
    } finally {
      const took = performance.now() - t0;
      const cpuMs = (onCpuNs() - cpu0) / 1e6;
      lines.push(
        JSON.stringify({
          t: Date.now(),
          sqlite: events.length,
          ms: Number(took.toFixed(3)),
          cpuMs: Number(cpuMs.toFixed(3)),
        }),
      );
    }
  };

  /** The calling thread's time on a CPU so far, ns (the first field of schedstat). */
  function onCpuNs() {
    return Number(readFileSync('/proc/thread-self/schedstat', 'latin1').split(' ')[0]);
  }

  setInterval(flush, 500).unref();
  process.on('exit', flush);
}
