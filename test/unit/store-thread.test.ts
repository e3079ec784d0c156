import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Config } from '../../src/config/types.js';
import type { FlowEvent } from '../../src/events/event.js';
import { queryEvents } from '../../src/events/query.js';
import { packEvents, packedOf, unpackEvents } from '../../src/events/row.js';
import { openSinks } from '../../src/events/sinks.js';
import { openDatabase } from '../../src/events/sqlite-driver.js';
import { ThreadedSqliteSink } from '../../src/events/store-thread.js';
import { sampleEvent, tempDir } from '../helpers/events.js';

// Issue 21 (latency): the SQLite sink's batches run on a thread of their own.
function tasksetMissing(): string | false {
  return spawnSync('taskset', ['-c', '0', 'true']).status === 0
    ? false
    : 'needs taskset (util-linux) to pin a process to one CPU';
}

describe('ThreadedSqliteSink', () => {
  const tmp = tempDir();
  after(tmp.cleanup);

  it('resolves a write once its rows are queryable, binary first bytes included', async () => {
    const path = join(tmp.dir, 'thread.db');
    const sink = new ThreadedSqliteSink(path);
    // First bytes as a socket read hands them over: a few bytes of a 64 KiB block.
    const read = Buffer.allocUnsafeSlow(65536);
    read.set([0x16, 0x03, 0x01, 0x00, 0xff, 0x00], 100);
    const firstBytes = read.subarray(100, 106);
    const flow = sampleEvent({
      src: { ip: '2001:db8::7', port: 50123 },
      firstBytes,
      protocol: 'tls',
      protocolFields: { sni: 'example.test', big: 10n },
    });
    const bare = sampleEvent({ type: 'rejected', firstBytes: Buffer.alloc(0), count: 4 });
    // An event from elsewhere (a worker's, parsed) may hold its bytes as a plain Uint8Array, or none.
    const odd = sampleEvent({ firstBytes: new Uint8Array([1, 2]) as Buffer });
    const none = sampleEvent();
    (none as { firstBytes?: Buffer }).firstBytes = undefined;
    await sink.write([flow, bare, odd, none]);
    assert.equal(none.firstBytes, undefined);
    assert.deepEqual([...odd.firstBytes], [1, 2]);
    assert.equal(
      flow.firstBytes,
      firstBytes,
      "the caller's events are left as they were (other sinks read them)",
    );
    const got = queryEvents(path, { limit: 10 });
    assert.equal(got.length, 4, 'every row is in the store when write() resolves');
    const row = got.find((e) => e.id === flow.id && e.type === 'flow');
    assert.ok(row);
    assert.deepEqual(row.firstBytes, Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x00]));
    assert.equal(row.protocolFields?.big, '10');
    // The rollup's counts went in the same transaction.
    const db = openDatabase(path, { readonly: true });
    const n = db.prepare('SELECT count(*) AS n FROM rollup').get() as { n: number };
    db.close();
    assert.ok(Number(n.n) > 0, 'the rollup was written with the events');
    await sink.close();
  });

  // Workers: the primary hands a worker's pack on as it came (row.ts packEvents), with its
  // own events, what events.enrich found, and without the events its queue dropped.
  it('writes events read from a worker pack as they were, mixed with others, in order', async () => {
    const path = join(tmp.dir, 'packed.db');
    const sink = new ThreadedSqliteSink(path);
    const sent = [
      sampleEvent({
        firstBytes: Buffer.from([0x16, 0x03, 0x01]),
        protocol: 'tls',
        protocolFields: { sni: 'a.test' },
      }),
      sampleEvent({ src: { ip: '2001:db8::9', port: 40000 } }),
      sampleEvent({ type: 'rejected', count: 3 }),
    ];
    const [first, second] = unpackEvents(packEvents(sent)) as [FlowEvent, FlowEvent]; // the third: dropped
    second.geo = { country: 'NL', asn: 64500, asOrg: 'Example AS' };
    const own = sampleEvent({ type: 'scan', firstBytes: Buffer.from('own') });
    const later = unpackEvents(packEvents([sampleEvent({ src: { ip: '203.0.113.5', port: 1 } })]));
    // The batch interleaves two packs and an event of the primary's.
    await sink.write([second, own, first, ...later]);
    const db = openDatabase(path, { readonly: true });
    const ids = [...db.prepare('SELECT id FROM events ORDER BY seq').iterate()] as { id: string }[];
    db.close();
    assert.deepEqual(
      ids.map((r) => r.id),
      [second.id, own.id, first.id, later[0]!.id],
      'every event once, in the batch order, the dropped one not',
    );
    const got = new Map(queryEvents(path, { limit: 10 }).map((e) => [e.id, e]));
    assert.deepEqual(got.get(second.id), { ...sent[1], geo: second.geo });
    assert.deepEqual(got.get(first.id), sent[0]);
    assert.deepEqual(got.get(own.id)?.firstBytes, Buffer.from('own'));
    // The packs stay readable for the other sinks after the hand-off.
    assert.deepEqual(
      unpackEvents(packedOf(first)!.pack).map((e) => e.id),
      sent.map((e) => e.id),
    );
    await sink.close();
  });

  it('close() writes every batch handed to it before', async () => {
    const path = join(tmp.dir, 'close.db');
    const sink = new ThreadedSqliteSink(path);
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 20; i++) writes.push(sink.write(Array.from({ length: 50 }, () => sampleEvent())));
    await sink.close();
    await Promise.all(writes);
    assert.equal(queryEvents(path, { limit: 2000 }).length, 1000);
    assert.throws(() => sink.write([sampleEvent()]), { code: 'HG_ERR_SINK', message: /is closed/ });
    await sink.close(); // idempotent
  });

  it('fails to open a store that is not one with the same HG_ERR_SINK as on the loop', () => {
    const text = join(tmp.dir, 'notes.db');
    writeFileSync(text, 'this is not sqlite at all, just a text file that is long enough\n'.repeat(20));
    assert.throws(() => new ThreadedSqliteSink(text), { code: 'HG_ERR_SINK' });
  });

  it('rejects a batch that met a locked store, and writes it with the next one', async () => {
    const path = join(tmp.dir, 'locked.db');
    const sink = new ThreadedSqliteSink(path, { busyTimeoutMs: 50 });
    const other = openDatabase(path);
    other.exec('BEGIN IMMEDIATE');
    await assert.rejects(sink.write([sampleEvent(), sampleEvent()]), {
      code: 'HG_ERR_SINK',
      message: /2 events kept for the next batch/,
    });
    other.exec('COMMIT');
    other.close();
    await sink.write([sampleEvent()]);
    await sink.close();
    assert.equal(queryEvents(path, { limit: 10 }).length, 3);
  });

  it('turns a dead thread into an error and a count, not a hang, and starts a new one', async () => {
    const path = join(tmp.dir, 'crash.db');
    const sink = new ThreadedSqliteSink(path);
    await sink.write([sampleEvent()]);
    const worker = (sink as unknown as { worker: { terminate(): Promise<number> } }).worker;
    const pending = sink.write([sampleEvent(), sampleEvent(), sampleEvent()]);
    const exited = worker.terminate();
    // Terminated before or after its commit: either it resolved, or it failed and was counted.
    const failed = await pending.then(
      () => false,
      (err: { code?: string; message: string }) => {
        assert.equal(err.code, 'HG_ERR_SINK');
        assert.match(err.message, /store thread stopped .*3 events not written/);
        return true;
      },
    );
    if (failed) assert.equal(sink.lost, 3);
    // A write posted before the exit is reported would die with the old thread: wait for it.
    await exited;
    await sink.write([sampleEvent()]); // a new thread
    await sink.close();
    assert.equal(queryEvents(path, { limit: 10 }).length, failed ? 2 : 5);
  });

  it('is what the run command opens for events.sqlite (on more than one CPU), with retention stats from the thread', async () => {
    const path = join(tmp.dir, 'run.db');
    const events = {
      sqlite: path,
      jsonl: null,
      nats: null,
      createDirectories: true,
      retention: { maxAgeMs: 30 * 86_400_000, maxBytes: null },
    };
    const config = { events } as unknown as Config;
    const saved = process.env.HONEYGATE_STORE_THREAD;
    process.env.HONEYGATE_STORE_THREAD = 'off';
    const onLoop = openSinks({
      events: { ...events, sqlite: join(tmp.dir, 'loop.db') },
    } as unknown as Config);
    assert.ok(!(onLoop[0] instanceof ThreadedSqliteSink), 'HONEYGATE_STORE_THREAD=off writes on the loop');
    await onLoop[0]!.close();
    process.env.HONEYGATE_STORE_THREAD = 'on';
    const [sink] = openSinks(config) as ThreadedSqliteSink[];
    if (saved === undefined) delete process.env.HONEYGATE_STORE_THREAD;
    else process.env.HONEYGATE_STORE_THREAD = saved;
    assert.ok(sink instanceof ThreadedSqliteSink);
    assert.ok(sink.stats(), 'retention stats from the start, before any batch');
    await sink.write([sampleEvent()]);
    await sink.trim();
    const stats = sink.stats();
    assert.ok(stats && stats.storeBytes > 0, 'retention runs in the thread and reports the size');
    await sink.close();
  });

  // One CPU: the loop busy for 300 ms with a 2,000-row batch in flight. At idle priority the
  // thread writes nothing meanwhile (a connection would preempt it at once), and catchUp lets
  // it finish; at normal priority it shares the CPU and writes during the spin.
  const starve = (priority: 'idle' | 'normal') => {
    const script = `
      import { readdirSync, readFileSync } from 'node:fs';
      import { ThreadedSqliteSink } from ${JSON.stringify(new URL('../../src/events/store-thread.js', import.meta.url).href)};
      import { openDatabase } from ${JSON.stringify(new URL('../../src/events/sqlite-driver.js', import.meta.url).href)};
      import { sampleEvent } from ${JSON.stringify(new URL('../helpers/events.js', import.meta.url).href)};
      const sink = new ThreadedSqliteSink(process.argv[2], { idle: process.argv[3] === 'idle' });
      // Field 41 of each thread's stat: its scheduling policy (5: SCHED_IDLE).
      const policies = readdirSync('/proc/self/task').map((t) => {
        const stat = readFileSync('/proc/self/task/' + t + '/stat', 'latin1');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[38]);
      });
      let written = false;
      sink.write(Array.from({ length: 2000 }, () => sampleEvent())).then(() => { written = true; });
      const until = performance.now() + 300;
      while (performance.now() < until);
      const rows = () => {
        const db = openDatabase(process.argv[2], { readonly: true });
        const n = Number(db.prepare('SELECT count(*) AS n FROM events').get().n);
        db.close();
        return n;
      };
      const during = rows();
      const answered = sink.catchUp(10_000);
      await null;
      console.log(JSON.stringify({ during, answered, written, after: rows(), idleThreads: policies.filter((p) => p === 5).length }));
      await sink.close();
    `;
    const path = join(tmp.dir, `starve-${priority}.db`);
    const file = join(tmp.dir, `starve-${priority}.mjs`);
    writeFileSync(file, script);
    const res = spawnSync('taskset', ['-c', '0', process.execPath, file, path, priority], {
      encoding: 'utf8',
    });
    assert.equal(res.status, 0, res.stderr);
    return JSON.parse(res.stdout) as {
      during: number;
      answered: boolean;
      written: boolean;
      after: number;
      idleThreads: number;
    };
  };

  it('at idle priority on one CPU writes only when the loop lets it: catchUp does', {
    skip: tasksetMissing(),
  }, () => {
    const idle = starve('idle');
    assert.equal(idle.idleThreads, 1, 'the store thread, and only it, runs as SCHED_IDLE');
    assert.equal(idle.during, 0, 'nothing written while the loop was busy');
    assert.equal(idle.answered, true, 'catchUp gave the thread the CPU until the batch was written');
    assert.equal(idle.written, true);
    assert.equal(idle.after, 2000);
    const normal = starve('normal');
    assert.equal(normal.idleThreads, 0);
    assert.equal(normal.during, 2000, 'at normal priority the thread shared the CPU with the busy loop');
  });
});
