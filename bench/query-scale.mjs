#!/usr/bin/env node
// Queries at scale (issue 20 item 5): `honeygate events` with each one filter and
// `honeygate stats` on a store of N events, against the bound of 1 s; and what the indexes
// and the rollup cost each recorded event.
//
//   node bench/query-scale.mjs [rows, default 10000000]     (after npm run build)
//   BENCH_BASE_DIST=/path/to/other/dist   also time recording with that build's SqliteSink
//
// The store is made with one INSERT ... SELECT (test/helpers/store.ts: 7 days of flows from
// 51,200 sources to 15 ports), its indexes and rollup built after, then a few rare events go
// in through the sink: a filter that matches a handful of rows in millions is the case an
// index must carry. Times are wall clock of the CLI's own functions, best and first of 3.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { runEvents } from '../dist/src/cli/events.js';
import { runStats } from '../dist/src/cli/stats.js';
import { SqliteSink } from '../dist/src/events/sqlite.js';
import { sampleEvent } from '../dist/test/helpers/events.js';
import { DAY, makeStore } from '../dist/test/helpers/store.js';

const ROWS = Number(process.argv[2] ?? 10_000_000);
const REPEATS = 3;
const dir = mkdtempSync(join(tmpdir(), 'honeygate-bench-query-'));
const db = join(dir, 'events.db');
const now = Date.now();
const log = (s) => process.stderr.write(`${s}\n`);

/** Event `i` of the rare ones and of the recording cost: test/helpers/events.ts's sample, an hour ago. */
function event(i, over = {}) {
  const t = now - 3_600_000 + i;
  return sampleEvent({
    id: `${t.toString(16).padStart(12, '0')}${i.toString(16).padStart(20, '0')}`,
    openedAt: t,
    closedAt: t + 10,
    sensor: 'gw-bulk',
    src: { ip: `198.51.${(i >> 8) & 255}.${i & 255}`, port: 40000 },
    dst: { ip: '192.0.2.1', port: [22, 80, 443][i % 3] },
    route: 'r22',
    durationMs: 10,
    ...over,
  });
}

async function time(fn) {
  const times = [];
  for (let i = 0; i < REPEATS; i++) {
    const t = performance.now();
    await fn();
    times.push(performance.now() - t);
  }
  return { first: times[0], best: Math.min(...times) };
}

/** µs of wall time per event to record `n` events in batches of 1,000 into a new store. */
function recordingCost(Sink, path, n) {
  const sink = new Sink(path);
  const t = performance.now();
  for (let i = 0; i < n; i += 1000) sink.write(Array.from({ length: 1000 }, (_, k) => event(i + k)));
  const us = ((performance.now() - t) * 1000) / n;
  sink.close();
  return us;
}

try {
  const t = performance.now();
  log(`making a store of ${ROWS.toLocaleString()} events over 7 days ...`);
  makeStore(db, ROWS, now, 7 * DAY);
  const made = (performance.now() - t) / 1000;
  const sink = new SqliteSink(db);
  sink.write([
    ...Array.from({ length: 5 }, (_, i) => event(i, { type: 'scan', src: { ip: '203.0.113.9', port: 0 } })),
    ...Array.from({ length: 5 }, (_, i) => event(10 + i, { route: 'rare', action: 'reject' })),
    ...Array.from({ length: 5 }, (_, i) =>
      event(20 + i, { sensor: 'other', dst: { ip: '192.0.2.1', port: 31337 } }),
    ),
  ]);
  sink.close();
  log(`made in ${made.toFixed(0)} s, ${(statSync(db).size / 2 ** 30).toFixed(2)} GiB`);

  const quiet = { out: () => {}, err: () => {} };
  const cases = [
    ['events (newest 100, no filter)', () => runEvents({ db }, quiet)],
    ['events --type scan (5 rows)', () => runEvents({ db, type: 'scan' }, quiet)],
    ['events --type flow', () => runEvents({ db, type: 'flow' }, quiet)],
    ['events --route rare (5 rows)', () => runEvents({ db, route: 'rare' }, quiet)],
    ['events --action reject (5 rows)', () => runEvents({ db, action: 'reject' }, quiet)],
    ['events --sensor other (5 rows)', () => runEvents({ db, sensor: 'other' }, quiet)],
    ['events --src 203.0.113.9 (5 rows)', () => runEvents({ db, src: '203.0.113.9' }, quiet)],
    ['events --src 198.51.7.7', () => runEvents({ db, src: '198.51.7.7' }, quiet)],
    ['events --src 198.51.0.0/16', () => runEvents({ db, src: '198.51.0.0/16' }, quiet)],
    ['events --dst-port 22', () => runEvents({ db, dstPort: '22' }, quiet)],
    ['events --dst-port 31337 (5 rows)', () => runEvents({ db, dstPort: '31337' }, quiet)],
    ['events --since 1h', () => runEvents({ db, since: '1h' }, quiet)],
    ['events --since 7d --until 6d', () => runEvents({ db, since: '7d', until: '6d' }, quiet)],
    ['stats --by hour (24 h)', () => runStats({ db, by: 'hour' }, quiet)],
    ['stats --by day (7 d)', () => runStats({ db, by: 'day' }, quiet)],
    ['stats --by hour --since 7d (168 h)', () => runStats({ db, by: 'hour', since: '7d' }, quiet)],
  ];
  const rows = [];
  for (const [name, fn] of cases) {
    const r = await time(fn);
    rows.push([name, r]);
    log(`  ${name}: ${r.best.toFixed(1)} ms (first ${r.first.toFixed(1)} ms)`);
  }

  const N = 200_000;
  const ours = recordingCost(SqliteSink, join(dir, 'rec-ours.db'), N);
  let base = null;
  if (process.env.BENCH_BASE_DIST) {
    const { SqliteSink: Base } = await import(
      pathToFileURL(join(process.env.BENCH_BASE_DIST, 'src/events/sqlite.js')).href
    );
    base = recordingCost(Base, join(dir, 'rec-base.db'), N);
  }

  console.log(
    `\nqueries on ${ROWS.toLocaleString()} events over 7 days (node ${process.version}), best and first of ${REPEATS}\n`,
  );
  console.log('| query | best ms | first ms | < 1 s |');
  console.log('| --- | ---: | ---: | --- |');
  for (const [name, r] of rows)
    console.log(
      `| ${name} | ${r.best.toFixed(1)} | ${r.first.toFixed(1)} | ${r.first < 1000 ? 'yes' : 'no'} |`,
    );
  console.log(`\nstore made (bulk insert, 8 indexes, rollup filled) in ${made.toFixed(0)} s`);
  console.log(
    `recording ${N.toLocaleString()} events in batches of 1,000 into a new store: ${ours.toFixed(1)} µs/event` +
      (base === null ? '' : ` (base build: ${base.toFixed(1)} µs/event, ${(ours / base).toFixed(2)}x)`),
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
