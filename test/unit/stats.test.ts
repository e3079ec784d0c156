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
import { DAY_MS, HOUR_MS, readStats } from '../../src/events/rollup.js';
import { APPLICATION_ID, MIGRATIONS, SqliteSink } from '../../src/events/sqlite.js';
import { openDatabase } from '../../src/events/sqlite-driver.js';
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
