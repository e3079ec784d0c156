#!/usr/bin/env node
// What session recording costs (routes[].record, backends.<name>.record), and why recorded
// flows are copied by Node and not by the native relay: three honeygates forwarding to
// nginx, measured one after the other on the same load:
//   relay     no record: the native relay copies (the default path)
//   node      no record, HONEYGATE_RELAY=off: Node's pump copies
//   recorded  record: {} on the backend: Node's pump copies and writes every chunk to disk
// Figures: new connections/s (wrk -c 50, Connection: close, /1k) and bulk MB/s (wrk -c 2,
// /64m), with honeygate's CPU per connection and per GB (/proc/PID/stat, its children too).
// "recorded" against "node" is the recording's own price; "node" against "relay" is what
// a recorded flow gives up by leaving the relay. First, the store alone (src/record/store.ts,
// no sockets): CPU per recorded flow of a short HTTP exchange (80 bytes in, 1,300 out, two
// FINs), all threads of this process (libuv's pool does the open, writev and close).
//   node bench/recording-cost.mjs   (after npm run build; needs nginx and wrk)
// Env: BENCH_SECONDS (4), BENCH_REPEATS (3), BENCH_KEEP=1 keeps the temp directory.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { newEventId } from '../dist/src/events/recorder.js';
import { RecordStore } from '../dist/src/record/store.js';
import { wrk } from './lib/load.mjs';
import { honeygateCommonYaml, LARGE, launchHoneygate, PORTS, SMALL, startNginx } from './lib/servers.mjs';
import { cpuSeconds, sleep } from './lib/util.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
const PORT = 9121; // clear of bench/run.mjs's ports
const ADMIN = 9221;

const TARGETS = [
  { name: 'relay', env: {}, record: '' },
  { name: 'node', env: { HONEYGATE_RELAY: 'off' }, record: '' },
  // 128 MiB per flow: each /64m response is recorded whole; 4 GiB of files, oldest evicted.
  { name: 'recorded', env: { HONEYGATE_RELAY: 'off' }, record: '    record: { maxBytes: 128MiB }\n' },
];

function yaml(dir, t) {
  const db = join(dir, `${t.name}.db`);
  const common = honeygateCommonYaml({ db, admin: ADMIN }).replace(
    'events:\n',
    `events:\n  recordings: { path: ${JSON.stringify(join(dir, `${t.name}-recordings`))}, maxSize: 4GiB, minFree: 2GiB }\n`,
  );
  return {
    db,
    text: `listeners:
  - name: bench
    bind: "127.0.0.1:${PORT}"
routes:
  - forward: nginx
backends:
  nginx:
    servers: ["127.0.0.1:${PORTS.nginx}"]
    retries: 0
${t.record}${common}`,
  };
}

async function measure(hg, path, opts) {
  const before = cpuSeconds(hg.process.pid);
  const r = await wrk(PORT, path, { seconds: SECONDS, cpus: null, ...opts });
  const cpu = cpuSeconds(hg.process.pid) - before;
  return { ...r, cpu };
}

/** CPU (µs, all threads) per recorded flow of the store alone, best of REPEATS. */
async function storeAlone(base) {
  const best = [];
  for (let rep = 0; rep < REPEATS; rep++) {
    const dir = mkdtempSync(join(base, 'hg-record-store-'));
    const store = new RecordStore(
      { path: dir, maxSizeBytes: 1024 ** 3, minFreeBytes: 1024 ** 2 },
      pino({ level: 'silent' }),
    );
    await store.ready();
    const req = Buffer.alloc(80, 'G');
    const resp = Buffer.alloc(1300, 'x');
    const n = 3000;
    const before = process.cpuUsage();
    for (let i = 0; i < n; i++) {
      const header = {
        id: newEventId(),
        src: { ip: '198.51.100.7', port: 40000 },
        dst: { ip: '127.0.0.1', port: 80 },
      };
      const r = store.open(
        { ...header, listener: 'bench', route: null, action: 'forward', backend: 'nginx' },
        { maxBytes: 1 << 20 },
      );
      r.in(req);
      r.finIn();
      r.out(resp);
      r.finOut();
      r.close();
      if (i % 50 === 49) await new Promise((res) => setImmediate(res)); // 50 flows per loop turn
    }
    while (store.stats().active > 0) await sleep(5);
    const used = process.cpuUsage(before);
    best.push((used.user + used.system) / n);
    store.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return Math.min(...best);
}

const alone = await storeAlone(tmpdir());
console.error(`store alone: ${alone.toFixed(0)} µs CPU per recorded flow (${tmpdir()})`);

const dir = mkdtempSync(join(tmpdir(), 'hg-recording-cost-'));
const nginx = await startNginx(dir, { cpus: null, workers: 1 });
const results = Object.fromEntries(TARGETS.map((t) => [t.name, { conn: [], bulk: [] }]));
try {
  for (let rep = 0; rep < REPEATS; rep++) {
    // Rotated, so that no target is always first.
    const order = TARGETS.map((_, i) => TARGETS[(i + rep) % TARGETS.length]);
    for (const t of order) {
      const { db, text } = yaml(dir, t);
      const hg = await launchHoneygate(dir, `${t.name}-${rep}`, {
        root: ROOT,
        node: process.execPath,
        cpus: null,
        yaml: text,
        db,
        admin: ADMIN,
        ports: [PORT],
        env: { ...process.env, ...t.env },
      });
      try {
        await wrk(PORT, SMALL, { seconds: 1, connections: 10, threads: 1, close: true, cpus: null }); // warm-up
        const conn = await measure(hg, SMALL, { connections: 50, threads: 1, close: true });
        const bulk = await measure(hg, LARGE, { connections: 2, threads: 1 });
        results[t.name].conn.push({
          rate: conn.rate,
          cpuUs: (conn.cpu / conn.requests) * 1e6,
          errors: conn.errors,
        });
        results[t.name].bulk.push({
          mbps: bulk.mbps,
          cpuPerGb: bulk.cpu / (bulk.bytes / 1e9),
          errors: bulk.errors,
        });
        console.error(
          `${t.name} #${rep + 1}: ${conn.rate.toFixed(0)} conn/s (${((conn.cpu / conn.requests) * 1e6).toFixed(0)} µs CPU each), ` +
            `${bulk.mbps.toFixed(0)} MB/s (${(bulk.cpu / (bulk.bytes / 1e9)).toFixed(2)} s CPU per GB)`,
        );
      } finally {
        await hg.process.stop();
        await sleep(200);
      }
    }
  }
} finally {
  await nginx.process.stop();
  if (process.env.BENCH_KEEP !== '1') rmSync(dir, { recursive: true, force: true });
  else console.error(`kept ${dir}`);
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const row = (name) => {
  const r = results[name];
  return {
    name,
    conn: Math.max(...r.conn.map((x) => x.rate)),
    connMedian: median(r.conn.map((x) => x.rate)),
    connCpu: Math.min(...r.conn.map((x) => x.cpuUs)),
    mbps: Math.max(...r.bulk.map((x) => x.mbps)),
    mbpsMedian: median(r.bulk.map((x) => x.mbps)),
    gbCpu: Math.min(...r.bulk.map((x) => x.cpuPerGb)),
  };
};
const rows = TARGETS.map((t) => row(t.name));
console.log(`recording cost: best of ${REPEATS} runs of ${SECONDS} s (median in brackets), unpinned\n`);
console.log(`the store alone: ${alone.toFixed(0)} µs CPU per recorded flow (80 bytes in, 1,300 out)\n`);
console.log('| target | new conn/s | CPU per conn | bulk MB/s | CPU per GB |');
console.log('| --- | --- | --- | --- | --- |');
for (const r of rows) {
  console.log(
    `| ${r.name} | ${r.conn.toFixed(0)} (${r.connMedian.toFixed(0)}) | ${r.connCpu.toFixed(0)} µs | ` +
      `${r.mbps.toFixed(0)} (${r.mbpsMedian.toFixed(0)}) | ${r.gbCpu.toFixed(2)} s |`,
  );
}
