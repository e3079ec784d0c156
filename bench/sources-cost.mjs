#!/usr/bin/env node
// What many attacker addresses cost the SQLite sink on its own: CPU per event of
// SqliteSink.write (the events' rows plus the rollup's counts, src/events/rollup.ts, which
// keeps a row per source and hour) for batches of flows from one source against flows
// from SOURCES addresses, alternating, in one process. `npm run bench`'s many-sources
// figure measures the whole gateway; this isolates the store's share from the load's noise.
//   node bench/sources-cost.mjs [SOURCES=10000] [BATCH=200] [EVENTS=100000]   (after npm run build)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { blankEvent } from '../dist/src/events/event.js';
import { newEventId } from '../dist/src/events/recorder.js';
import { SqliteSink } from '../dist/src/events/sqlite.js';

const SOURCES = Number(process.argv[2] ?? 10_000);
const BATCH = Number(process.argv[3] ?? 200); // events.batch 200 ms at 1,000 flows/s
const EVENTS = Number(process.argv[4] ?? 100_000);
const ROUNDS = 3;

const sourceIp = (i) => `127.1.${(i >> 8) & 255}.${i & 255}`;

function flow(i, sources, now) {
  return blankEvent({
    id: newEventId(),
    type: 'flow',
    openedAt: now,
    closedAt: now + 1,
    sensor: 'bench',
    listener: 'bench0',
    src: { ip: sources === 1 ? '127.0.0.1' : sourceIp(i % sources), port: 1024 + (i % 60000) },
    dst: { ip: '127.0.0.1', port: 9101 },
    route: 'nginx',
    action: 'forward',
    backend: 'nginx',
    server: '127.0.0.1:8001',
    sourceMode: 'none',
    bytesIn: 61,
    bytesOut: 1273,
    closeReason: 'client-closed',
  });
}

/** CPU µs per event writing EVENTS events in batches of BATCH into a fresh store. */
function run(dir, name, sources) {
  const sink = new SqliteSink(join(dir, `${name}.db`));
  try {
    let i = 0;
    const batches = [];
    for (let b = 0; b < EVENTS / BATCH; b++) {
      const now = Date.now();
      batches.push(Array.from({ length: BATCH }, () => flow(i++, sources, now)));
    }
    const before = process.cpuUsage();
    for (const batch of batches) sink.write(batch);
    const used = process.cpuUsage(before);
    return (used.user + used.system) / EVENTS;
  } finally {
    sink.close();
  }
}

const dir = mkdtempSync(join(tmpdir(), 'hg-sources-cost-'));
try {
  const results = { 1: [], [SOURCES]: [] };
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? [1, SOURCES] : [SOURCES, 1];
    for (const s of order) results[s].push(run(dir, `r${r}-s${s}`, s));
  }
  const best = (list) => Math.min(...list);
  const fmt = (list) => list.map((x) => x.toFixed(2)).join(', ');
  process.stdout.write(
    `SqliteSink.write, batches of ${BATCH}, ${EVENTS} events per run, CPU µs per event:\n` +
      `  1 source:        ${fmt(results[1])} (best ${best(results[1]).toFixed(2)})\n` +
      `  ${SOURCES} sources: ${fmt(results[SOURCES])} (best ${best(results[SOURCES]).toFixed(2)})\n` +
      `  difference (best): ${(best(results[SOURCES]) - best(results[1])).toFixed(2)} µs per event\n`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
