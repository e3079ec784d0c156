#!/usr/bin/env node
// What the events of worker processes cost the primary (`run` with workers: above 1), per
// event: its main thread (the batch message read, each row made an event again, scan
// detection, the metrics' flowEnd, the recorder, the hand-off to the store thread) and the
// whole process (the store thread's SQLite work and the GC's threads included). The worker's
// batches are made as the IPC channel delivers them (rows through the V8 serializer); the
// sinks are what `run` opens (openSinks: SQLite on its thread). Several trees side by side,
// alternating: e.g. this one and a build of main.
//   node bench/primary-cost.mjs [RATE=8000] [SECONDS=4] [ROOT ...]   (after npm run build)
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { deserialize, serialize } from 'node:v8';
import { flowFields } from './lib/events.mjs';

const RATE = Number(process.argv[2] ?? 8000);
const SECONDS = Number(process.argv[3] ?? 4);
const roots = process.argv.length > 4 ? process.argv.slice(4) : [join(import.meta.dirname, '..')];
const BATCH_MS = 200;
const ROUNDS = 5;

/** The calling thread's time on a CPU so far, ns (the first field of schedstat). */
const threadCpuNs = () => Number(readFileSync('/proc/thread-self/schedstat', 'latin1').split(' ')[0]);

/** The store thread's time on a CPU so far, ns (its name is WorkerThread). */
function storeCpuNs() {
  let ns = 0;
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      if (readFileSync(`/proc/self/task/${tid}/comm`, 'latin1').trim() !== 'WorkerThread') continue;
      ns += Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'latin1').split(' ')[0]);
    } catch {
      // ended meanwhile
    }
  }
  return ns;
}

async function load(root) {
  const m = (p) => import(pathToFileURL(join(resolve(root), 'dist', 'src', p)).href);
  const [row, recorder, sinks, flow, metrics, events] = await Promise.all([
    m('events/row.js'),
    m('events/recorder.js'),
    m('events/sinks.js'),
    m('gateway/flow.js'),
    m('admin/metrics.js'),
    m('events/event.js'),
  ]);
  return { root, row, recorder, sinks, flow, metrics, events };
}

function benchFlow(t, i, at) {
  return t.events.blankEvent({ id: t.recorder.newEventId(), ...flowFields(i, at, `198.51.100.${i % 200}`) });
}

const silent = { warn() {}, info() {}, error() {}, debug() {}, trace() {}, child: () => silent };

async function run(t, dir, r) {
  const config = {
    events: {
      sqlite: join(dir, `${r}.db`),
      jsonl: null,
      nats: null,
      createDirectories: false,
      retention: null,
    },
    log: { level: 'warn', format: 'json' },
  };
  const recorder = new t.recorder.Recorder(t.sinks.openSinks(config, silent), {
    queueSize: 1_000_000,
    batchMs: 1_000_000, // flushed below, once per message, as the primary does
    log: silent,
    scan: {
      enabled: true,
      ports: 10,
      addresses: 10,
      idleMs: 30_000,
      maxDurationMs: 600_000,
      maxAddresses: 256,
      maxSources: 4096,
    },
  });
  const metrics = t.metrics.createMetrics({
    gateway: { stats: () => ({}) },
    recorder: { stats: () => recorder.stats() },
  });
  // The message as the worker sends it: rows (before packs), or a pack (row.ts packEvents).
  const packs = t.row.packEvents !== undefined;
  const message = (events, id) =>
    packs
      ? { type: 'events', pack: t.row.packEvents(events), id }
      : { type: 'events', rows: events.map(t.row.eventValues), id };
  const eventsOf = (m) => (packs ? t.row.unpackEvents(m.pack) : m.rows.map(t.row.valuesToEvent));
  const perBatch = Math.round((RATE * BATCH_MS) / 1000);
  const messages = [];
  for (let i = 0, at = Date.now(); i < (SECONDS * 1000) / BATCH_MS; i++) {
    const events = Array.from({ length: perBatch }, (_, j) => benchFlow(t, i * perBatch + j, at));
    messages.push(serialize(message(events, i)));
  }
  const handle = (m) => {
    const events = eventsOf(m);
    for (const e of events) {
      recorder.record(e);
      if (e.type === 'flow' && t.flow.flowEnd.hasSubscribers) t.flow.flowEnd.publish(e);
    }
    return recorder.flush().then(() => events.length);
  };
  await handle(deserialize(serialize(message([benchFlow(t, -1, Date.now())], -1))));
  let n = 0;
  const main0 = threadCpuNs();
  const store0 = storeCpuNs();
  const proc0 = process.cpuUsage();
  for (const buf of messages) {
    const next = Date.now() + BATCH_MS;
    const m = deserialize(buf); // what the channel does on arrival
    n += await handle(m);
    await new Promise((res) => setTimeout(res, Math.max(0, next - Date.now())));
  }
  const mainUs = (threadCpuNs() - main0) / 1000;
  const storeUs = (storeCpuNs() - store0) / 1000;
  const cpu = process.cpuUsage(proc0);
  metrics.close();
  await recorder.close();
  return { main: mainUs / n, store: storeUs / n, process: (cpu.user + cpu.system) / n };
}

const trees = [];
for (const root of roots) trees.push(await load(root));
const dir = mkdtempSync(join(tmpdir(), 'hg-primary-cost-'));
try {
  const results = new Map(trees.map((t) => [t.root, []]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const t of r % 2 === 0 ? trees : [...trees].reverse()) {
      const res = await run(t, dir, `${results.size}-${r}-${trees.indexOf(t)}`);
      results.get(t.root).push(res);
      console.log(
        `${t.root} round ${r + 1}: main thread ${res.main.toFixed(2)} µs/event, store thread ${res.store.toFixed(2)}, process ${res.process.toFixed(2)} µs/event`,
      );
    }
  }
  console.log(
    `\n${RATE} events/s from workers in batches every ${BATCH_MS} ms, ${ROUNDS} rounds (best / median):`,
  );
  for (const [root, list] of results) {
    const s = (f) => list.map(f).sort((a, b) => a - b);
    const m = s((x) => x.main);
    const p = s((x) => x.process);
    const st = s((x) => x.store);
    const mid = Math.floor(list.length / 2);
    console.log(
      `  ${root}: main thread ${m[0].toFixed(2)} / ${m[mid].toFixed(2)} µs/event, store thread ${st[0].toFixed(2)} / ${st[mid].toFixed(2)}, process ${p[0].toFixed(2)} / ${p[mid].toFixed(2)} µs/event`,
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
