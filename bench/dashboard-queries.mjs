#!/usr/bin/env node
// The dashboard's view queries on a large store: builds a SQLite event store of N flows
// spread over the last 7 days (a skewed mix of sources, ports, protocols and actions, plus
// refusal tallies), then times each view's query (src/admin/dashboard-stats.ts) for every
// range, cold (the store's pages dropped from the page cache first) and warm, against the
// issue's bound of 300 ms per view query.
//
//   BENCH_DASH_EVENTS=10000000   flows in the store (default 10 million)
//   BENCH_DASH_REPEATS=5         timed runs per query, cold and warm (medians reported)
//   BENCH_DASH_DB=FILE           reuse (or keep) the store at FILE instead of a temp one
//   BENCH_DASH_RAW=1             also time the raw queries (the views without the rollup)
//   BENCH_DASH_READ_AHEAD=1      read the top lists ahead first, as the admin server does after its start
//
// "first ms" is each view's first (cold) call in this process: the top lists keep what
// whole buckets hold between calls (dashboard-stats.ts), as the dashboard's worker does,
// so the medians are those of a worker that has answered the view before.
//
// Needs a built tree (npm run build). The store is a bulk load (the rows in transactions of
// 100,000 with the indexes dropped, the indexes and the rollup built after, as a store
// written by the gateway would hold them): 10M rows take some 15 minutes and ~5 GB of disk.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const load = (p) => import(pathToFileURL(join(root, 'dist', 'src', p)).href);
const { SqliteSink, INSERT } = await load('events/sqlite.js');
const { eventValues } = await load('events/row.js');
const { ROLLUP_BACKFILL, fillSketches } = await load('events/rollup.js');
const { finishJobs } = await load('events/backfill.js');
const { openDatabase } = await load('events/sqlite-driver.js');
const stats = await load('admin/dashboard-stats.js');
const { queryEvents } = await load('events/query.js');

const N = Number(process.env.BENCH_DASH_EVENTS ?? 10_000_000);
const REPEATS = Number(process.env.BENCH_DASH_REPEATS ?? 5);
const keep = process.env.BENCH_DASH_DB;
const dir = keep ? null : mkdtempSync(join(tmpdir(), 'hg-dash-bench-'));
const dbPath = keep ?? join(dir, 'events.db');
const WEEK = 7 * 86_400_000;
const log = (t) => process.stderr.write(`${t}\n`);

// A deterministic generator (xorshift32): the same store every run.
let x = 2463534242;
const rnd = () => {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  return (x >>> 0) / 4294967296;
};
const skew = (n) => Math.floor(n * rnd() ** 3); // many hits on a few, a long tail

function build(end) {
  new SqliteSink(dbPath).close(); // the schema and the pragmas of a new store
  const db = openDatabase(dbPath);
  db.pragma('journal_mode = OFF');
  db.pragma('synchronous = OFF');
  db.pragma('cache_size = -262144');
  db.pragma('temp_store = MEMORY');
  const indexes = [
    ...db
      .prepare(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL",
      )
      .iterate(),
  ];
  for (const r of indexes) db.exec(`DROP INDEX ${r.name}`);
  const insert = db.prepare(INSERT);
  const PORTS = [22, 23, 80, 443, 445, 3389, 8080, 2222, 5900, 6379, 1433, 3306, 8443, 25, 21];
  const PROTOS = ['ssh', 'http', 'tls', null, null, 'telnet'];
  const ENDS = ['client-closed', 'client-closed', 'server-closed', 'idle-timeout', 'byte-cap'];
  const REFUSALS = ['limit-rate', 'limit-rate', 'limit-per-source', 'limit-global'];
  const first = Buffer.from('SSH-2.0-Go\r\n');
  const t0 = Date.now();
  const BATCH = 100_000;
  const tx = db.transaction((rows) => {
    for (const r of rows) insert.run(r);
  });
  for (let done = 0; done < N; ) {
    const batch = [];
    for (let i = 0; i < BATCH && done < N; i++, done++) {
      // In recording order, as a gateway writes them: opened_at rises with the rowid.
      const opened = end - WEEK + Math.floor(((done + rnd()) / N) * WEEK);
      const s = skew(200_000);
      const src = `198.51.${(s >> 8) & 255}.${s & 255}`;
      const port = rnd() < 0.8 ? PORTS[skew(PORTS.length)] : 1 + Math.floor(rnd() * 65535);
      const refused = rnd() < 0.01;
      const forward = port === 22 || port === 80 || port === 443;
      batch.push(
        eventValues({
          id: `${opened.toString(16).padStart(12, '0')}${done.toString(16).padStart(20, '0')}`,
          type: refused ? 'rejected' : 'flow',
          openedAt: opened,
          closedAt: opened + 1000,
          sensor: `sensor-${s % 3}`,
          listener: 'all',
          src: { ip: src, port: 1024 + (done % 60000) },
          dst: { ip: '192.0.2.1', port },
          peer: null,
          proxyHeader: null,
          route: refused ? null : forward ? `r${port}` : 'catch-all',
          action: refused ? 'close' : forward ? 'forward' : 'capture',
          backend: forward ? 'cowrie' : null,
          server: forward ? '192.0.2.10:2222' : null,
          sourceMode: forward ? 'transparent' : null,
          bytesIn: 100 + (done % 900),
          bytesOut: 200,
          durationMs: 1000,
          closeReason: refused ? REFUSALS[done % 4] : ENDS[Math.floor(rnd() * ENDS.length)],
          firstBytes: first,
          protocol: refused ? null : PROTOS[Math.floor(rnd() * PROTOS.length)],
          protocolFields: null,
          count: refused ? 5 : 1,
          detail: null,
        }),
      );
    }
    tx(batch);
    if (done % 1_000_000 === 0)
      log(`  ${done.toLocaleString()} rows, ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
  for (const r of indexes) db.exec(r.sql);
  log(`  indexes built, ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  db.exec('DELETE FROM rollup');
  db.exec(ROLLUP_BACKFILL); // what the sink would have counted, batch by batch
  db.exec('DELETE FROM rollup_sketch');
  for (let lo = 0; lo <= N * 1.1; lo += 500_000) fillSketches(db, lo, lo + 499_999);
  log(`  rollup filled, ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  db.pragma('journal_mode = WAL');
  db.close();
  return Date.now() - t0;
}

// The store's newest event is "now" for the views (a kept store is timed as it was built).
let now;
if (!existsSync(dbPath)) {
  now = Date.now();
  log(`building ${N.toLocaleString()} events in ${dbPath}`);
  const ms = build(now);
  log(`built in ${(ms / 1000).toFixed(1)} s`);
} else {
  // A kept store from an earlier schema: upgraded as `run` does, then its backfill jobs
  // (backfill.ts) counted to the end here, before the views are timed.
  const t0 = Date.now();
  new SqliteSink(dbPath).close();
  const db = openDatabase(dbPath);
  finishJobs(db, 500_000, (job, hi, last) =>
    log(`  ${job} backfill: ${hi.toLocaleString()} of ${last.toLocaleString()}`),
  );
  db.close();
  log(`schema up to date in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}
{
  const db = openDatabase(dbPath, { readonly: true });
  now = Number(db.prepare('SELECT max(opened_at) AS t FROM events').get().t);
  db.close();
}

/** Drops the store's pages from the OS page cache (posix_fadvise DONTNEED), for a cold run. */
function dropCache() {
  for (const f of [dbPath, `${dbPath}-wal`]) {
    if (!existsSync(f)) continue;
    try {
      execFileSync('dd', [`if=${f}`, 'iflag=nocache', 'count=0', 'status=none']);
    } catch {
      // dd without nocache: the cold runs are warm in the OS cache
    }
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const VIEWS = {
  overview: (db, r) => stats.overview(db, r),
  'timeline by action': (db, r) => stats.timeline(db, r, 'action'),
  'timeline by route': (db, r) => stats.timeline(db, r, 'route'),
  sources: (db, r) => stats.topSources(db, r),
  ports: (db, r) => stats.topPorts(db, r),
  heatmap: (db, r) => stats.heatmap(db, r),
  protocols: (db, r) => stats.protocolMix(db, r),
  refusals: (db, r) => stats.refusals(db, r),
};

// What `run` and `collect` do 10 s after the admin server starts (src/admin/dashboard.ts):
// read the top lists ahead, so that the first calls below are what a first visit meets.
if (process.env.BENCH_DASH_READ_AHEAD === '1') {
  dropCache();
  const t = process.hrtime.bigint();
  const cpu = process.cpuUsage();
  let steps = 0;
  stats.withStore(dbPath, (db) => {
    for (const _ of stats.warmTopLists(db, now)) steps++;
  });
  const c = process.cpuUsage(cpu);
  log(
    `read-ahead: ${steps} steps, ${(Number(process.hrtime.bigint() - t) / 1e9).toFixed(1)} s wall, ${((c.user + c.system) / 1e6).toFixed(1)} s CPU`,
  );
}

const rows = [];
const raw = process.env.BENCH_DASH_RAW === '1';
for (const name of Object.keys(stats.RANGES)) {
  const range = stats.toRange(name, now);
  for (const [view, fn] of Object.entries(VIEWS)) {
    const cold = [];
    const warm = [];
    for (let i = 0; i < REPEATS; i++) {
      dropCache();
      let t = process.hrtime.bigint();
      stats.withStore(dbPath, (db) => fn(db, range));
      cold.push(Number(process.hrtime.bigint() - t) / 1e6);
      t = process.hrtime.bigint();
      stats.withStore(dbPath, (db) => fn(db, range));
      warm.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    const row = { range: name, view, first: cold[0], cold: median(cold), warm: median(warm), rawMs: null };
    if (raw) {
      const t = process.hrtime.bigint();
      stats.withStore(dbPath, (db) => fn(stats.rawViews(db), range));
      row.rawMs = Number(process.hrtime.bigint() - t) / 1e6;
    }
    rows.push(row);
    log(
      `  ${name} ${view}: first ${row.first.toFixed(0)} ms, cold ${row.cold.toFixed(0)} ms, warm ${row.warm.toFixed(0)} ms`,
    );
  }
}
// The search's first page, as the page asks for it.
for (const [label, q] of [
  ['search: newest 100', { limit: 100 }],
  ['search: one source, 24h', { src: '198.51.0.1', since: now - 86_400_000, limit: 100 }],
  ['search: port 3389, 1h', { dstPort: 3389, since: now - 3_600_000, limit: 100 }],
]) {
  const cold = [];
  const warm = [];
  for (let i = 0; i < REPEATS; i++) {
    dropCache();
    let t = process.hrtime.bigint();
    queryEvents(dbPath, q);
    cold.push(Number(process.hrtime.bigint() - t) / 1e6);
    t = process.hrtime.bigint();
    queryEvents(dbPath, q);
    warm.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  rows.push({ range: '-', view: label, first: cold[0], cold: median(cold), warm: median(warm), rawMs: null });
}

console.log(
  `\ndashboard view queries, ${N.toLocaleString()} events over 7 days, node ${process.version}, median of ${REPEATS} cold and ${REPEATS} warm\n`,
);
console.log(`| range | view | first ms | cold ms | warm ms | < 300 ms |${raw ? ' raw query ms |' : ''}`);
console.log(`| --- | --- | ---: | ---: | ---: | --- |${raw ? ' ---: |' : ''}`);
for (const r of rows) {
  const ok = Math.max(r.cold, r.warm) < 300 ? 'yes' : 'no';
  const rawCell = raw ? ` ${r.rawMs === null ? '' : r.rawMs.toFixed(0)} |` : '';
  console.log(
    `| ${r.range} | ${r.view} | ${r.first.toFixed(0)} | ${r.cold.toFixed(0)} | ${r.warm.toFixed(0)} | ${ok} |${rawCell}`,
  );
}
if (dir) rmSync(dir, { recursive: true, force: true });
