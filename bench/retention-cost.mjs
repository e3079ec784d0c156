#!/usr/bin/env node
// What events.retention costs (src/events/retention.ts): CPU per deleted event and per
// vacuumed page, the steps' sizes and the longest one, on a store of N events made with one
// INSERT ... SELECT (test/helpers/store.ts). CPU time, not wall time: on a shared machine
// the wall clock holds everyone else's work too.
//   node bench/retention-cost.mjs [rows, default 1000000]   (after npm run build)
import { copyFileSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteSink } from '../dist/src/events/sqlite.js';
import { DAY, makeStore } from '../dist/test/helpers/store.js';

const ROWS = Number(process.argv[2] ?? 1_000_000);
const dir = mkdtempSync(join(tmpdir(), 'honeygate-bench-retention-'));
const cpu = (before) => {
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000;
};

try {
  const seed = join(dir, 'seed.db');
  const now = Date.now();
  let t = process.cpuUsage();
  makeStore(seed, ROWS, now, 40 * DAY);
  console.log(
    `store: ${ROWS} events, ${(statSync(seed).size / 2 ** 20).toFixed(0)} MiB, made in ${cpu(t).toFixed(0)} ms CPU`,
  );

  // maxAge: the oldest 4 of 40 days.
  const age = join(dir, 'age.db');
  copyFileSync(seed, age);
  let sink = new SqliteSink(age, { retention: { maxAgeMs: 36 * DAY, maxBytes: null } });
  t = process.cpuUsage();
  let wall = performance.now();
  await sink.trim();
  let ms = cpu(t);
  wall = performance.now() - wall;
  let s = sink.stats();
  sink.close();
  console.log(
    `maxAge:  ${s.deleted['max-age']} deleted, ${((ms * 1000) / s.deleted['max-age']).toFixed(1)} µs CPU per event, ${s.steps} steps (${(s.deleted['max-age'] / s.steps).toFixed(0)} events each), longest ${s.longestStepCpuMs.toFixed(1)} ms CPU / ${s.longestStepMs.toFixed(1)} ms wall, ${(wall / 1000).toFixed(1)} s wall in all`,
  );

  // maxSize: 10% under the store, then the vacuum.
  const size = join(dir, 'size.db');
  copyFileSync(seed, size);
  const maxBytes = Math.floor(statSync(size).size * 0.9);
  sink = new SqliteSink(size, { retention: { maxAgeMs: null, maxBytes } });
  t = process.cpuUsage();
  wall = performance.now();
  await sink.trim();
  ms = cpu(t);
  wall = performance.now() - wall;
  s = sink.stats();
  sink.close();
  console.log(
    `maxSize: ${s.deleted['max-size']} deleted and vacuumed, ${((ms * 1000) / s.deleted['max-size']).toFixed(1)} µs CPU per event, ${s.steps} steps, longest ${s.longestStepCpuMs.toFixed(1)} ms CPU / ${s.longestStepMs.toFixed(1)} ms wall, file ${(statSync(size).size / 2 ** 20).toFixed(0)} MiB (bound ${(maxBytes / 2 ** 20).toFixed(0)}), ${(wall / 1000).toFixed(1)} s wall in all`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
