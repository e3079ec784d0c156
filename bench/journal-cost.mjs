#!/usr/bin/env node
// The start journal's CPU per flow on its own (src/events/writeahead.ts): start() for each
// accept, one write per event-loop turn of 64 accepts, settled() per batch of 2,000, against
// the same loop without it. `npm run bench` measures the same side by side in its
// connection-rate figure (target honeygate-nojournal); this isolates it from the load's noise.
//   node bench/journal-cost.mjs   (after npm run build)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { newEventId } from '../dist/src/events/recorder.js';
import { StartJournal } from '../dist/src/events/writeahead.js';

const N = 200_000;
const PER_TURN = 64;
const PER_BATCH = 2000;
const src = { ip: '198.51.100.7', port: 40001 };
const dst = { ip: '127.0.0.1', port: 9101 };
const turn = () => new Promise((resolve) => setImmediate(resolve));

async function loop(journal) {
  const ids = [];
  const gens = [];
  const before = process.cpuUsage();
  for (let i = 0; i < N; i += PER_TURN) {
    for (let k = 0; k < PER_TURN; k++) {
      const id = newEventId();
      ids.push(id);
      gens.push(journal ? journal.start(id, Date.now(), 'bench0', src, dst) : -1);
    }
    await turn();
    if (ids.length >= PER_BATCH) {
      const [settledIds, settledGens] = [ids.splice(0), gens.splice(0)];
      journal?.settled(settledIds, settledGens);
    }
  }
  const used = process.cpuUsage(before);
  return (used.user + used.system) / N;
}

const dir = mkdtempSync(join(tmpdir(), 'hg-journal-cost-'));
try {
  const journal = new StartJournal(join(dir, 'events.db'), 'main', pino({ level: 'silent' }));
  const on = [];
  const off = [];
  for (let r = 0; r < 5; r++) {
    off.push(await loop(null));
    on.push(await loop(journal));
  }
  journal.close();
  const best = (xs) => Math.min(...xs);
  const cost = best(on) - best(off);
  console.log(
    `start journal: ${cost.toFixed(2)} µs CPU per flow (best of 5: ${best(on).toFixed(2)} with, ${best(off).toFixed(2)} without)`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
