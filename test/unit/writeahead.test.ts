// The start journal (#14 crash window): a flow started and never settled is recovered as a
// crash event; settled flows are not; files go once nothing in them is in flight.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import type { FlowEvent } from '../../src/events/event.js';
import { JsonlSink } from '../../src/events/jsonl.js';
import { queryEvents } from '../../src/events/query.js';
import { Recorder } from '../../src/events/recorder.js';
import { SqliteSink } from '../../src/events/sqlite.js';
import { recoverJournal, StartJournal } from '../../src/events/writeahead.js';
import { sampleEvent, tempDir } from '../helpers/events.js';

const log = pino({ level: 'silent' });
const src = { ip: '198.51.100.7', port: 40001 };
const dst = { ip: '192.0.2.1', port: 22 };
const turn = () => new Promise((resolve) => setImmediate(resolve));

test('a started, unsettled flow is recovered as crash; a settled one is not', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const base = path.join(dir, 'events.db');
    const journal = new StartJournal(base, 'main', log);
    const a = sampleEvent();
    const b = sampleEvent({ src: { ip: '203.0.113.9', port: 5555 } });
    const ga = journal.start(a.id, 1000, 'ssh', src, dst);
    const gb = journal.start(b.id, 2000, 'web\tx', b.src, dst);
    await turn(); // the starts of a turn go out in one write
    journal.settled([a.id], [ga]);
    // Killed here: b never settled.
    const { events, files } = recoverJournal(base, 'gw-1');
    assert.equal(files.length, 1);
    assert.deepEqual(
      events.map((e) => [e.id, e.closeReason, e.listener, e.src, e.openedAt, e.sensor]),
      [[b.id, 'crash', 'web x', { ip: '203.0.113.9', port: 5555 }, 2000, 'gw-1']],
    );
    assert.equal(gb, ga);
    // A torn last line (a crash mid-write) is skipped, not misread.
    fs.appendFileSync(files[0]!, `S\t${sampleEvent().id}\t3000\tssh\t198.51`);
    assert.equal(recoverJournal(base, 'gw-1').events.length, 1);
    journal.settled([b.id], [gb]);
    journal.close();
    assert.deepEqual(fs.readdirSync(dir), [], 'a clean close leaves no journal');
  } finally {
    cleanup();
  }
});

test('the recorder settles a flow once its batch is written, dropped or silent ones too', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const base = path.join(dir, 'events.db');
    const journal = new StartJournal(base, 'main', log);
    const written: string[] = [];
    const sink = {
      name: 'mem',
      write: (es: { id: string }[]) => void written.push(...es.map((e) => e.id)),
      reopen() {},
      close() {},
    };
    const recorder = new Recorder([sink], { queueSize: 1, batchMs: 60_000, log, journal });
    const [x, y, z] = [sampleEvent(), sampleEvent(), sampleEvent()];
    const gens = [x, y, z].map((e) => journal.start(e.id, e.openedAt, 'l', src, dst));
    recorder.record(x, gens[0]);
    recorder.record(y, gens[1]); // the queue holds one: dropped, but settled all the same
    recorder.settle(z.id, gens[2]!); // a flow that leaves no event
    await turn();
    assert.equal(recoverJournal(base, 's').events.length, 3, 'before the batch, all three are in flight');
    await recorder.flush();
    assert.deepEqual(written, [x.id]);
    assert.equal(recoverJournal(base, 's').events.length, 0);
    await recorder.close();
    assert.deepEqual(fs.readdirSync(dir), []);
  } finally {
    cleanup();
  }
});

// A kill after a batch reached the sinks but before its end lines reached the journal: the
// next start recovers flows that are already recorded. The file sinks must not keep them twice.
test('a recovered flow a sink already holds is not written again as crash', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const recorded = sampleEvent();
    const updated = sampleEvent({ type: 'update' }); // an update only: the flow never ended
    const lost = sampleEvent();
    const crash = (e: FlowEvent): FlowEvent => ({ ...e, type: 'flow', closeReason: 'crash' });
    const sqlite = new SqliteSink(path.join(dir, 'events.db'));
    const jsonl = new JsonlSink(path.join(dir, 'events.jsonl'));
    for (const sink of [sqlite, jsonl]) {
      sink.write([recorded, updated]);
      sink.write([crash(recorded), crash(updated), crash(lost)]);
      sink.write([crash(recorded)]);
    }
    await sqlite.close();
    jsonl.close();
    const rows = queryEvents(path.join(dir, 'events.db'), { type: 'flow' }).map((e) => [e.id, e.closeReason]);
    const lines = fs
      .readFileSync(path.join(dir, 'events.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .filter((d) => d.honeygate.type === 'flow')
      .map((d) => [d.event.id, d.event.reason]);
    const want = [
      [recorded.id, 'client-closed'],
      [updated.id, 'crash'],
      [lost.id, 'crash'],
    ];
    assert.deepEqual(rows.sort(), [...want].sort(), 'sqlite');
    assert.deepEqual(lines, want, 'jsonl');
  } finally {
    cleanup();
  }
});
