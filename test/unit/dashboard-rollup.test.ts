// The dashboard's views read from the rollup answer exactly what the same views read from
// the events table (issue 17: every view fast on 10 million events, by rollups, with the
// same numbers). A seeded store with events on and around bucket edges: the first and last
// millisecond of minutes, hours and days, events after "now", long before the ranges,
// unnamed routes and actions, refusal tallies, a literal 'unknown' protocol; then the
// oldest events deleted as retention would, which leaves their counts in the rollup.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  heatmap,
  overview,
  protocolMix,
  RANGES,
  rawViews,
  refusals,
  timeline,
  topPorts,
  topSources,
  toRange,
  withStore,
} from '../../src/admin/dashboard-stats.js';
import type { FlowEvent } from '../../src/events/event.js';
import { StoreRetention } from '../../src/events/retention.js';
import { SqliteSink } from '../../src/events/sqlite.js';
import { openDatabase } from '../../src/events/sqlite-driver.js';
import { sampleEvent, tempDir } from '../helpers/events.js';

const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
// "now" for the views: a day boundary, an hour boundary, mid-minute, a minute's last ms.
const T0 = Date.UTC(2024, 4, 8);
const NOWS = [T0, T0 + 5 * HOUR, T0 + 5 * HOUR + 17 * MIN + 31_234, T0 + 13 * HOUR + 59 * MIN + 59_999];

/** A deterministic mix of events over 9 days before T0 and 14 hours after it. */
function seed(): FlowEvent[] {
  let x = 99;
  const rnd = () => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return x / 2147483648;
  };
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rnd() * xs.length)] as T;
  const out: FlowEvent[] = [];
  const times: number[] = [];
  for (let i = 0; i < 3000; i++) times.push(T0 - 9 * DAY + Math.floor(rnd() * (9 * DAY + 14 * HOUR)));
  // On the edges: each side of minute, hour and day boundaries near every "now" and range start.
  for (const now of NOWS) {
    for (const span of [DAY + 1, 7 * DAY + 1, HOUR + 1, 0]) {
      const edge = now - span;
      for (const unit of [MIN, HOUR, DAY]) {
        const b = Math.floor(edge / unit) * unit;
        times.push(b - 1, b, b + 1, b + unit - 1);
      }
      times.push(edge, edge - 1, edge + 1);
    }
  }
  for (const t of times) {
    const kind = rnd();
    const src = `198.51.100.${Math.floor(rnd() ** 2 * 40)}`;
    if (kind < 0.08) {
      out.push(
        sampleEvent({
          type: 'rejected',
          openedAt: t,
          closedAt: t + 500,
          src: { ip: kind < 0.01 ? '*' : src, port: 0 },
          route: null,
          action: 'close',
          backend: null,
          server: null,
          closeReason: pick(['limit-rate', 'limit-per-source', 'limit-global', null] as const),
          protocol: null,
          protocolFields: null,
          count: 1 + Math.floor(rnd() * 50),
        }),
      );
      continue;
    }
    const type = kind < 0.12 ? 'update' : kind < 0.13 ? 'firewall' : 'flow';
    out.push(
      sampleEvent({
        type,
        openedAt: t,
        closedAt: t + 1000,
        sensor: pick(['gw-a', 'gw-b', 'gw-c']),
        src: { ip: src, port: 40000 },
        dst: { ip: '192.0.2.1', port: pick([22, 22, 80, 443, 2222, 8080, 3389, 23, 65535, 1]) },
        route: pick(['ssh', 'web', null]),
        action: pick(['forward', 'capture', 'reject', null] as const),
        bytesIn: Math.floor(rnd() * 5000),
        closeReason: pick(['client-closed', 'idle-timeout', 'byte-cap', 'max-duration', null] as const),
        protocol: pick(['ssh', 'http', 'tls', 'unknown', null]),
        detail: type === 'firewall' ? `applied ${t}` : null,
      }),
    );
  }
  return out;
}

const VIEWS = {
  overview: (db: Parameters<typeof overview>[0], r: ReturnType<typeof toRange>) => overview(db, r),
  'timeline by action': (db: Parameters<typeof overview>[0], r: ReturnType<typeof toRange>) =>
    timeline(db, r, 'action'),
  'timeline by route': (db: Parameters<typeof overview>[0], r: ReturnType<typeof toRange>) =>
    timeline(db, r, 'route'),
  sources: (db: Parameters<typeof overview>[0], r: ReturnType<typeof toRange>) => topSources(db, r),
  ports: (db: Parameters<typeof overview>[0], r: ReturnType<typeof toRange>) => topPorts(db, r),
  heatmap: (db: Parameters<typeof overview>[0], r: ReturnType<typeof toRange>) => heatmap(db, r),
  protocols: (db: Parameters<typeof overview>[0], r: ReturnType<typeof toRange>) => protocolMix(db, r),
  refusals: (db: Parameters<typeof overview>[0], r: ReturnType<typeof toRange>) => refusals(db, r),
};

function compareAll(path: string): number {
  let compared = 0;
  for (const now of NOWS) {
    for (const name of Object.keys(RANGES)) {
      const r = toRange(name, now);
      for (const [view, fn] of Object.entries(VIEWS)) {
        const fast = withStore(path, (db) => fn(db, r));
        const raw = withStore(path, (db) => fn(rawViews(db), r));
        // As /api/stats/VIEW sends them: node:sqlite's rows have no prototype on Node 24.
        assert.deepEqual(
          JSON.parse(JSON.stringify(fast)),
          JSON.parse(JSON.stringify(raw)),
          `${view} over ${name} ending ${new Date(now).toISOString()}`,
        );
        compared++;
      }
    }
  }
  return compared;
}

describe('dashboard views from the rollup', () => {
  const tmp = tempDir();
  after(tmp.cleanup);
  const path = join(tmp.dir, 'events.db');
  const events = seed();

  it('answer as the raw queries do, written in batches as the recorder does', () => {
    const sink = new SqliteSink(path);
    for (let i = 0; i < events.length; i += 97) sink.write(events.slice(i, i + 97));
    sink.close();
    // Something to compare: the seeded ranges hold flows, refusals and firewall notes.
    const busy = withStore(path, (db) => overview(db, toRange('7d', NOWS[3]!)));
    assert.ok(busy.flows > 1000 && busy.refused > 100 && busy.firewall.length > 0, JSON.stringify(busy));
    assert.equal(compareAll(path), NOWS.length * 3 * Object.keys(VIEWS).length);
  });

  it('still answer as the raw queries do once retention deleted the oldest events', () => {
    const db = openDatabase(path);
    try {
      // As retention.ts deletes: the oldest by opened_at, here up into the 7d ranges' first day.
      const cut = NOWS[1]! - 7 * DAY + 3 * HOUR + 7 * MIN + 1234;
      db.prepare('DELETE FROM events WHERE opened_at < ?').run([cut]);
    } finally {
      db.close();
    }
    compareAll(path);
  });

  it('still answer as the raw queries do once retention trimmed the rollup too', async () => {
    const db = openDatabase(path);
    try {
      const cut = NOWS[1]! - 7 * DAY + 9 * HOUR + 31 * MIN + 4321;
      const retention = new StoreRetention(
        db,
        path,
        { maxAgeMs: 7 * DAY, maxBytes: null },
        {
          now: () => cut + 7 * DAY,
        },
      );
      await retention.run();
      retention.close();
      const oldest = Number((db.prepare('SELECT min(opened_at) AS t FROM events').get() as { t: number }).t);
      assert.ok(oldest >= cut, 'the events before the cutoff went');
      assert.ok(retention.stats().rollupDeleted > 0, 'rollup rows went');
      // No bucket that ends at or before the oldest event is left; the one holding it is.
      const stale = db
        .prepare(
          `SELECT count(*) AS n FROM rollup WHERE bucket + (CASE span WHEN 'm' THEN ${MIN} WHEN 'h' THEN ${HOUR} ELSE ${DAY} END) <= @o`,
        )
        .get({ o: oldest }) as { n: number };
      assert.equal(Number(stale.n), 0);
      const held = db
        .prepare("SELECT count(*) AS n FROM rollup WHERE span = 'd' AND dim = 'all' AND bucket <= @o")
        .get({ o: oldest }) as { n: number };
      assert.equal(Number(held.n), 1, "the oldest event's day");
    } finally {
      db.close();
    }
    compareAll(path);
  });

  it('answer as the raw queries do on a store whose rollup was counted by the migration', () => {
    const old = join(tmp.dir, 'migrated.db');
    const sink = new SqliteSink(old);
    sink.write(events);
    sink.close();
    const db = openDatabase(old);
    try {
      // What the schema step does on an older store: count the whole rollup again.
      db.exec('DELETE FROM rollup');
      db.exec('PRAGMA user_version = 6');
    } finally {
      db.close();
    }
    new SqliteSink(old).close();
    compareAll(old);
  });
});

describe('dashboard top lists from the rollup on skewed traffic', () => {
  const tmp = tempDir();
  after(tmp.cleanup);

  it('stop early at the busiest rows of each bucket and still answer as the raw queries do', () => {
    // Per 10 minutes: 14 busy ports and 60 sources that send most, and a long tail of both:
    // every bucket holds more values than the early stop reads of it.
    let x = 7;
    const rnd = () => {
      x = (x * 1103515245 + 12345) % 2147483648;
      return x / 2147483648;
    };
    const events: FlowEvent[] = [];
    for (let t = T0 - 8 * DAY; t < T0 + 14 * HOUR; t += 10 * MIN) {
      for (let i = 0; i < 60; i++) {
        const at = t + Math.floor(rnd() * 10 * MIN);
        const busy = rnd() < 0.7;
        if (rnd() < 0.2) {
          events.push(
            sampleEvent({
              type: 'rejected',
              openedAt: at,
              closedAt: at + 500,
              src: { ip: rnd() < 0.05 ? '*' : `198.51.102.${Math.floor(rnd() ** 3 * 200)}`, port: 0 },
              route: null,
              action: 'close',
              closeReason: 'limit-rate',
              protocol: null,
              count: 1 + Math.floor(rnd() * 20),
            }),
          );
          continue;
        }
        events.push(
          sampleEvent({
            openedAt: at,
            closedAt: at + 1000,
            src: {
              ip: `198.51.${busy ? 100 : 101}.${Math.floor(rnd() ** 3 * (busy ? 60 : 250))}`,
              port: 40000,
            },
            dst: {
              ip: '192.0.2.1',
              port: busy ? 1 + Math.floor(rnd() ** 2 * 14) : 1000 + Math.floor(rnd() * 5000),
            },
          }),
        );
      }
    }
    events.sort((a, b) => a.openedAt - b.openedAt);
    const path = join(tmp.dir, 'skewed.db');
    const sink = new SqliteSink(path);
    for (let i = 0; i < events.length; i += 500) sink.write(events.slice(i, i + 500));
    sink.close();
    for (const now of NOWS) {
      for (const name of Object.keys(RANGES)) {
        const r = toRange(name, now);
        for (const view of ['sources', 'ports', 'heatmap', 'refusals'] as const) {
          const fn = VIEWS[view];
          const fast = withStore(path, (db) => fn(db, r));
          const raw = withStore(path, (db) => fn(rawViews(db), r));
          assert.deepEqual(
            JSON.parse(JSON.stringify(fast)),
            JSON.parse(JSON.stringify(raw)),
            `${view} over ${name} ending ${new Date(now).toISOString()}`,
          );
        }
      }
    }
  });
});
