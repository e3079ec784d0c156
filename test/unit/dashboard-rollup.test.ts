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
  runView,
  timeline,
  topPorts,
  topSources,
  toRange,
  warmTopLists,
  withStore,
} from '../../src/admin/dashboard-stats.js';
import { createViewRunner } from '../../src/admin/dashboard-worker.js';
import { Backfill, pendingJobs } from '../../src/events/backfill.js';
import type { FlowEvent } from '../../src/events/event.js';
import { STANDARD_ERROR } from '../../src/events/hll.js';
import { StoreRetention } from '../../src/events/retention.js';
import { foldedUntil } from '../../src/events/rollup.js';
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

/**
 * `fast` with each distinct count it marks as an estimate (sourcesEstimated) replaced by the
 * raw answer's exact one, after checking it is within 4 standard errors of it (1 in 15,000
 * misses by chance); the rest must be equal as they are.
 */
function withinError(fast: unknown, raw: unknown): unknown {
  if (Array.isArray(fast) && Array.isArray(raw)) return fast.map((x, i) => withinError(x, raw[i]));
  if (!fast || typeof fast !== 'object' || !raw || typeof raw !== 'object') return fast;
  const f = fast as Record<string, unknown>;
  const r = raw as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(f)) out[k] = withinError(v, r[k]);
  if (f.sourcesEstimated === true && typeof r.sources === 'number') {
    const err = Math.abs(Number(f.sources) - r.sources) / r.sources;
    assert.ok(err <= 4 * STANDARD_ERROR, `estimate ${String(f.sources)} against ${r.sources}: ${err}`);
    out.sources = r.sources;
    out.sourcesEstimated = false;
  }
  return out;
}

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
          withinError(JSON.parse(JSON.stringify(fast)), JSON.parse(JSON.stringify(raw))),
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

  it("answer as the raw queries do while a day's last hour is not yet in its source rows", () => {
    // Stopped 5 minutes after midnight: the hours from 23:00 on are in the hourly rows only.
    const open = join(tmp.dir, 'open-day.db');
    const sink = new SqliteSink(open);
    const early = events.filter((e) => e.openedAt < T0 + 5 * MIN).sort((a, b) => a.openedAt - b.openedAt);
    for (let i = 0; i < early.length; i += 97) sink.write(early.slice(i, i + 97));
    sink.close();
    assert.equal(withStore(open, foldedUntil), T0 - HOUR);
    compareAll(open);
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

  it('answer as the raw queries do on a store upgraded while running, before and after its backfill', () => {
    const old = join(tmp.dir, 'migrated.db');
    const sink = new SqliteSink(old);
    sink.write(events.slice(0, 2000));
    sink.close();
    const db = openDatabase(old);
    try {
      // A store of schema 6: no view rows in the rollup, no sketches.
      db.exec('DELETE FROM rollup; DROP TABLE rollup_sketch; DROP TABLE backfill; DROP TABLE rollup_folded;');
      db.exec('PRAGMA user_version = 6');
    } finally {
      db.close();
    }
    // The upgrade counts nothing itself: two jobs, and the sink records on meanwhile.
    const upgraded = new SqliteSink(old);
    assert.deepEqual(withStore(old, pendingJobs).sort(), ['rollup', 'sketch']);
    upgraded.write(events.slice(2000));
    upgraded.close();
    // The views read the events until the jobs are done.
    compareAll(old);
    const rw = openDatabase(old);
    try {
      const job = new Backfill(rw, old);
      let steps = 0;
      while (job.step()) steps++;
      assert.ok(steps >= 2, `${steps} steps`);
      assert.deepEqual(pendingJobs(rw), []);
    } finally {
      rw.close();
    }
    compareAll(old);
    // The counts the jobs and the sink made are those of a store that counted each batch.
    const rows = (p: string) =>
      withStore(p, (d) => [
        ...d
          .prepare('SELECT span, dim, bucket, value, flows, refused FROM rollup ORDER BY 1, 2, 3, 4')
          .iterate(),
        ...d
          .prepare('SELECT span, dim, bucket, value, sketch FROM rollup_sketch ORDER BY 1, 2, 3, 4')
          .iterate(),
      ]);
    const fresh = join(tmp.dir, 'fresh.db');
    const again = new SqliteSink(fresh);
    for (let i = 0; i < events.length; i += 97) again.write(events.slice(i, i + 97));
    again.close();
    const a = rows(old);
    const b = rows(fresh);
    assert.equal(a.length, b.length);
    // Sketches hold the same hashes, perhaps in another order: compare their counts.
    const norm = (xs: Record<string, unknown>[]) =>
      xs.map((x) => (x.sketch ? { ...x, sketch: Buffer.from(x.sketch as Uint8Array).length } : x));
    assert.deepEqual(JSON.parse(JSON.stringify(norm(a))), JSON.parse(JSON.stringify(norm(b))));
  });

  it('estimate the distinct sources of many within the stated error', () => {
    const many = join(tmp.dir, 'many.db');
    const sink = new SqliteSink(many);
    const batch: FlowEvent[] = [];
    // 30,000 sources over the last two days of T0, every one once and 2,000 of them often.
    for (let i = 0; i < 36_000; i++) {
      const n = i < 30_000 ? i : i % 2000;
      batch.push(
        sampleEvent({
          openedAt: T0 - 2 * DAY + i * 4_000,
          closedAt: T0 - 2 * DAY + i * 4_000 + 10,
          src: { ip: `10.${n >> 16}.${(n >> 8) & 255}.${n & 255}`, port: 1 },
          dst: { ip: '192.0.2.1', port: 22 + (i % 3) },
        }),
      );
    }
    for (let i = 0; i < batch.length; i += 1000) sink.write(batch.slice(i, i + 1000));
    sink.close();
    const r = toRange('7d', T0 + 5 * HOUR);
    const fast = withStore(many, (db) => overview(db, r));
    assert.equal(fast.sourcesEstimated, true);
    assert.ok(Math.abs(fast.sources - 30_000) / 30_000 <= 4 * STANDARD_ERROR, String(fast.sources));
    const ports = withStore(many, (db) => topPorts(db, r));
    assert.ok(ports.every((p) => p.sourcesEstimated));
    compareAll(many);
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

describe('dashboard top lists kept between calls', () => {
  const tmp = tempDir();
  after(tmp.cleanup);
  // A store of seed(), written in batches as the recorder does.
  const seededStore = (name: string): string => {
    const path = join(tmp.dir, name);
    const sink = new SqliteSink(path);
    const events = seed();
    for (let i = 0; i < events.length; i += 97) sink.write(events.slice(i, i + 97));
    sink.close();
    return path;
  };

  it('see late events in buckets they already read', () => {
    const path = seededStore('late.db');
    const now = NOWS[2]!;
    const same = (view: 'sources' | 'ports' | 'heatmap', name: string) => {
      const r = toRange(name, now);
      const fast = withStore(path, (db) => VIEWS[view](db, r));
      const raw = withStore(path, (db) => VIEWS[view](rawViews(db), r));
      assert.deepEqual(
        JSON.parse(JSON.stringify(fast)),
        JSON.parse(JSON.stringify(raw)),
        `${view} over ${name}`,
      );
      return fast;
    };
    for (const name of ['24h', '7d'])
      for (const view of ['sources', 'ports', 'heatmap'] as const) same(view, name);
    const before = same('sources', '7d') as { ip: string; ports: number[]; protocols: string[] }[];
    const ip = before[0]!.ip;
    // A sensor catching up: flows of minutes, hours and days the views read already, from the top
    // source to a new port in a new protocol, and many to another new port.
    const late: FlowEvent[] = [];
    for (const back of [2 * MIN, 3 * HOUR, 2 * DAY + 5 * HOUR, 6 * DAY]) {
      const at = now - back;
      late.push(
        sampleEvent({
          openedAt: at,
          closedAt: at + 10,
          src: { ip, port: 1 },
          dst: { ip: '192.0.2.1', port: 6 },
          protocol: 'smtp',
        }),
      );
      for (let i = 0; i < 300; i++) {
        late.push(
          sampleEvent({
            openedAt: at + i,
            closedAt: at + i + 10,
            // A source new to the minute the views read last (the range's last partial hour).
            src: { ip: back === 2 * MIN ? '203.0.113.8' : '203.0.113.9', port: 1 },
            dst: { ip: '192.0.2.1', port: 4444 },
          }),
        );
      }
    }
    const again = new SqliteSink(path);
    again.write(late);
    again.close();
    for (const name of ['24h', '7d'])
      for (const view of ['sources', 'ports', 'heatmap'] as const) same(view, name);
    const ports = same('ports', '7d') as { port: number }[];
    assert.ok(
      ports.some((p) => p.port === 4444),
      'the late port is counted',
    );
    const mine = (same('sources', '7d') as { ip: string; ports: number[]; protocols: string[] }[]).find(
      (s) => s.ip === ip,
    );
    assert.ok(mine?.ports.includes(6) && mine.protocols.includes('smtp'), JSON.stringify(mine));
    const sources = same('sources', '24h') as { ip: string }[];
    assert.ok(
      sources.some((s) => s.ip === '203.0.113.8'),
      'the late source of a minute read before',
    );
  });

  it('read ahead in steps what the day and week need, then answer as the raw queries do', () => {
    const path = seededStore('warm.db');
    const now = NOWS[3]!;
    const steps = withStore(path, (db) => {
      let n = 0;
      for (const _ of warmTopLists(db, now)) n++;
      return n;
    });
    // A step per bucket read: a day of ports, an hour of one source, ...
    assert.ok(steps > 50, `${steps} steps`);
    for (const name of ['24h', '7d']) {
      const r = toRange(name, now);
      for (const view of ['sources', 'ports', 'heatmap'] as const) {
        const fast = withStore(path, (db) => VIEWS[view](db, r));
        const raw = withStore(path, (db) => VIEWS[view](rawViews(db), r));
        assert.deepEqual(
          JSON.parse(JSON.stringify(fast)),
          JSON.parse(JSON.stringify(raw)),
          `${view} over ${name}`,
        );
      }
    }
  });

  it("answer through the views' worker while it reads ahead between requests", async () => {
    const path = seededStore('worker.db');
    const runner = createViewRunner();
    try {
      const now = NOWS[1]!;
      // The first answer starts the read-ahead; the rest come while it runs, or after.
      for (const [view, range] of [
        ['sources', '7d'],
        ['ports', '24h'],
        ['sources', '24h'],
        ['heatmap', '7d'],
        ['ports', '7d'],
        ['sources', '7d'],
      ] as const) {
        const req = { view, range, by: null, now };
        const got = await runner.run(path, req);
        assert.deepEqual(
          JSON.parse(JSON.stringify(got)),
          JSON.parse(JSON.stringify(runView(path, req))),
          `${view} over ${range}`,
        );
      }
    } finally {
      runner.close();
    }
  });
});
