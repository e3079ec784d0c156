// `honeygate stats` and the rollup behind it: the counts the sink keeps as it writes equal
// the counts of the stored events, a store from before the rollup gets it from its events
// on the next open, and the CLI prints the top lists per hour or day.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runStats } from '../../src/cli/stats.js';
import { finishJobs } from '../../src/events/backfill.js';
import type { FlowEvent } from '../../src/events/event.js';
import { openStore } from '../../src/events/query.js';
import { DAY_MS, FOLD_GRACE_MS, foldedUntil, HOUR_MS, readStats } from '../../src/events/rollup.js';
import { APPLICATION_ID, MIGRATIONS, SqliteSink } from '../../src/events/sqlite.js';
import { type Database, openDatabase } from '../../src/events/sqlite-driver.js';
import { sampleEvent, tempDir } from '../helpers/events.js';

const DAY0 = Date.UTC(2026, 11, 1);

function events(): FlowEvent[] {
  const out: FlowEvent[] = [];
  let i = 0;
  for (let day = 0; day < 3; day++) {
    for (let k = 0; k < 50; k++) {
      const src = `198.51.100.${k % (day + 3)}`;
      out.push(
        sampleEvent({
          id: (++i).toString(16).padStart(32, '0'),
          openedAt: DAY0 + day * DAY_MS + (k % 5) * HOUR_MS + k,
          src: { ip: src, port: 40000 + k },
          dst: { ip: '192.0.2.1', port: [22, 80, 443][k % 3]! },
          protocol: k % 2 ? 'ssh' : null,
          route: k % 4 ? 'r1' : null,
        }),
      );
    }
    out.push(
      sampleEvent({
        id: (++i).toString(16).padStart(32, '0'),
        type: 'rejected',
        action: 'close',
        count: 100 + day,
        openedAt: DAY0 + day * DAY_MS,
        src: { ip: '198.51.100.200', port: 0 },
        closeReason: 'limit-rate',
      }),
    );
  }
  out.push(sampleEvent({ id: 'ff'.repeat(16), type: 'update', closedAt: null, openedAt: DAY0 }));
  return out;
}

/** The stats as a GROUP BY over the events would count them. */
function expected(evs: FlowEvent[], ms: number) {
  const buckets = new Map<number, { flows: number; refused: number; src: Map<string, number> }>();
  for (const e of evs) {
    if (e.type !== 'flow' && e.type !== 'rejected') continue;
    const b = e.openedAt - (e.openedAt % ms);
    const x = buckets.get(b) ?? { flows: 0, refused: 0, src: new Map() };
    buckets.set(b, x);
    const n = e.type === 'flow' ? 1 : e.count;
    if (e.type === 'flow') x.flows++;
    else x.refused += n;
    x.src.set(e.src.ip, (x.src.get(e.src.ip) ?? 0) + n);
  }
  return buckets;
}

describe('rollup and honeygate stats', () => {
  const tmp = tempDir();
  after(tmp.cleanup);

  it('keeps per hour and per day the counts of the events, written in any batches', () => {
    const path = join(tmp.dir, 'live.db');
    const sink = new SqliteSink(path);
    const evs = events();
    for (let i = 0; i < evs.length; i += 7) sink.write(evs.slice(i, i + 7));
    sink.close();
    const db = openStore(path);
    try {
      for (const [by, ms] of [
        ['day', DAY_MS],
        ['hour', HOUR_MS],
      ] as const) {
        const got = readStats(db, { by, since: DAY0, until: DAY0 + 3 * DAY_MS, top: 100 });
        const want = expected(evs, ms);
        assert.deepEqual(
          got.map((b) => b.start),
          [...want.keys()].sort((a, b) => a - b),
        );
        for (const b of got) {
          const w = want.get(b.start)!;
          assert.equal(b.flows, w.flows, `${by} ${b.start}`);
          assert.equal(b.refused, w.refused);
          assert.deepEqual(
            new Map(b.sources.map((s) => [s.value, s.flows + s.refused])),
            w.src,
            `${by} ${b.start} sources`,
          );
        }
      }
      const [first] = readStats(db, { by: 'day', since: DAY0, until: DAY0, top: 2 });
      assert.equal(first!.sources.length, 2, '--top');
      assert.deepEqual(first!.sources[0], { value: '198.51.100.200', flows: 0, refused: 100 });
      assert.deepEqual(
        first!.ports.map((p) => p.value),
        [80, 22], // 17 each: a tie goes to the higher value (the index's order)
      );
      assert.deepEqual(
        first!.protocols.map((p) => [p.value, p.flows]),
        [
          ['ssh', 25],
          ['-', 25],
        ],
      );
    } finally {
      db.close();
    }
  });

  it('fills the rollup of a store written before it from its events (migration)', async () => {
    const path = join(tmp.dir, 'old.db');
    const old = openDatabase(path);
    old.pragma('page_size = 16384');
    old.pragma('journal_mode = WAL');
    old.exec(MIGRATIONS[0]!);
    old.exec(MIGRATIONS[1]!);
    old.pragma(`application_id = ${APPLICATION_ID}`);
    old.pragma('user_version = 2');
    old.close();
    // rows as the earlier honeygate wrote them: straight into events
    const evs = events();
    const writer = new SqliteSink(join(tmp.dir, 'scratch.db'));
    writer.close();
    const db = openDatabase(path);
    const cols =
      'id, type, opened_at, sensor, listener, src_ip, src_port, dst_ip, dst_port, route, protocol, bytes_in, bytes_out, duration_ms, first_bytes, count';
    const ins = db.prepare(
      `INSERT INTO events (${cols}) VALUES (${cols
        .split(', ')
        .map(() => '?')
        .join(', ')})`,
    );
    for (const e of evs)
      ins.run([
        e.id,
        e.type,
        e.openedAt,
        e.sensor,
        e.listener,
        e.src.ip,
        e.src.port,
        e.dst.ip,
        e.dst.port,
        e.route,
        e.protocol,
        0,
        0,
        0,
        Buffer.alloc(0),
        e.count,
      ]);
    db.close();

    new SqliteSink(path).close(); // opening it migrates; its events are counted by a job
    let out = '';
    let err = '';
    const io = {
      out: (s: string) => {
        out += s;
      },
      err: (s: string) => {
        err += s;
      },
    };
    assert.equal(await runStats({ db: path }, io), 1, out);
    assert.match(err, /still counting its earlier events into the rollup/);
    const rw = openDatabase(path);
    finishJobs(rw); // as the sink does in steps after its start
    rw.close();
    const store = openStore(path);
    try {
      const got = readStats(store, { by: 'day', since: DAY0, until: DAY0 + 3 * DAY_MS, top: 100 });
      const want = expected(evs, DAY_MS);
      assert.equal(got.length, 3);
      for (const b of got) {
        assert.equal(b.flows, want.get(b.start)!.flows);
        assert.equal(b.refused, want.get(b.start)!.refused);
      }
      assert.equal(store.pragma('user_version'), MIGRATIONS.length);
    } finally {
      store.close();
    }
  });

  it('prints each day with its top lists, as JSON too; refuses a bad --by', async () => {
    const path = join(tmp.dir, 'cli.db');
    const sink = new SqliteSink(path);
    sink.write(events());
    sink.close();
    const run = async (args: Record<string, unknown>) => {
      let out = '';
      let err = '';
      const code = await runStats(
        { db: path, ...args },
        { out: (t) => (out += t), err: (t) => (err += t) },
        DAY0 + 3 * DAY_MS,
      );
      return { code, out, err };
    };
    const text = await run({});
    assert.equal(text.code, 0, text.err);
    assert.match(text.out, /^2026-12-01 {2}50 flows, 100 refused$/m);
    assert.match(
      text.out,
      /^ {2}sources {3}198\.51\.100\.200 0\+100 refused {2}198\.51\.100\.1 17 {2}198\.51\.100\.0 17/m,
    );
    assert.match(text.out, /^ {2}ports {5}80 17 {2}22 17 {2}443 16$/m);
    assert.match(text.out, /^ {2}routes {4}r1 37 {2}- 13$/m);
    const json = await run({
      json: true,
      by: 'hour',
      since: '2026-12-02T00:00:00Z',
      until: '2026-12-02T01:30:00Z',
    });
    const lines = json.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      lines.map((l) => l.start),
      ['2026-12-02T00:00:00.000Z', '2026-12-02T01:00:00.000Z'],
    );
    const bad = await run({ by: 'week' });
    assert.equal(bad.code, 2);
    assert.match(bad.err, /--by: "week" is not one of hour, day/);
    const none = await run({ by: 'hour', since: '1h' });
    assert.equal(none.code, 0);
    assert.match(none.err, /no flows since/);
  });
});

/**
 * Flows from 40 sources (a few busy, many once) from 21:00 to 03:00 across a day boundary,
 * in time order but for a late flow every 9th (opened two hours before its neighbours, as a
 * long flow is stored when it closes), and a refusal tally every 50th.
 */
function nightEvents(day: number): FlowEvent[] {
  const out: FlowEvent[] = [];
  const start = day - 3 * HOUR_MS;
  for (let i = 0; i < 720; i++) {
    let at = start + i * 30_000 + (i % 7);
    if (i % 9 === 8) at -= 2 * HOUR_MS;
    const busy = i % 3 === 0;
    out.push(
      sampleEvent({
        id: `night-${day}-${i}`,
        openedAt: at,
        src: { ip: `198.51.100.${busy ? i % 4 : 10 + (i % 37)}`, port: 40000 + (i % 1000) },
        ...(i % 50 === 49
          ? { type: 'rejected' as const, action: 'close', count: 5, closeReason: 'limit-rate' }
          : {}),
      }),
    );
  }
  return out;
}

/** Every day's and hour's sources as readStats has them (all of them), and the day rows' hour mark. */
function sourcesOf(path: string) {
  const db = openStore(path);
  try {
    const of = (by: 'day' | 'hour') =>
      new Map(
        readStats(db, { by, since: 0, until: Date.UTC(2030, 0, 1), top: 1000 }).map((b) => [
          b.start,
          new Map(b.sources.map((x) => [x.value, x.flows + x.refused])),
        ]),
      );
    return { day: of('day'), hour: of('hour'), folded: foldedUntil(db as unknown as Database) };
  } finally {
    db.close();
  }
}

/** The sources per bucket as a GROUP BY over the events would count them. */
function wantSources(evs: FlowEvent[], ms: number) {
  return new Map([...expected(evs, ms)].sort((a, b) => a[0] - b[0]).map(([b, x]) => [b, x.src]));
}

/** The stored daily source rows of the days whose hours are all in them, against the events. */
function assertWholeDays(path: string, evs: FlowEvent[]) {
  const db = openStore(path);
  try {
    const folded = foldedUntil(db as unknown as Database);
    const rows = new Map<number, Map<unknown, number>>();
    for (const r of db
      .prepare("SELECT bucket, value, flows + refused AS n FROM rollup WHERE span = 'd' AND dim = 'src'")
      .iterate()) {
      const day = Number(r.bucket);
      if (day + DAY_MS > folded) continue;
      if (!rows.has(day)) rows.set(day, new Map());
      rows.get(day)!.set(r.value, Number(r.n));
    }
    const want = [...wantSources(evs, DAY_MS)].filter(([day]) => day + DAY_MS <= folded);
    assert.deepEqual(
      [...rows].sort((a, b) => a[0] - b[0]),
      want,
    );
    return want.length;
  } finally {
    db.close();
  }
}

describe('the daily source rows, summed from the hours', () => {
  const tmp = tempDir();
  after(tmp.cleanup);
  const DAY1 = DAY0 + 4 * DAY_MS;

  it('count every source of a day as the events do, hour and day boundaries crossed, restarted mid-day', () => {
    const path = join(tmp.dir, 'fold.db');
    const evs = nightEvents(DAY1);
    let sink = new SqliteSink(path);
    const marks = new Set<number>();
    for (let i = 0; i < evs.length; i += 13) {
      sink.write(evs.slice(i, i + 13));
      if (i === 13 * 30) {
        sink.close(); // a restart mid-hour, 22:00-ish, and again after midnight
        sink = new SqliteSink(path);
      }
      if (i === 13 * 45) {
        sink.close();
        sink = new SqliteSink(path);
      }
      if (i % 65 === 0 || i + 13 >= evs.length) {
        const got = sourcesOf(path);
        const written = evs.slice(0, i + 13);
        assert.deepEqual(got.day, wantSources(written, DAY_MS), `by day after ${i + 13}`);
        assert.deepEqual(got.hour, wantSources(written, HOUR_MS), `by hour after ${i + 13}`);
        marks.add(got.folded);
      }
    }
    sink.close();
    // The hours were summed as they ended (10 minutes on), not all at the end.
    const folded = sourcesOf(path).folded;
    assert.equal(folded, DAY1 + 2 * HOUR_MS, 'the hours up to 02:00 summed (the last event is at 02:59)');
    assert.ok(marks.size >= 4, `${[...marks].map((m) => new Date(m).toISOString())}`);
    assert.ok(Math.max(...evs.map((e) => e.openedAt)) - FOLD_GRACE_MS < folded + HOUR_MS);
    // Once a later event ends the night, both days are whole in their day rows.
    const late = sampleEvent({
      id: 'night-late',
      openedAt: DAY1 + DAY_MS + HOUR_MS,
      src: { ip: '198.51.100.1', port: 1 },
    });
    sink = new SqliteSink(path);
    sink.write([late]);
    sink.close();
    assert.equal(assertWholeDays(path, [...evs, late]), 2);
    assert.deepEqual(sourcesOf(path).day, wantSources([...evs, late], DAY_MS));
  });

  it('keep the daily source rows of a store from before them, counting nothing twice', () => {
    const path = join(tmp.dir, 'old-days.db');
    const evs = nightEvents(DAY1);
    const half = 400; // up to 00:20 and some of the day before's late flows
    const seed = new SqliteSink(path);
    for (let i = 0; i < half; i += 13) seed.write(evs.slice(i, Math.min(half, i + 13)));
    seed.close();
    // As the earlier honeygate left it: every event in its day's source row, no hour mark.
    const db = openDatabase(path);
    try {
      db.exec(`DROP TABLE rollup_folded;
        DELETE FROM rollup WHERE span = 'd' AND dim = 'src';
        INSERT INTO rollup (span, dim, bucket, value, flows, refused)
          SELECT 'd', 'src', opened_at - opened_at % ${DAY_MS}, src_ip,
                 sum(CASE WHEN type = 'flow' THEN 1 ELSE 0 END), sum(CASE WHEN type = 'rejected' THEN count ELSE 0 END)
          FROM events WHERE type IN ('flow', 'rejected') GROUP BY 3, 4;`);
      db.pragma(`user_version = ${MIGRATIONS.length - 1}`);
    } finally {
      db.close();
    }
    const sink = new SqliteSink(path);
    assert.equal(sourcesOf(path).folded, DAY1 + HOUR_MS, 'past the newest stored event');
    for (let i = half; i < evs.length; i += 13) sink.write(evs.slice(i, Math.min(evs.length, i + 13)));
    const late = sampleEvent({
      id: 'old-late',
      openedAt: DAY1 + DAY_MS + HOUR_MS,
      src: { ip: '198.51.100.1', port: 1 },
    });
    assert.deepEqual(sourcesOf(path).day, wantSources(evs, DAY_MS));
    sink.write([late]);
    sink.close();
    assert.equal(assertWholeDays(path, [...evs, late]), 2);
    assert.deepEqual(sourcesOf(path).hour, wantSources([...evs, late], HOUR_MS));
  });
  it('sum no hour early for a flow dated in the future, nor lose one that retention trims first', async () => {
    // A sensor's clock a year ahead: the hours are over by the store's clock, not by that flow.
    const future = join(tmp.dir, 'future.db');
    const now = Date.now();
    let sink = new SqliteSink(future);
    sink.write([sampleEvent({ id: 'f-now', openedAt: now - 3 * HOUR_MS })]);
    sink.write([sampleEvent({ id: 'f-far', openedAt: now + 365 * DAY_MS })]);
    sink.close();
    const at = now - FOLD_GRACE_MS;
    assert.ok(sourcesOf(future).folded <= at - (at % HOUR_MS) + HOUR_MS, 'not past the clock');
    // Retention deletes an hour's events before the hour is summed: its hourly source rows
    // stay for its day (whose flows still count them), and are summed there later.
    const path = join(tmp.dir, 'trimmed.db');
    const h0 = DAY1 + 5 * HOUR_MS;
    const evs = [0, 1, 2, 3, 60, 61].map((m) =>
      sampleEvent({ id: `t-${m}`, openedAt: h0 + m * 60_000, src: { ip: `198.51.100.${m}`, port: 1 } }),
    );
    sink = new SqliteSink(path, { retention: { maxAgeMs: 10_000 * DAY_MS, maxBytes: null } });
    sink.write(evs);
    assert.equal(sourcesOf(path).folded, h0, 'nothing summed yet');
    const db = openDatabase(path);
    db.prepare('DELETE FROM events WHERE opened_at < ?').run([h0 + HOUR_MS]);
    db.close();
    await sink.trim(); // the rollup's buckets that end before the oldest event go
    const next = sampleEvent({
      id: 't-next',
      openedAt: h0 + 3 * HOUR_MS,
      src: { ip: '198.51.100.9', port: 1 },
    });
    sink.write([next]);
    sink.close();
    const day = sourcesOf(path).day.get(DAY1)!;
    assert.deepEqual(day, wantSources([...evs, next], DAY_MS).get(DAY1));
  });
});
