#!/usr/bin/env node
// The dashboard's view queries on a large store: builds a SQLite event store of N flows
// spread over the last 7 days (a skewed mix of sources, ports, protocols and actions, plus
// refusal tallies), then times each view's query (src/admin/dashboard-stats.ts) for every
// range, best of REPEATS, against the bound of 300 ms per view query.
//
//   BENCH_DASH_EVENTS=10000000   flows in the store (default 10 million)
//   BENCH_DASH_REPEATS=3         timed runs per query (best and median reported)
//   BENCH_DASH_DB=FILE           reuse (or keep) the store at FILE instead of a temp one
//
// Needs a built tree (npm run build). Building 10M rows takes minutes and ~3 GB of disk.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const load = (p) => import(pathToFileURL(join(root, 'dist', 'src', p)).href);
const { SqliteSink } = await load('events/sqlite.js');
const stats = await load('admin/dashboard-stats.js');
const { queryEvents } = await load('events/query.js');

const N = Number(process.env.BENCH_DASH_EVENTS ?? 10_000_000);
const REPEATS = Number(process.env.BENCH_DASH_REPEATS ?? 3);
const keep = process.env.BENCH_DASH_DB;
const dir = keep ? null : mkdtempSync(join(tmpdir(), 'hg-dash-bench-'));
const dbPath = keep ?? join(dir, 'events.db');
const now = Date.now();
const WEEK = 7 * 86_400_000;

// A deterministic generator (xorshift32): the same store every run.
let x = 2463534242;
const rnd = () => {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  return (x >>> 0) / 4294967296;
};
const skew = (n) => Math.floor(n * rnd() ** 3); // many hits on a few, a long tail

function build() {
  const sink = new SqliteSink(dbPath);
  const PORTS = [22, 23, 80, 443, 445, 3389, 8080, 2222, 5900, 6379, 1433, 3306, 8443, 25, 21];
  const PROTOS = ['ssh', 'http', 'tls', null, null, 'telnet'];
  const first = Buffer.from('SSH-2.0-Go\r\n');
  const t0 = Date.now();
  const BATCH = 20_000;
  for (let done = 0; done < N; ) {
    const batch = [];
    for (let i = 0; i < BATCH && done < N; i++, done++) {
      // In recording order, as a gateway writes them: opened_at rises with the rowid.
      const opened = now - WEEK + Math.floor(((done + rnd()) / N) * WEEK);
      const s = skew(200_000);
      const src = `198.51.${(s >> 8) & 255}.${s & 255}`;
      const port = rnd() < 0.8 ? PORTS[skew(PORTS.length)] : 1 + Math.floor(rnd() * 65535);
      const refused = rnd() < 0.01;
      const forward = port === 22 || port === 80 || port === 443;
      batch.push({
        id: (done + 1).toString(16).padStart(32, '0'),
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
        bytesIn: 100,
        bytesOut: 200,
        durationMs: 1000,
        closeReason: refused ? 'limit-rate' : 'client-closed',
        firstBytes: first,
        protocol: refused ? null : PROTOS[Math.floor(rnd() * PROTOS.length)],
        protocolFields: null,
        count: refused ? 5 : 1,
        detail: null,
      });
    }
    sink.write(batch);
    if (done % 1_000_000 === 0)
      process.stderr.write(`  ${done.toLocaleString()} rows, ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
  }
  sink.close();
  return Date.now() - t0;
}

if (!existsSync(dbPath)) {
  process.stderr.write(`building ${N.toLocaleString()} events in ${dbPath}\n`);
  const ms = build();
  process.stderr.write(`built in ${(ms / 1000).toFixed(1)} s\n`);
}

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

const rows = [];
for (const name of Object.keys(stats.RANGES)) {
  const range = stats.toRange(name, now);
  for (const [view, fn] of Object.entries(VIEWS)) {
    const times = [];
    for (let i = 0; i < REPEATS; i++) {
      const t = process.hrtime.bigint();
      stats.withStore(dbPath, (db) => fn(db, range));
      times.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    times.sort((a, b) => a - b);
    rows.push({ range: name, view, best: times[0], median: times[Math.floor(times.length / 2)] });
    process.stderr.write(`  ${name} ${view}: ${times[0].toFixed(0)} ms\n`);
  }
}
// The search's first page, as the page asks for it.
for (const [label, q] of [
  ['search: newest 100', { limit: 100 }],
  ['search: one source, 24h', { src: '198.51.0.1', since: now - 86_400_000, limit: 100 }],
  ['search: port 3389, 1h', { dstPort: 3389, since: now - 3_600_000, limit: 100 }],
]) {
  const times = [];
  for (let i = 0; i < REPEATS; i++) {
    const t = process.hrtime.bigint();
    queryEvents(dbPath, q);
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  times.sort((a, b) => a - b);
  rows.push({ range: '-', view: label, best: times[0], median: times[Math.floor(times.length / 2)] });
}

console.log(
  `\ndashboard view queries, ${N.toLocaleString()} events over 7 days, node ${process.version}, best / median of ${REPEATS}\n`,
);
console.log('| range | view | best ms | median ms | < 300 ms |');
console.log('| --- | --- | ---: | ---: | --- |');
for (const r of rows) {
  console.log(
    `| ${r.range} | ${r.view} | ${r.best.toFixed(0)} | ${r.median.toFixed(0)} | ${r.best < 300 ? 'yes' : 'no'} |`,
  );
}
if (dir) rmSync(dir, { recursive: true, force: true });
