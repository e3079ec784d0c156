#!/usr/bin/env node
// What the SQLite batch costs the event loop, on the loop (SqliteSink, whole or in 1 ms
// slices: sliceMs) against on the store's thread (ThreadedSqliteSink,
// src/events/store-thread.ts), alternating, in one process: the
// recorder's pattern (a batch of RATE x 200 ms events every 200 ms, the next one after the
// last answered), with the loop's delay measured meanwhile (perf_hooks, 1 ms resolution; a
// connection arriving during a stall waits that long). Also the CPU per event: the main
// thread's (what the loop spends) and the process's (the thread's work included).
// `npm run bench`'s latency figure measures the whole gateway; this isolates the store.
//   node bench/store-thread-cost.mjs [RATE=1000] [SECONDS=5]          (after npm run build)
//   taskset -c 1 node bench/store-thread-cost.mjs                    (one core for both threads)
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { LOOP_SLICE_MS } from '../dist/src/events/sinks.js';
import { SqliteSink } from '../dist/src/events/sqlite.js';
import { ThreadedSqliteSink } from '../dist/src/events/store-thread.js';
import { benchFlow } from './lib/events.mjs';

const RATE = Number(process.argv[2] ?? 1000);
const SECONDS = Number(process.argv[3] ?? 5);
const BATCH_MS = 200;
const ROUNDS = 3;

const flow = (i, now) => benchFlow(i, now);

/** The calling thread's time on a CPU so far, ns (the first field of schedstat). */
const threadCpuNs = () => Number(readFileSync('/proc/thread-self/schedstat', 'latin1').split(' ')[0]);

/** One run: the sink opened (and its thread started) before, the events made before; only the writes measured. */
async function run(Sink, path, opts) {
  const sink = new Sink(path, opts);
  const perBatch = Math.round((RATE * BATCH_MS) / 1000);
  const batches = [];
  for (let i = 0, t = Date.now(); i < (SECONDS * 1000) / BATCH_MS; i++)
    batches.push(Array.from({ length: perBatch }, (_, j) => flow(i * perBatch + j, t)));
  await sink.write([flow(-1, Date.now())]); // warm: the first batch compiles the statements
  const h = monitorEventLoopDelay({ resolution: 1 });
  let n = 0;
  const main0 = threadCpuNs();
  const proc0 = process.cpuUsage();
  h.enable();
  for (const batch of batches) {
    const next = Date.now() + BATCH_MS;
    await sink.write(batch);
    n += batch.length;
    await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
  }
  h.disable();
  const mainUs = (threadCpuNs() - main0) / 1000;
  const cpu = process.cpuUsage(proc0);
  await sink.close();
  const ms = (ns) => ns / 1e6;
  return {
    events: n,
    p99: ms(h.percentile(99)),
    max: ms(h.max),
    mainUsPerEvent: mainUs / n,
    processUsPerEvent: (cpu.user + cpu.system) / n,
  };
}

const dir = mkdtempSync(join(tmpdir(), 'hg-store-thread-'));
try {
  // sliced: on the loop in slices (what `run` opens on one CPU: sinks.ts LOOP_SLICE_MS).
  const rows = { loop: [], sliced: [], thread: [] };
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? ['loop', 'sliced', 'thread'] : ['thread', 'sliced', 'loop'];
    for (const name of order) {
      const Sink = name === 'thread' ? ThreadedSqliteSink : SqliteSink;
      const opts = name === 'sliced' ? { sliceMs: LOOP_SLICE_MS } : {};
      const res = await run(Sink, join(dir, `${name}-${r}.db`), opts);
      rows[name].push(res);
      console.log(
        `${name.padEnd(6)} round ${r + 1}: ${res.events} events, loop delay p99 ${res.p99.toFixed(2)} ms, max ${res.max.toFixed(2)} ms;` +
          ` CPU per event: main thread ${res.mainUsPerEvent.toFixed(2)} µs, process ${res.processUsPerEvent.toFixed(2)} µs`,
      );
    }
  }
  const median = (list, f) => list.map(f).sort((a, b) => a - b)[Math.floor(list.length / 2)];
  console.log(`\nmedians of ${ROUNDS} rounds, ${RATE} events/s in batches every ${BATCH_MS} ms:`);
  for (const [name, list] of Object.entries(rows)) {
    console.log(
      `  ${name.padEnd(6)} loop delay p99 ${median(list, (x) => x.p99).toFixed(2)} ms, max ${median(list, (x) => x.max).toFixed(2)} ms;` +
        ` main thread ${median(list, (x) => x.mainUsPerEvent).toFixed(2)} µs/event, process ${median(list, (x) => x.processUsPerEvent).toFixed(2)} µs/event`,
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
