#!/usr/bin/env node
// Where the SQLite store's CPU per stored row goes: the sink's batch (the events row, its
// indexes, the rollup's counts, the distinct-source sketches) taken apart, one part toggled
// at a time, each on a new store, in one process, alternating order between rounds. CPU is
// the thread's own (SQLite runs on it): /proc/thread-self/schedstat.
//   node bench/store-row-cost.mjs [EVENTS=20000] [ROUNDS=3]           (after npm run build)
//   BENCH_ROW_VARIANTS='sink|rollup counts'  only these variants (names as printed)
//   BENCH_ROW_WORKLOADS='one|sources'        only these workloads
//   BENCH_ROW_STORE=300000                    events written (an hour earlier) before measuring:
//                                             a store's indexes and day rows as a run meets them
// Three workloads: `one` (the rate bench's: one source, one port), `sources` (the
// many-sources bench's: 10,000 sources, one port) and `many` (10,000 sources over 1,000
// ports, an attack's spread). Batches of 200 events (1,000 flows/s, events.batch
// 200 ms), 1 ms apart, so minute buckets turn over as in a run.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rollupRows, rollupWriter, UPSERT } from '../dist/src/events/rollup.js';
import { eventValues } from '../dist/src/events/row.js';
import { INSERT, SqliteSink, STORE_PRAGMAS } from '../dist/src/events/sqlite.js';
import { openDatabase } from '../dist/src/events/sqlite-driver.js';
import { benchFlow } from './lib/events.mjs';

const EVENTS = Number(process.argv[2] ?? 20_000);
const ROUNDS = Number(process.argv[3] ?? 3);
const BATCH = 200;
const STORE = Number(process.env.BENCH_ROW_STORE ?? 0);

const WORKLOADS = {
  one: '1 source, 1 port',
  sources: '10,000 sources, 1 port',
  many: '10,000 sources, 1,000 ports',
};

function flow(i, t0, workload) {
  const src = workload === 'one' ? '127.0.0.1' : `198.51.${(i % 10_000) >> 8}.${i % 256}`;
  return benchFlow(i, t0 + i, src, workload === 'many' ? 1 + ((i * 7) % 1000) : 9101);
}

const threadCpuNs = () => Number(readFileSync('/proc/thread-self/schedstat', 'latin1').split(' ')[0]);

const SECONDARY = [
  'events_id',
  'events_opened_at',
  'events_src_ip',
  'events_dst_port',
  'events_type',
  'events_route',
  'events_action',
  'events_sensor',
  'events_src_country',
  'events_src_asn',
];

/**
 * Variants: what each batch does. `sink` is SqliteSink.write itself; the others rebuild its
 * parts on a raw connection to the same schema, with parts dropped.
 */
const VARIANTS = {
  sink: { sink: true },
  'sink, 1 ms slices': { sink: true, sliceMs: 1 },
  'sink, 2 ms slices': { sink: true, sliceMs: 2 },
  'insert+rollup+sketch': { insert: true, rollup: true, sketch: true },
  'insert+rollup': { insert: true, rollup: true },
  insert: { insert: true },
  'insert, no indexes': { insert: true, drop: SECONDARY },
  ...Object.fromEntries(SECONDARY.map((ix) => [`insert, no ${ix}`, { insert: true, drop: [ix] }])),
  'rollup counts': { rollup: true },
  // What the daily source rows cost: the counts without them (not a valid store).
  'rollup counts, no daily src': { rollup: true, noDailySrc: true },
  'rollup+sketch': { rollup: true, sketch: true },
  'js: eventValues': { js: 'values' },
  'js: rollupRows': { js: 'rollup' },
};

async function run(dir, name, v, workload) {
  const path = join(dir, `${name.replace(/\W+/g, '_')}-${workload}.db`);
  const t0 = Date.UTC(2026, 0, 1, 11, 59, 30); // crosses a minute, an hour and a day
  const batches = [];
  for (let i = 0; i < EVENTS; i += BATCH)
    batches.push(Array.from({ length: Math.min(BATCH, EVENTS - i) }, (_, j) => flow(i + j, t0, workload)));
  let write;
  let close;
  if (v.sink) {
    const sink = new SqliteSink(path, { sliceMs: v.sliceMs });
    write = (b) => sink.write(b);
    close = () => sink.close();
  } else {
    new SqliteSink(path).close();
    const db = openDatabase(path);
    for (const p of STORE_PRAGMAS) db.pragma(p);
    for (const ix of v.drop ?? []) db.exec(`DROP INDEX ${ix}`);
    if (!v.sketch) db.exec('DROP TABLE rollup_sketch');
    const insert = db.prepare(INSERT);
    let rollup = rollupWriter(db);
    if (v.noDailySrc) {
      const upsert = db.prepare(UPSERT);
      rollup = (b) => {
        for (const r of rollupRows(b)) if (r[0] !== 'd' || r[1] !== 'src') upsert.run(r);
      };
    }
    if (v.js === 'values') {
      write = (b) => {
        for (const e of b) eventValues(e);
      };
    } else if (v.js === 'rollup') {
      write = (b) => rollupRows(b);
    } else {
      write = db.transaction((b) => {
        if (v.insert) for (const e of b) insert.run(eventValues(e));
        if (v.rollup) rollup(b);
      });
    }
    close = () => db.close();
  }
  await write([flow(-1, t0, workload)]); // compiles the statements
  for (let i = 0; i < STORE; i += 1000) {
    const at = t0 - 3_600_000 + i;
    await write(Array.from({ length: Math.min(1000, STORE - i) }, (_, j) => flow(i + j, at + j, workload)));
  }
  const c0 = threadCpuNs();
  for (const b of batches) await write(b);
  const us = (threadCpuNs() - c0) / 1000;
  await close();
  rmSync(path, { force: true });
  rmSync(`${path}-wal`, { force: true });
  rmSync(`${path}-shm`, { force: true });
  return us / EVENTS;
}

const pick = (env, all) => (env ? env.split('|').map((s) => s.trim()) : all);
const dir = mkdtempSync(join(tmpdir(), 'hg-store-row-'));
try {
  const names = pick(process.env.BENCH_ROW_VARIANTS, Object.keys(VARIANTS));
  for (const n of names) if (!VARIANTS[n]) throw new Error(`BENCH_ROW_VARIANTS: unknown ${n}`);
  for (const workload of pick(process.env.BENCH_ROW_WORKLOADS, Object.keys(WORKLOADS))) {
    if (!WORKLOADS[workload]) throw new Error(`BENCH_ROW_WORKLOADS: unknown ${workload}`);
    const res = Object.fromEntries(names.map((n) => [n, []]));
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 === 0 ? names : [...names].reverse();
      for (const n of order) res[n].push(await run(dir, n, VARIANTS[n], workload));
    }
    console.log(
      `\n${workload}: ${WORKLOADS[workload]}; ${EVENTS} events in batches of ${BATCH}${STORE ? ` after ${STORE}` : ''}, ${ROUNDS} rounds; CPU µs per event (best / median)`,
    );
    for (const n of names) {
      const s = [...res[n]].sort((a, b) => a - b);
      console.log(
        `  ${n.padEnd(32)} ${s[0].toFixed(2).padStart(7)} ${s[Math.floor(s.length / 2)].toFixed(2).padStart(7)}`,
      );
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
