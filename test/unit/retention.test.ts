// events.retention: the config keys, a pass on a small store (every bound, the counts, the
// vacuum), a store created without incremental vacuum, and the metrics. The few-million-row
// store is test/integration/retention.test.ts.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createMetrics } from '../../src/admin/metrics.js';
import { loadConfigText, loadEventsText } from '../../src/config/load.js';
import { Recorder } from '../../src/events/recorder.js';
import { APPLICATION_ID, MIGRATIONS, SqliteSink } from '../../src/events/sqlite.js';
import { openDatabase } from '../../src/events/sqlite-driver.js';
import { createLogger } from '../../src/log.js';
import { sampleEvent, tempDir } from '../helpers/events.js';
import { DAY, makeStore } from '../helpers/store.js';

const log = createLogger('silent');

function count(path: string, where = '1'): number {
  const db = openDatabase(path, { readonly: true });
  try {
    return Number(db.prepare(`SELECT count(*) AS n FROM events WHERE ${where}`).get()!.n);
  } finally {
    db.close();
  }
}

describe('events.retention config', () => {
  const load = (retention: string) =>
    loadEventsText(`events:\n  sqlite: /tmp/x.db\n  retention: ${retention}\n`, { fileName: 'c.yaml' });

  it('reads maxAge beyond the 24 days a timer can wait, and sizes', () => {
    const r = load('{ maxAge: 30d, maxSize: 10GiB }');
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(r.config.events.retention, { maxAgeMs: 30 * DAY, maxBytes: 10 * 1024 ** 3 });
    const age = load('{ maxAge: 365d }');
    assert.ok(age.ok);
    assert.deepEqual(age.config.events.retention, { maxAgeMs: 365 * DAY, maxBytes: null });
  });

  it('is off without the key, or with neither bound', () => {
    const none = loadEventsText('events:\n  sqlite: /tmp/x.db\n');
    assert.ok(none.ok);
    assert.equal(none.config.events.retention, null);
    const empty = load('{}');
    assert.ok(empty.ok);
    assert.equal(empty.config.events.retention, null);
  });

  it('warns when there is no SQLite store to bound', () => {
    const r = loadConfigText(
      'listeners: [{ name: a, bind: "127.0.0.1:0" }]\nroutes: [{ reject: {} }]\nevents: { sqlite: false, jsonl: /tmp/x.jsonl, retention: { maxAge: 7d } }\n',
      { fileName: 'c.yaml' },
    );
    assert.ok(r.ok, JSON.stringify(r));
    assert.match(
      r.warnings.join('\n'),
      /events\.retention: bounds the SQLite store, and events\.sqlite is off/,
    );
  });

  it('names the key and the allowed forms of a bad value', () => {
    const cases: [string, RegExp][] = [
      ['{ maxAge: soon }', /events\.retention\.maxAge: invalid duration "soon" \(use 500ms/],
      ['{ maxAge: 10s }', /events\.retention\.maxAge: invalid duration "10s": at least 1m/],
      ['{ maxSize: 1KiB }', /events\.retention\.maxSize: invalid size "1KiB": at least 1MiB/],
      ['{ maxSize: lots }', /events\.retention\.maxSize: invalid size "lots"/],
      ['{ maxRows: 5 }', /events\.retention.*maxRows.*allowed: maxAge, maxSize/],
    ];
    for (const [text, want] of cases) {
      const r = load(text);
      assert.equal(r.ok, false, text);
      assert.match(r.ok ? '' : r.errors.join('\n'), want, text);
    }
  });
});

describe('StoreRetention on a small store', () => {
  const tmp = tempDir();
  after(tmp.cleanup);
  const ROWS = 20_000;
  const now = Date.now();

  it('maxAge deletes exactly the older events, in steps, and counts them', async () => {
    const path = join(tmp.dir, 'age.db');
    makeStore(path, ROWS, now, 10 * DAY);
    // A row every 43 s, one on the cutoff at `now`: the pass runs later, so it goes too.
    const older = count(path, `opened_at <= ${now - 7 * DAY}`);
    const sink = new SqliteSink(path, { retention: { maxAgeMs: 7 * DAY, maxBytes: null }, log });
    try {
      await sink.trim();
      const stats = sink.stats()!;
      assert.equal(stats.deleted['max-age'], older);
      assert.equal(stats.deleted['max-size'], 0);
      assert.ok(stats.steps >= Math.ceil(older / 500), `${stats.steps} steps for ${older} rows`);
      assert.equal(count(path, `opened_at <= ${now - 7 * DAY}`), 0);
      assert.equal(count(path), ROWS - older);
      assert.equal(stats.freeBytes, 0, 'freed pages vacuumed');
      // A second pass finds nothing more to do.
      await sink.trim();
      assert.equal(sink.stats()!.deleted['max-age'], older);
    } finally {
      sink.close();
    }
  });

  it('maxSize keeps the newest events within the bound and shrinks the file', async () => {
    const path = join(tmp.dir, 'size.db');
    makeStore(path, ROWS, now, 10 * DAY);
    const sink0 = new SqliteSink(path);
    const full = sink0.stats();
    sink0.close();
    assert.equal(full, null, 'no stats without retention');
    const db = openDatabase(path, { readonly: true });
    const before = (db.pragma('page_count') as number) * (db.pragma('page_size') as number);
    db.close();
    const maxBytes = Math.floor(before * 0.6);
    const sink = new SqliteSink(path, { retention: { maxAgeMs: null, maxBytes }, log });
    try {
      await sink.trim();
      const stats = sink.stats()!;
      assert.ok(stats.storeBytes <= maxBytes, `${stats.storeBytes} > ${maxBytes}`);
      assert.ok(stats.deleted['max-size'] > ROWS * 0.3, `${stats.deleted['max-size']} deleted`);
      assert.equal(count(path), ROWS - stats.deleted['max-size']);
      // The oldest went: what is left is the newest, without a hole.
      const db2 = openDatabase(path, { readonly: true });
      const oldestLeft = Number(db2.prepare('SELECT min(opened_at) AS t FROM events').get()!.t);
      db2.close();
      assert.equal(count(path, `opened_at >= ${oldestLeft}`), count(path));
      assert.equal(count(path, `opened_at > ${now - 10 * DAY} AND opened_at < ${oldestLeft}`), 0);
    } finally {
      sink.close();
    }
  });

  it('on a store created without incremental vacuum: warns, trims, and new events reuse the pages', async () => {
    const path = join(tmp.dir, 'old.db');
    // The store as an earlier honeygate made it: the same schema, auto_vacuum NONE.
    const old = openDatabase(path);
    old.pragma('page_size = 16384');
    old.pragma('journal_mode = WAL');
    for (const step of MIGRATIONS) old.exec(step);
    old.pragma(`application_id = ${APPLICATION_ID}`);
    old.pragma(`user_version = ${MIGRATIONS.length}`);
    old.close();
    const seed = new SqliteSink(path);
    seed.write(Array.from({ length: 3000 }, (_, i) => sampleEvent({ openedAt: now - 20 * DAY + i })));
    seed.close();
    const warnings: string[] = [];
    const spy = createLogger('warn');
    spy.warn = ((_o: unknown, msg: string) => {
      warnings.push(msg);
    }) as typeof spy.warn;
    const sink = new SqliteSink(path, { retention: { maxAgeMs: 10 * DAY, maxBytes: null }, log: spy });
    try {
      assert.match(warnings.join('\n'), /created without incremental vacuum: .* does not shrink/);
      await sink.trim();
      const stats = sink.stats()!;
      assert.equal(stats.deleted['max-age'], 3000);
      assert.ok(stats.freeBytes > 0, 'the freed pages stay in the file');
      const size = stats.storeBytes;
      sink.write(Array.from({ length: 1000 }, () => sampleEvent({ openedAt: now })));
      await sink.trim();
      assert.equal(sink.stats()!.storeBytes, size, 'new events went into the freed pages');
    } finally {
      sink.close();
    }
  });
});

describe('retention metrics', () => {
  const gateway = { stats: () => ({ openFlows: 0, refused: 0, backends: [] }) as never };

  it('honeygate_events_deleted_total has both reasons from the first scrape; no store gauge without a store', async () => {
    const recorder = new Recorder([], { queueSize: 10, batchMs: 1000, log });
    const metrics = createMetrics({ gateway, recorder });
    try {
      const text = await metrics.registry.metrics();
      assert.match(text, /^honeygate_events_deleted_total\{reason="max-age"\} 0$/m);
      assert.match(text, /^honeygate_events_deleted_total\{reason="max-size"\} 0$/m);
      assert.doesNotMatch(text, /honeygate_events_store_bytes/);
    } finally {
      metrics.close();
      await recorder.close();
    }
  });
});
