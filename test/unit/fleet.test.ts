// The fleet's pure parts: the event <-> message codec (what the collector accepts and
// refuses), message ids, subjects, the outbox's order, bound and persistence, and the
// collector's pruning of the ids it keeps.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import { COLUMNS } from '../../src/events/row.js';
import { SqliteSink } from '../../src/events/sqlite.js';
import { openDatabase } from '../../src/events/sqlite-driver.js';
import { decodeMessage, encodeEvents, MESSAGE_BYTES, messageId, recordKey } from '../../src/fleet/codec.js';
import { Collector } from '../../src/fleet/collector.js';
import { assembleNats, natsSchema, sensorSubject } from '../../src/fleet/config.js';
import { Outbox } from '../../src/fleet/outbox.js';
import { sampleEvent, tempDir } from '../helpers/events.js';

test('events survive the codec field for field, first bytes included', () => {
  const e = sampleEvent({
    firstBytes: Buffer.from([0, 1, 2, 255, 13, 10]),
    peer: { ip: '10.0.0.1', port: 9 },
  });
  const batch = [e, sampleEvent({ protocolFields: { clientVersion: 'SSH-2.0-\u00e9\u{1F600}' } })];
  const msgs = encodeEvents(batch, 'gw-1');
  assert.equal(msgs.length, 1);
  assert.equal(msgs[0]!.n, 2);
  assert.equal(msgs[0]!.msgId, `gw-1/${e.id}/2`);
  const d = decodeMessage(msgs[0]!.data);
  assert.ok(d.ok);
  assert.deepEqual(d.events, batch);
});

test('a batch is cut into messages of at most MESSAGE_BYTES, in order, none lost', () => {
  const batch = Array.from({ length: 500 }, () => sampleEvent({ firstBytes: Buffer.alloc(300, 'x') }));
  const msgs = encodeEvents(batch, 'gw-1');
  assert.ok(msgs.length > 1, `${msgs.length} messages`);
  for (const m of msgs) assert.ok(m.data.length <= MESSAGE_BYTES, `${m.data.length} bytes`);
  const back = msgs.flatMap((m) => {
    const d = decodeMessage(m.data);
    assert.ok(d.ok);
    assert.equal(d.events.length, m.n);
    assert.equal(m.msgId, `gw-1/${d.events[0]!.id}/${m.n}`);
    return d.events.map((x) => x.id);
  });
  assert.deepEqual(
    back,
    batch.map((x) => x.id),
  );
  // One event larger than a message still goes, alone.
  const big = encodeEvents([sampleEvent({ firstBytes: Buffer.alloc(MESSAGE_BYTES, 'y') })], 'gw-1');
  assert.equal(big.length, 1);
  assert.equal(big[0]!.n, 1);
});

test("an older sensor's one-event message (v1) still decodes", () => {
  const e = sampleEvent();
  const [m] = encodeEvents([e], 'gw-1');
  const row = (JSON.parse(Buffer.from(m!.data).toString()) as { rows: unknown[][] }).rows[0];
  const d = decodeMessage(Buffer.from(JSON.stringify({ v: 1, row })));
  assert.ok(d.ok);
  assert.deepEqual(d.events, [e]);
  // Rows of every earlier schema (each a prefix of today's columns) decode, the rest null.
  const full = row as unknown[];
  for (let n = COLUMNS.indexOf('src_country'); n < COLUMNS.length; n++) {
    const older = decodeMessage(Buffer.from(JSON.stringify({ v: 2, rows: [full.slice(0, n)] })));
    assert.ok(older.ok, `a row of ${n} values`);
    assert.equal(older.events[0]!.id, e.id);
  }
});

test('the collector refuses what is not a honeygate event, with a reason', () => {
  const [m] = encodeEvents([sampleEvent()], 'gw-1');
  const row = (JSON.parse(Buffer.from(m!.data).toString()) as { rows: unknown[][] }).rows[0]!;
  const v1 = (r: unknown[]) => JSON.stringify({ v: 1, row: r });
  const cases: [string, string][] = [
    ['not json', 'not JSON'],
    ['{"hello":"world"}', 'not a honeygate event (v1 or v2)'],
    [JSON.stringify({ v: 3, rows: [row] }), 'not a honeygate event (v1 or v2)'],
    [JSON.stringify({ v: 2, rows: [] }), 'rows is not a list of events'],
    [JSON.stringify({ v: 2, rows: 'x' }), 'rows is not a list of events'],
    [v1(['x']), 'row has the wrong shape'],
    [v1(['zz', ...row.slice(1)]), 'id is not hex'],
    [v1([row[0], 'bogus', ...row.slice(2)]), 'unknown type "bogus"'],
    [v1([...row.slice(0, 2), 'x', ...row.slice(3)]), 'opened_at is not a number'],
    // One bad row refuses the whole message: nothing of it is stored.
    [JSON.stringify({ v: 2, rows: [row, ['zz', ...row.slice(1)]] }), 'row 1: id is not hex'],
    ['', 'not JSON'],
  ];
  for (const [text, reason] of cases) {
    const d = decodeMessage(Buffer.from(text));
    assert.equal(d.ok, false, text);
    assert.equal((d as { reason: string }).reason, reason, text);
  }
});

test('message ids: the event id; an update adds its duration (it shares the flow id)', () => {
  const e = sampleEvent();
  assert.equal(messageId(e), e.id);
  assert.equal(messageId({ ...e, type: 'update', durationMs: 60000 }), `${e.id}.u60000`);
});

test("the collector's key names the recording gateway: a sensor's and its hub's records of a flow are two", () => {
  const e = sampleEvent();
  assert.equal(recordKey(e, 'fra1'), `fra1:${e.id}`);
  assert.notEqual(recordKey(e, 'hub'), recordKey(e, 'fra1'));
  assert.equal(recordKey({ ...e, type: 'update', durationMs: 5 }, 'fra1'), `fra1:${e.id}.u5`);
  // a v1 message (a sensor from before batching): the bare id, as collectors kept it
  assert.equal(recordKey(e, null), e.id);
  const v1 = decodeMessage(
    Buffer.from(
      JSON.stringify({
        v: 1,
        row: JSON.parse(Buffer.from(encodeEvents([e], 'x')[0]!.data).toString()).rows[0],
      }),
    ),
  );
  assert.equal(v1.ok && v1.version, 1);
  const v2 = decodeMessage(encodeEvents([e], 'x')[0]!.data);
  assert.equal(v2.ok && v2.version, 2);
});

test('a sensor publishes on PREFIX.<sensor>, its name made one subject token', () => {
  assert.equal(sensorSubject({ subject: 'honeygate.events' }, 'fra-1'), 'honeygate.events.fra-1');
  assert.equal(sensorSubject({ subject: 'hg' }, 'gw1.example.net'), 'hg.gw1_example_net');
  assert.equal(sensorSubject({ subject: 'hg' }, 'a b*>'), 'hg.a_b__');
});

test('the outbox keeps order across reopening, and drops the oldest beyond its bound', () => {
  const { dir, cleanup } = tempDir();
  try {
    const path = join(dir, 'outbox.db');
    let box = new Outbox(path, 1000);
    // Messages of 2 events each: the bound counts events, and drops whole messages.
    const rows = (from: number, n: number) =>
      Array.from({ length: n }, (_, i) => ({
        msgId: `m${from + i}`,
        data: Buffer.from(`d${from + i}`),
        n: 2,
      }));
    assert.equal(box.append(rows(0, 300)), 0);
    assert.equal(box.append(rows(300, 300)), 200, 'the 200 oldest events (100 messages) dropped');
    assert.equal(box.length, 1000);
    assert.equal(box.overflowed, 200);
    const first = box.peek(3);
    assert.deepEqual(
      first.map((r) => r.msgId),
      ['m100', 'm101', 'm102'],
    );
    box.remove(first);
    box.remove(first);
    assert.equal(box.length, 994, 'a message removed twice counts once');
    box.close();
    box = new Outbox(path, 1000);
    assert.equal(box.length, 994, 'what waited is there after a restart');
    assert.deepEqual(
      box.peek(1).map((r) => [r.msgId, Buffer.from(r.data).toString(), r.n]),
      [['m103', 'd103', 2]],
    );
    assert.ok(box.oldestQueuedAt! <= Date.now());
    box.remove(box.peek(2000));
    assert.equal(box.length, 0);
    assert.equal(box.oldestQueuedAt, null);
    box.close();
  } finally {
    cleanup();
  }
});

test('an outbox from before multi-event messages opens, one event a row, and drains', () => {
  const { dir, cleanup } = tempDir();
  try {
    const path = join(dir, 'outbox.db');
    const db = openDatabase(path);
    db.exec(`CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, msg_id TEXT NOT NULL,
               data BLOB NOT NULL, queued_at INTEGER NOT NULL)`);
    db.pragma('application_id = 1212641122');
    const [m] = encodeEvents([sampleEvent()], 'gw-1');
    const row = (JSON.parse(Buffer.from(m!.data).toString()) as { rows: unknown[][] }).rows[0];
    db.prepare('INSERT INTO outbox (msg_id, data, queued_at) VALUES (?, ?, ?)').run([
      'old-id',
      Buffer.from(JSON.stringify({ v: 1, row })),
      Date.now(),
    ]);
    db.close();
    const box = new Outbox(path, 1000);
    assert.equal(box.length, 1);
    const [old] = box.peek(10);
    assert.equal(old!.n, 1);
    assert.ok(decodeMessage(old!.data).ok, 'its v1 body is sent as it is');
    box.append(encodeEvents([sampleEvent(), sampleEvent()], 'gw-1'));
    assert.equal(box.length, 3);
    box.remove(box.peek(10));
    assert.equal(box.length, 0);
    box.close();
  } finally {
    cleanup();
  }
});

test("the collector's fleet_received forgets the ids the stream can no longer deliver (events.nats.maxAge)", () => {
  const tmp = tempDir();
  try {
    const store = join(tmp.dir, 'central.db');
    const log = pino({ level: 'silent' });
    const day = 86_400_000;
    // A store from before pruning: fleet_received with ids only.
    new SqliteSink(store).close();
    const old = openDatabase(store);
    old.exec('CREATE TABLE fleet_received (msg_id TEXT PRIMARY KEY) WITHOUT ROWID');
    old.prepare("INSERT INTO fleet_received (msg_id) VALUES ('from-before')").run();
    old.close();
    const cfg = assembleNats(natsSchema.parse({ servers: ['127.0.0.1:4222'], maxAge: '7d' }), tmp.dir);
    const collector = new Collector(cfg, store, log);
    const db = openDatabase(store);
    try {
      const now = Date.now();
      const add = db.prepare('INSERT INTO fleet_received (msg_id, received_at) VALUES (?, ?)');
      db.exec('BEGIN');
      for (let i = 0; i < 12_000; i++) add.run([`old-${i}`, now - 8 * day - i]);
      for (let i = 0; i < 100; i++) add.run([`new-${i}`, now - 6 * day]);
      db.exec('COMMIT');
      const count = (where: string) =>
        (db.prepare(`SELECT count(*) AS n FROM fleet_received WHERE ${where}`).get() as { n: number }).n;
      // One step at a time (between fetches), then the rest.
      assert.equal(collector.prune(now, 1), 5000);
      assert.equal(collector.prune(now), 7000);
      assert.equal(count("msg_id LIKE 'old-%'"), 0, 'ids older than maxAge are gone');
      assert.equal(count("msg_id LIKE 'new-%'"), 100, 'younger ids stay');
      assert.equal(
        count("msg_id = 'from-before'"),
        1,
        'an id of the old schema counts as received at the upgrade',
      );
      assert.equal(collector.stats().pruned, 12_000);
      // 8 days on, the upgrade's ids go too.
      assert.equal(collector.prune(now + 8 * day), 101);
      // maxAge 0: the stream keeps everything, so does the store.
      const forever = assembleNats(natsSchema.parse({ servers: ['127.0.0.1:4222'], maxAge: 0 }), tmp.dir);
      collector.close();
      add.run(['ancient', 1]);
      const keeper = new Collector(forever, store, log);
      assert.equal(keeper.prune(now), 0);
      assert.equal(count("msg_id = 'ancient'"), 1);
      keeper.close();
    } finally {
      db.close();
    }
  } finally {
    tmp.cleanup();
  }
});

test('the collector reads the stream through when the consumer will not deliver a message it passed', async () => {
  const tmp = tempDir();
  try {
    const store = join(tmp.dir, 'central.db');
    const cfg = assembleNats(natsSchema.parse({ servers: ['127.0.0.1:4222'] }), tmp.dir);
    const warnings: string[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => warnings.push(JSON.parse(line).msg) });
    const collector = new Collector(cfg, store, log);
    const subject = sensorSubject(cfg, 'sensor-a');
    // Three messages of 2 events in the stream (sequences 1-3). The store already wrote
    // sequences 1 and 2 as delivered, but sequence 2 now holds another message: what a
    // whole-cluster restart of nats-server 2.9.10 left.
    const batch = (k: number) =>
      encodeEvents([sampleEvent({ id: `a${k}0` }), sampleEvent({ id: `a${k}1` })], 'sensor-a')[0]!;
    const stream = new Map([1, 2, 3].map((seq) => [seq, { subject, seq, data: batch(seq).data }]));
    const internal = collector as unknown as {
      store(msgs: { subject: string; seq: number; data: Uint8Array }[]): boolean[];
      audit(jsm: unknown, at: Record<string, number>): Promise<void>;
    };
    internal.store([stream.get(1)!, { subject, seq: 2, data: batch(9).data }]);
    const jsm = {
      streams: { getMessage: async (_: string, q: { seq: number }) => stream.get(q.seq) ?? null },
    };
    const at = { firstSeq: 1, lastSeq: 3, delivered: 2, floor: 2, pending: 1, ackPending: 0 };
    // Consistent: one message after the delivered sequence, one pending. Nothing to read.
    await internal.audit(jsm, at);
    assert.equal(collector.stats().recovered, 0);
    // Sequence 3 delivered too; the consumer counts nothing pending but the stream holds one
    // more message than it delivered (a sequence it passed): the audit reads 1-4.
    stream.set(4, { subject, seq: 4, data: batch(4).data });
    internal.store([stream.get(3)!]);
    await internal.audit(jsm, { ...at, lastSeq: 4, delivered: 3, floor: 3, pending: 0 });
    const ids = () => {
      const db = openDatabase(store);
      try {
        return [...db.prepare('SELECT id FROM events ORDER BY id').iterate()].map((r) => String(r.id));
      } finally {
        db.close();
      }
    };
    assert.deepEqual(ids(), ['a10', 'a11', 'a20', 'a21', 'a30', 'a31', 'a40', 'a41', 'a90', 'a91']);
    assert.equal(collector.stats().recovered, 2, 'sequences 2 and 4, each once');
    assert.equal(collector.stats().duplicates, 0, 'the messages it had are not counted again');
    assert.ok(warnings.some((m) => /will not deliver 1 of the stream/.test(m)));
    // The same skew again starts no second audit.
    await internal.audit(jsm, { ...at, lastSeq: 4, delivered: 3, floor: 3, pending: 0 });
    assert.equal(collector.stats().recovered, 2);
    collector.close();
  } finally {
    tmp.cleanup();
  }
});

/** Whether an `engines.node` range admits Node `major` (the forms npm packages use: >=N, ^N, N.x, *, joined by ||). */
function admits(range: string, major: number): boolean {
  return range.split('||').some((alt) => {
    const a = alt.trim();
    if (a === '*' || a === '') return true;
    const ge = /^>=?\s*(\d+)/.exec(a);
    if (ge) return Number(ge[1]) <= major;
    const eq = /^[\^~]?\s*(\d+)(\.[\dx*]+)*$/.exec(a);
    if (eq) return Number(eq[1]) === major;
    throw new Error(`engines range not understood: "${range}"`);
  });
}

test('Node 20: the runtime dependencies whose engines exclude it are known, documented, and work', async () => {
  const root = new URL('../../../', import.meta.url);
  const lock = JSON.parse(readFileSync(new URL('package-lock.json', root), 'utf8')) as {
    packages: Record<string, { dev?: boolean; engines?: { node?: string } }>;
  };
  const excluding = new Set<string>();
  for (const [key, p] of Object.entries(lock.packages)) {
    if (key === '' || p.dev || !p.engines?.node) continue;
    if (!admits(p.engines.node, 20)) excluding.add(key.replace(/^.*node_modules\//, ''));
  }
  // npm ci on Node 20 warns EBADENGINE for these; each must be checked and named in docs/fleet.md.
  assert.deepEqual([...excluding].sort(), ['@nats-io/nuid']);
  const doc = readFileSync(new URL('docs/fleet.md', root), 'utf8');
  for (const name of excluding) assert.ok(doc.includes(`\`${name}\``), `docs/fleet.md names ${name}`);
  // What @nats-io/nuid needs of Node 22: crypto.getRandomValues on globalThis (it falls back
  // to Math.random without it), which Node 20 has.
  assert.equal(typeof globalThis.crypto?.getRandomValues, 'function');
  const { nuid } = await import('@nats-io/nuid');
  const ids = new Set(Array.from({ length: 10_000 }, () => nuid.next()));
  assert.equal(ids.size, 10_000, 'unique');
  for (const id of ids) assert.match(id, /^[0-9A-Za-z]{22}$/);
});
