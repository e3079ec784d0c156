import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { queryEvents } from '../../src/events/query.js';
import { MIGRATIONS, SqliteSink, splitStatements } from '../../src/events/sqlite.js';
import { openDatabase } from '../../src/events/sqlite-driver.js';
import { createLogger } from '../../src/log.js';
import { sampleEvent, tempDir } from '../helpers/events.js';

describe('SqliteSink', () => {
  const tmp = tempDir();
  after(tmp.cleanup);

  it('round-trips every field, including binary first bytes, IPv6 and a PROXY peer', () => {
    const path = join(tmp.dir, 'nested', 'dir', 'roundtrip.db'); // the directory is created
    const sink = new SqliteSink(path);
    const binary = Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x00, 0x0a, 0x5c]);
    const flow = sampleEvent({
      src: { ip: '2001:db8::7', port: 50123 },
      dst: { ip: '2001:db8:1::1', port: 443 },
      peer: { ip: '198.51.100.250', port: 61000 },
      proxyHeader: 'v2',
      firstBytes: binary,
      protocol: 'tls',
      protocolFields: { sni: 'example.test', alpn: ['h2', 'http/1.1'], n: 3 },
      detail: 'some detail',
    });
    flow.recording = flow.id; // its session recording (issue 20): `honeygate replay` finds it by this id
    const update = sampleEvent({
      ...flow,
      type: 'update',
      closedAt: null,
      closeReason: null,
      durationMs: 500,
    });
    const bare = sampleEvent({
      type: 'rejected',
      route: null,
      action: 'close',
      backend: null,
      server: null,
      sourceMode: null,
      closeReason: 'limit-rate',
      firstBytes: Buffer.alloc(0),
      protocol: null,
      protocolFields: null,
      count: 17,
    });
    sink.write([update, flow, bare]);
    sink.close();

    const got = queryEvents(path, { limit: 10 });
    assert.equal(got.length, 3);
    const byKey = new Map(got.map((e) => [`${e.id}/${e.type}`, e]));
    for (const want of [update, flow, bare]) {
      const e = byKey.get(`${want.id}/${want.type}`);
      assert.ok(e, `${want.type} row is there`);
      assert.deepEqual(e, want);
      assert.ok(Buffer.isBuffer(e.firstBytes));
    }
  });

  it('creates the indexes, and reopening applies no migration twice', () => {
    const path = join(tmp.dir, 'migrate.db');
    new SqliteSink(path).close();
    const sink = new SqliteSink(path); // second open: schema is already current
    sink.write([sampleEvent()]);
    sink.close();
    new SqliteSink(path).close();

    const db = openDatabase(path, { readonly: true });
    try {
      assert.equal(db.pragma('user_version'), MIGRATIONS.length);
      assert.equal(db.pragma('journal_mode'), 'wal');
      const indexes = db
        .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'")
        .iterate() as unknown as Iterable<{ name: string; sql: string }>;
      const cols = [...indexes].map((i) => /\(([^)]+)\)/.exec(i.sql)?.[1]?.trim()).sort();
      assert.deepEqual(cols, [
        'action, opened_at',
        'dst_port, opened_at',
        'id',
        'opened_at',
        'route, opened_at',
        'sensor, opened_at',
        'src_asn',
        'src_country',
        'src_ip, opened_at',
        'type, opened_at',
      ]);
      assert.equal((db.prepare('SELECT count(*) AS n FROM events').get() as unknown as { n: number }).n, 1);
    } finally {
      db.close();
    }
  });

  it('upgrades a store with events without counting them in the step, then counts them in steps', async () => {
    const path = join(tmp.dir, 'upgrade.db');
    const seed = new SqliteSink(path);
    seed.write(
      Array.from({ length: 500 }, (_, i) => sampleEvent({ openedAt: 1_700_000_000_000 + i * 60_000 })),
    );
    seed.close();
    const count = (table: string) => {
      const db = openDatabase(path, { readonly: true });
      try {
        return Number((db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n);
      } finally {
        db.close();
      }
    };
    const want = [count('rollup'), count('rollup_sketch')];
    const db = openDatabase(path);
    // Schema 6: the last four steps count the rollup and the sketches, and fold its hours.
    db.exec('DELETE FROM rollup; DROP TABLE rollup_sketch; DROP TABLE backfill; DROP TABLE rollup_folded;');
    db.pragma(`user_version = ${MIGRATIONS.length - 4}`);
    db.close();
    const lines: string[] = [];
    const log = createLogger('info');
    log.info = ((_o: unknown, msg: string) => {
      lines.push(msg);
    }) as typeof log.info;
    const sink = new SqliteSink(path, { log });
    const n = MIGRATIONS.length;
    assert.match(
      lines[0]!,
      new RegExp(
        `upgrading the schema to version ${n - 3} \\(500 events; they are counted into the rollup after the start`,
      ),
    );
    assert.ok(
      lines.some((l) => new RegExp(`schema version ${n} in [0-9.]+ s`).test(l)),
      lines.join('\n'),
    );
    assert.equal(count('rollup'), 0, 'nothing counted in the step');
    // The sink counts them on the loop, in steps, and says when it is done.
    const t0 = Date.now();
    while (!lines.some((l) => /the rollup's sketch backfill is done/.test(l))) {
      assert.ok(Date.now() - t0 < 30_000, lines.join('\n'));
      await new Promise((r) => setTimeout(r, 20));
    }
    sink.close();
    assert.ok(lines.some((l) => /the rollup's rollup backfill is done/.test(l)));
    assert.deepEqual([count('rollup'), count('rollup_sketch'), count('backfill')], [...want, 0]);
  });

  it('cuts every schema step into statements that make the same schema', () => {
    const schema = (steps: string[]) => {
      const db = openDatabase(':memory:');
      try {
        for (const s of steps) db.exec(s);
        return [...db.prepare('SELECT type, name, sql FROM sqlite_master ORDER BY name').iterate()];
      } finally {
        db.close();
      }
    };
    assert.deepEqual(schema(MIGRATIONS.flatMap((m) => splitStatements(m))), schema([...MIGRATIONS]));
    assert.deepEqual(splitStatements("SELECT ';' AS a; -- x; y\nSELECT 2;"), [
      "SELECT ';' AS a;",
      '-- x; y\nSELECT 2;',
    ]);
  });

  it('makes a new store with 16 KiB pages, and keeps the pages of an older one', () => {
    const fresh = join(tmp.dir, 'pages-new.db');
    const sink = new SqliteSink(fresh);
    sink.write([sampleEvent()]);
    sink.close();
    const older = join(tmp.dir, 'pages-old.db');
    const before = new SqliteSink(older);
    before.close();
    // A store made before the change: rebuilt with 4 KiB pages.
    const raw = openDatabase(older);
    raw.pragma('journal_mode = DELETE');
    raw.pragma('page_size = 4096');
    raw.exec('VACUUM');
    raw.close();
    const after = new SqliteSink(older);
    after.write([sampleEvent()]);
    after.close();
    for (const [path, size] of [
      [fresh, 16384],
      [older, 4096],
    ] as const) {
      const db = openDatabase(path, { readonly: true });
      try {
        assert.equal(db.pragma('page_size'), size, path);
        assert.equal((db.prepare('SELECT count(*) AS n FROM events').get() as unknown as { n: number }).n, 1);
      } finally {
        db.close();
      }
    }
  });

  it('lands 10,000 events written in batches', () => {
    const path = join(tmp.dir, 'bulk.db');
    const sink = new SqliteSink(path);
    for (let b = 0; b < 20; b++) {
      sink.write(Array.from({ length: 500 }, () => sampleEvent()));
    }
    sink.close();
    const db = openDatabase(path, { readonly: true });
    try {
      assert.equal(
        (db.prepare('SELECT count(*) AS n FROM events').get() as unknown as { n: number }).n,
        10_000,
      );
    } finally {
      db.close();
    }
  });

  it('refuses a database that is not a honeygate event store', () => {
    const path = join(tmp.dir, 'foreign.db');
    const db = openDatabase(path);
    db.exec('CREATE TABLE customers (name TEXT)');
    db.close();
    assert.throws(() => new SqliteSink(path), {
      code: 'HG_ERR_SINK',
      message: /not a honeygate event store/,
    });

    const text = join(tmp.dir, 'notes.db');
    writeFileSync(
      text,
      'this is not sqlite at all, just a text file that is long enough to matter\n'.repeat(20),
    );
    assert.throws(() => new SqliteSink(text), { code: 'HG_ERR_SINK' });
  });

  it('keeps an event whose protocol fields JSON cannot hold', () => {
    const path = join(tmp.dir, 'odd.db');
    const sink = new SqliteSink(path);
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    sink.write([sampleEvent({ protocolFields: cyclic }), sampleEvent({ protocolFields: { big: 10n } })]);
    sink.close();
    const got = queryEvents(path, {});
    assert.equal(got.length, 2);
    assert.ok(got.some((e) => e.protocolFields && '_unserializable' in e.protocolFields));
    assert.ok(got.some((e) => e.protocolFields?.big === '10'));
  });

  // Regression: a batch that met another writer's lock blocked the event loop for 2 s and
  // was then thrown away.
  it('keeps a batch that met a locked database and writes it with the next one', () => {
    const path = join(tmp.dir, 'locked.db');
    const sink = new SqliteSink(path);
    const other = openDatabase(path);
    other.exec('BEGIN IMMEDIATE');
    const started = Date.now();
    assert.throws(() => sink.write([sampleEvent(), sampleEvent()]), /2 events kept for the next batch/);
    assert.ok(Date.now() - started < 1000, 'a short busy timeout, not a stalled event loop');
    other.exec('COMMIT');
    other.close();
    sink.write([sampleEvent()]);
    sink.close();
    assert.equal(queryEvents(path, { limit: 10 }).length, 3);
  });

  // Issue 21: on one core a batch held the loop for its whole transaction (6-12 ms at 1,000
  // flows/s), and every connection arriving meanwhile waited that long.
  it('sliced on the loop: lets the loop run during a batch, commits it whole, with the same rollup', async () => {
    const t0 = Date.UTC(2024, 4, 1, 11, 58, 0);
    const events = Array.from({ length: 3000 }, (_, i) =>
      sampleEvent({
        openedAt: t0 + i * 100, // across minutes and an hour
        src: { ip: `198.51.100.${i % 200}`, port: 40000 + i },
        dst: { ip: '203.0.113.1', port: 1000 + (i % 50) },
      }),
    );
    const whole = join(tmp.dir, 'whole.db');
    const sliced = join(tmp.dir, 'sliced.db');
    const one = new SqliteSink(whole);
    one.write(events);
    one.close();

    const sink = new SqliteSink(sliced, { sliceMs: 0.2 });
    const reader = openDatabase(sliced, { readonly: true });
    const count = (db: typeof reader, sql: string) => Number((db.prepare(sql).get() as { n: number }).n);
    const seen: number[] = [];
    let done = false;
    const turn = () => {
      if (done) return;
      seen.push(count(reader, 'SELECT count(*) AS n FROM events'));
      setImmediate(turn);
    };
    const written = sink.write(events);
    assert.ok(written instanceof Promise);
    setImmediate(turn);
    await written;
    done = true;
    await sink.close(); // after the write: nothing left to wait for
    assert.ok(seen.length > 2, `the loop turned during the batch (${seen.length} times)`);
    assert.deepEqual(new Set(seen), new Set([0]), 'no row visible before the commit');
    assert.equal(count(reader, 'SELECT count(*) AS n FROM events'), 3000);
    reader.close();

    const dump = (path: string) => {
      const db = openDatabase(path, { readonly: true });
      try {
        return ['rollup', 'rollup_sketch'].map((t) => [
          ...db.prepare(`SELECT * FROM ${t} ORDER BY span, dim, bucket, value`).iterate(),
        ]);
      } finally {
        db.close();
      }
    };
    assert.deepEqual(dump(sliced), dump(whole));
  });

  it('sliced on the loop: retention waits for the batch instead of deleting inside its transaction', async () => {
    const path = join(tmp.dir, 'sliced-retention.db');
    const sink = new SqliteSink(path, { sliceMs: 0.2, retention: { maxAgeMs: 3_600_000, maxBytes: null } });
    await sink.trim(); // the start's pass, on an empty store
    const old = Array.from({ length: 3000 }, () => sampleEvent()); // 2024: older than the bound
    const written = sink.write(old);
    const trimmed = new Promise<void>((resolve, reject) =>
      setImmediate(() => sink.trim().then(resolve, reject)),
    );
    await written;
    await trimmed;
    assert.equal(sink.stats()?.deleted['max-age'], 3000, 'every row deleted, after the commit');
    await sink.close();
    assert.equal(queryEvents(path, { limit: 10 }).length, 0);
  });

  it('sliced on the loop: a batch that met a locked store is kept for the next one; close() waits for a write', async () => {
    const path = join(tmp.dir, 'sliced-locked.db');
    const sink = new SqliteSink(path, { busyTimeoutMs: 50, sliceMs: 1 });
    const other = openDatabase(path);
    other.exec('BEGIN IMMEDIATE');
    await assert.rejects(async () => sink.write([sampleEvent(), sampleEvent()]), {
      code: 'HG_ERR_SINK',
      message: /2 events kept for the next batch/,
    });
    other.exec('COMMIT');
    other.close();
    const last = sink.write(Array.from({ length: 500 }, () => sampleEvent()));
    await sink.close();
    await last;
    assert.equal(queryEvents(path, { limit: 1000 }).length, 502);
  });
});
