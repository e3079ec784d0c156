// Counts per hour and per day of flows by source, destination port, protocol and route,
// kept by the SQLite sink in the transaction that inserts the events (so they never
// disagree), and read by `honeygate stats`. A store of 10 million events answers "the top
// sources of each day" from a few thousand rows instead of a scan of every event.
//
// A source's daily row is not counted per event but summed from its hourly rows once the
// hour is over (foldSteps); a reader of a day not yet whole adds its later hours (foldedUntil).
//
// Buckets are UTC hours and days (start, epoch ms). A `rejected` tally counts its refused
// flows under its source and the bucket's total; ports, protocols and routes count the
// flows that were admitted (a tally's ports are a set, not one port).
import type { FlowEvent } from './event.js';
import { hash32, Sketch } from './hll.js';
import type { Database } from './sqlite-driver.js';

export const MINUTE_MS = 60_000;
export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;
export type Span = 'm' | 'h' | 'd';
export type Dim =
  | 'all'
  | 'src'
  | 'port'
  | 'protocol'
  | 'route'
  | 'action'
  | 'close'
  | 'reason'
  | 'sensor'
  | 'bytes'
  | 'rsrc';
export const DIMS: readonly Dim[] = ['src', 'port', 'protocol', 'route'];
export const SPAN_MS: Readonly<Record<Span, number>> = { m: MINUTE_MS, h: HOUR_MS, d: DAY_MS };

/**
 * The spans each dimension is counted in. The first schema step (ROLLUP_SCHEMA) counted
 * all, src, port, protocol and route per hour and day for `honeygate stats`; the second
 * (ROLLUP_VIEWS_SCHEMA) adds the dashboard's (src/admin/dashboard-stats.ts): per minute
 * too, so a view's range is whole minutes of the rollup plus its last partial minute, and
 * the dimensions its views group by. Sources stay hourly: per minute they would be nearly
 * a row per flow. Null values are '-' (action, close, reason: none of them is ever '-'; a
 * route name cannot be). `bytes` is one row per bucket whose `flows` holds the sum of the
 * flows' bytes_in.
 */
export const DIM_SPANS: Readonly<Record<Dim, readonly Span[]>> = {
  all: ['m', 'h', 'd'],
  src: ['h', 'd'],
  port: ['m', 'h', 'd'],
  protocol: ['m', 'h', 'd'],
  route: ['m', 'h', 'd'],
  action: ['m', 'h', 'd'], // flows
  close: ['m', 'h', 'd'], // flows by close_reason
  reason: ['m', 'h', 'd'], // refused by the tally's close_reason (limit-rate, ...)
  sensor: ['m', 'h', 'd'], // flows
  bytes: ['m', 'h', 'd'],
  rsrc: ['h', 'd'], // refused by the tally's source (the refusals view's top sources)
};

/** Schema step (sqlite.ts MIGRATIONS): the table, its top-N index, and the counts of the events already stored. */
export const ROLLUP_SCHEMA = `CREATE TABLE rollup (
     span TEXT NOT NULL,
     dim TEXT NOT NULL,
     bucket INTEGER NOT NULL,
     value NOT NULL, -- no type: text (sources, names) or integer (ports), kept as given
     flows INTEGER NOT NULL,
     refused INTEGER NOT NULL,
     PRIMARY KEY (span, dim, bucket, value)
   ) WITHOUT ROWID;
   CREATE INDEX rollup_top ON rollup (span, dim, bucket, flows + refused);
   ${backfill()}`;

/**
 * Schema step (sqlite.ts MIGRATIONS): the dashboard's minute rows and dimensions
 * (DIM_SPANS). The whole rollup is counted again from the stored events: a fleet's central
 * store had none kept before (the collector inserted events only).
 */
export const ROLLUP_VIEWS_SCHEMA = `DELETE FROM rollup;
   ${backfill()}
   ${viewsBackfill()}`;

/**
 * Schema step (sqlite.ts MIGRATIONS): the refused flows per tally source, hourly and daily,
 * from the stored tallies (a few in a hundred events: through the (type, opened_at) index).
 */
export const ROLLUP_REFUSED_SCHEMA = ['h', 'd']
  .map(
    (span) => `INSERT INTO rollup (span, dim, bucket, value, flows, refused)
     SELECT '${span}', 'rsrc', opened_at - opened_at % ${SPAN_MS[span as Span]}, src_ip, 0, sum(count)
     FROM events WHERE type = 'rejected' GROUP BY 3, 4;`,
  )
  .join('\n   ');

/** The counts of the stored events, per statement (the backfill job's ROLLUP_CHUNK). */
const COUNT_STORED = `${backfill()}
   ${viewsBackfill()}
   ${ROLLUP_REFUSED_SCHEMA}`;

/**
 * The hour from which the hourly source rows are not yet summed into the daily ones
 * (foldSteps): past every stored event and every hour counted, whose daily rows hold them.
 */
const FOLD_STORED = `INSERT OR REPLACE INTO rollup_folded (dim, until)
     SELECT 'src', max(coalesce((SELECT until FROM rollup_folded WHERE dim = 'src'), 0), m - m % ${HOUR_MS} + ${HOUR_MS})
     FROM (SELECT max(coalesce((SELECT max(bucket) FROM rollup WHERE span = 'h' AND dim = 'src'), 0),
                      coalesce((SELECT max(opened_at) FROM events), 0)) AS m);`;

/**
 * Schema step (sqlite.ts MIGRATIONS): the daily source rows are no longer upserted per
 * event but summed from the hourly ones once an hour is over (foldSteps; about 4 µs of CPU
 * per stored event from 10,000 sources). The hours already stored are in their days.
 */
export const ROLLUP_FOLD_SCHEMA = `CREATE TABLE rollup_folded (
     dim TEXT PRIMARY KEY,
     until INTEGER NOT NULL -- an hour: the ones before it are in the daily rows, the rest only in the hourly
   ) WITHOUT ROWID;
   ${FOLD_STORED}`;

/** The counts of every stored event, into an empty rollup (a bulk load: test/helpers/store.ts). */
export const ROLLUP_BACKFILL = `${COUNT_STORED}
   ${FOLD_STORED}`;

// What ROLLUP_SCHEMA's backfill() leaves out: its dimensions per minute, and the new ones.
function viewsBackfill(): string {
  const ins = (span: Span, dim: Dim, value: string, flows: string, refused: string, where: string) =>
    `INSERT INTO rollup (span, dim, bucket, value, flows, refused)
     SELECT '${span}', '${dim}', opened_at - opened_at % ${SPAN_MS[span]}, ${value}, ${flows}, ${refused}
     FROM events WHERE ${where} GROUP BY 3, 4;`;
  const isFlow = "sum(CASE WHEN type = 'flow' THEN 1 ELSE 0 END)";
  const isRefused = "sum(CASE WHEN type = 'rejected' THEN count ELSE 0 END)";
  const both = "type IN ('flow', 'rejected')";
  const out = [
    ins('m', 'all', "''", isFlow, isRefused, both),
    ins('m', 'port', 'dst_port', 'count(*)', '0', "type = 'flow'"),
    ins('m', 'protocol', "coalesce(protocol, '-')", 'count(*)', '0', "type = 'flow'"),
    ins('m', 'route', "coalesce(route, '-')", 'count(*)', '0', "type = 'flow'"),
  ];
  for (const span of ['m', 'h', 'd'] as const) {
    out.push(ins(span, 'action', "coalesce(action, '-')", 'count(*)', '0', "type = 'flow'"));
    out.push(ins(span, 'close', "coalesce(close_reason, '-')", 'count(*)', '0', "type = 'flow'"));
    out.push(ins(span, 'reason', "coalesce(close_reason, '-')", '0', 'sum(count)', "type = 'rejected'"));
    out.push(ins(span, 'sensor', 'sensor', 'count(*)', '0', "type = 'flow'"));
    out.push(ins(span, 'bytes', "''", 'sum(bytes_in)', '0', "type = 'flow'"));
  }
  return out.join('\n   ');
}

function backfill(): string {
  const sel = (span: Span, ms: number, dim: Dim, value: string, where: string) =>
    `INSERT INTO rollup (span, dim, bucket, value, flows, refused)
     SELECT '${span}', '${dim}', opened_at - opened_at % ${ms}, ${value},
            sum(CASE WHEN type = 'flow' THEN 1 ELSE 0 END),
            sum(CASE WHEN type = 'rejected' THEN count ELSE 0 END)
     FROM events WHERE ${where} GROUP BY 3, 4;`;
  const out: string[] = [];
  for (const [span, ms] of [
    ['h', HOUR_MS],
    ['d', DAY_MS],
  ] as const) {
    out.push(sel(span, ms, 'all', "''", "type IN ('flow', 'rejected')"));
    out.push(sel(span, ms, 'src', 'src_ip', "type IN ('flow', 'rejected')"));
    out.push(sel(span, ms, 'port', 'dst_port', "type = 'flow'"));
    out.push(sel(span, ms, 'protocol', "coalesce(protocol, '-')", "type = 'flow'"));
    out.push(sel(span, ms, 'route', "coalesce(route, '-')", "type = 'flow'"));
  }
  return out.join('\n   ');
}

/**
 * Schema step (sqlite.ts MIGRATIONS): the distinct sources per bucket, as HyperLogLog
 * sketches (hll.ts): of all flows (dim 'all', value '') and of each destination port. The
 * events already stored are counted by a backfill job (backfill.ts), not in the step.
 */
export const ROLLUP_SKETCH_SCHEMA = `CREATE TABLE rollup_sketch (
     span TEXT NOT NULL,
     dim TEXT NOT NULL,
     bucket INTEGER NOT NULL,
     value NOT NULL,
     sketch BLOB NOT NULL,
     PRIMARY KEY (span, dim, bucket, value)
   ) WITHOUT ROWID;`;

/** The spans each sketch dimension is kept in (the distinct sources of flows). */
export const SKETCH_SPANS: Readonly<Record<'all' | 'port', readonly Span[]>> = {
  all: ['m', 'h', 'd'],
  port: ['m', 'h', 'd'],
};

type SketchKey = [Span, 'all' | 'port', number, string | number];

/** The hashes a batch's flows add to each sketch row. */
function sketchAdds(
  rows: Iterable<{ at: number; src: string; port: number }>,
): Map<string, [SketchKey, number[]]> {
  const out = new Map<string, [SketchKey, number[]]>();
  const buckets = bucketKeys();
  for (const r of rows) {
    const h = hash32(r.src);
    for (let s = 0; s < SPANS.length; s++) {
      const [span, ms] = SPANS[s]!;
      const bucket = r.at - (r.at % ms);
      const pre = buckets(s, bucket);
      const all = out.get(pre);
      if (all) all[1].push(h);
      else out.set(pre, [[span, 'all', bucket, ''], [h]]);
      const k = `${pre}${r.port}`;
      const port = out.get(k);
      if (port) port[1].push(h);
      else out.set(k, [[span, 'port', bucket, r.port], [h]]);
    }
  }
  return out;
}

/** Merges the hashes of `adds` into the stored sketches: read, merge, write back. */
function sketchMerger(db: Database): (adds: Map<string, [SketchKey, number[]]>) => void {
  const steps = sketchSteps(db);
  return (adds) => {
    for (const _ of steps(adds));
  };
}

/** sketchMerger, one sketch row per step. */
function sketchSteps(db: Database): (adds: Map<string, [SketchKey, number[]]>) => Generator<void> {
  const where = 'WHERE span = ? AND dim = ? AND bucket = ? AND value = ?';
  const get = db.prepare(`SELECT sketch FROM rollup_sketch ${where}`);
  const insert = db.prepare(
    'INSERT INTO rollup_sketch (span, dim, bucket, value, sketch) VALUES (?, ?, ?, ?, ?)',
  );
  const update = db.prepare(`UPDATE rollup_sketch SET sketch = ? ${where}`);
  return function* (adds) {
    for (const [key, hashes] of adds.values()) {
      const [span, dim, bucket, value] = key;
      const blob = get.get(key)?.sketch as Uint8Array | undefined;
      const s = Sketch.from(blob);
      let changed = false;
      for (const h of hashes) if (s.add(h)) changed = true;
      // A batch of sources already counted changes nothing: no write (most of a busy minute's).
      if (!blob) insert.run([span, dim, bucket, value, s.toBlob()]);
      else if (changed) update.run([s.toBlob(), span, dim, bucket, value]);
      yield;
    }
  };
}

/** The flows of `events` as the sketches count them (values as the stored row has them). */
function* sketchRows(events: readonly FlowEvent[]): Generator<{ at: number; src: string; port: number }> {
  for (const e of events) {
    if (e.type !== 'flow') continue;
    const at = typeof e.openedAt === 'number' && Number.isFinite(e.openedAt) ? e.openedAt : 0;
    yield { at, src: String(e.src?.ip ?? ''), port: Number.isFinite(e.dst?.port) ? e.dst.port : 0 };
  }
}

export interface RollupOptions {
  sketches?: boolean; // the distinct-source sketches too, where the store has them (default)
}

/**
 * The rollup's writes for one batch of events, in the caller's transaction: the hours that
 * are over summed into their days' source rows (foldSteps), the counts (UPSERT per
 * rollupRows row) and, from the schema step that added them, the sketches.
 */
export function rollupWriter(db: Database, opts: RollupOptions = {}): (events: readonly FlowEvent[]) => void {
  const steps = rollupSteps(db, opts);
  return (events) => {
    for (const _ of steps(events));
  };
}

/** rollupWriter, one upsert or sketch row per step (a batch cut into slices: sqlite.ts sliceMs). */
export function rollupSteps(
  db: Database,
  opts: RollupOptions = {},
): (events: readonly FlowEvent[]) => Generator<void> {
  const upsert = db.prepare(UPSERT);
  const has = (name: string) => db.prepare(`SELECT 1 AS x FROM sqlite_master WHERE name = '${name}'`).get();
  const sketches = opts.sketches !== false && has('rollup_sketch') ? sketchSteps(db) : null;
  const fold = has('rollup_folded') ? foldSteps(db) : null;
  return function* (events) {
    let folded = Number.POSITIVE_INFINITY;
    if (fold) {
      // An hour is over once the batch's newest event (or the clock, if earlier: a skewed
      // sensor's far future) is FOLD_GRACE_MS past its end.
      let latest = Number.NEGATIVE_INFINITY;
      for (const e of events) {
        if (
          (e.type === 'flow' || e.type === 'rejected') &&
          Number.isFinite(e.openedAt) &&
          e.openedAt > latest
        )
          latest = e.openedAt;
      }
      const at = Math.min(latest, Date.now()) - FOLD_GRACE_MS;
      folded = yield* fold(Number.isFinite(at) ? at - (at % HOUR_MS) : Number.NEGATIVE_INFINITY);
    }
    for (const r of rollupRows(events, folded)) {
      upsert.run(r);
      yield;
    }
    if (sketches) yield* sketches(sketchAdds(sketchRows(events)));
  };
}

/** How long after an hour's end its source rows are summed into its day (flows are stored when they close). */
export const FOLD_GRACE_MS = 10 * MINUTE_MS;
const FOLD_PAGE = 500;

/**
 * The daily source rows summed from the hourly ones: each hour before `upTo` that is not
 * yet (rollup_folded) is added to its day's rows, a row per step. Events of an hour already
 * summed count into their day's rows directly (rollupRows). Returns the new `until`.
 */
function foldSteps(db: Database): (upTo: number) => Generator<void, number> {
  const get = db.prepare("SELECT until FROM rollup_folded WHERE dim = 'src'");
  const set = db.prepare("UPDATE rollup_folded SET until = @until WHERE dim = 'src'");
  const next = db.prepare(
    "SELECT min(bucket) AS b FROM rollup WHERE span = 'h' AND dim = 'src' AND bucket >= @from",
  );
  const rows = `SELECT value, flows, refused FROM rollup WHERE span = 'h' AND dim = 'src' AND bucket = @hour`;
  const first = db.prepare(`${rows} ORDER BY value LIMIT ${FOLD_PAGE}`);
  const after = db.prepare(`${rows} AND value > @after ORDER BY value LIMIT ${FOLD_PAGE}`);
  const upsert = db.prepare(UPSERT);
  return function* (upTo) {
    const stored = get.get()?.until;
    if (stored === undefined || stored === null) return Number.POSITIVE_INFINITY;
    let until = Number(stored);
    if (!(until < upTo)) return until;
    while (until < upTo) {
      const b = next.get({ from: until })?.b;
      // Hours without source rows are skipped at once (a store idle for days).
      if (b === undefined || b === null || Number(b) >= upTo) {
        until = upTo;
        break;
      }
      const hour = Number(b);
      const day = hour - (hour % DAY_MS);
      let page = [...first.iterate({ hour })];
      while (page.length) {
        for (const r of page) {
          upsert.run(['d', 'src', day, r.value, r.flows, r.refused]);
          yield;
        }
        if (page.length < FOLD_PAGE) break;
        page = [...after.iterate({ hour, after: page[page.length - 1]!.value })];
      }
      until = hour + HOUR_MS;
    }
    set.run({ until });
    return until;
  };
}

/**
 * The hour from which the daily source rows lack the hourly ones (they are summed when an
 * hour is over: foldSteps); a day that ends after it is read from its day row and its hours
 * from this one on. Infinite in a store from before ROLLUP_FOLD_SCHEMA (every event in its day).
 */
export function foldedUntil(db: Readable): number {
  if (![...db.prepare("SELECT 1 AS x FROM sqlite_master WHERE name = 'rollup_folded'").iterate()].length)
    return Number.POSITIVE_INFINITY;
  const [r] = [...db.prepare("SELECT until FROM rollup_folded WHERE dim = 'src'").iterate()];
  return r ? Number(r.until) : Number.POSITIVE_INFINITY;
}

/** Counts the flows with seq in [lo, hi] into the sketches (the backfill job's step, and bulk loads). */
export function fillSketches(db: Database, lo: number, hi: number): void {
  const rows = db.prepare(
    "SELECT opened_at AS at, src_ip AS src, dst_port AS port FROM events WHERE seq >= @lo AND seq <= @hi AND type = 'flow'",
  );
  const it = rows.iterate({ lo, hi }) as unknown as IterableIterator<{
    at: number;
    src: string;
    port: number;
  }>;
  sketchMerger(db)(
    sketchAdds(
      (function* () {
        for (const r of it) yield { at: Number(r.at), src: String(r.src), port: Number(r.port) };
      })(),
    ),
  );
}

/**
 * The rollup's counts of the events with seq in [@lo, @hi], added to the rows already there
 * (the backfill job that replaces the one of ROLLUP_VIEWS_SCHEMA when `run` upgrades a store).
 */
export const ROLLUP_CHUNK: readonly string[] = COUNT_STORED.split(';')
  .map((s) => s.trim())
  .filter(Boolean)
  .map(
    (s) =>
      `${s.replace('FROM events WHERE ', 'FROM events WHERE seq >= @lo AND seq <= @hi AND ')}
     ON CONFLICT (span, dim, bucket, value) DO UPDATE SET flows = flows + excluded.flows, refused = refused + excluded.refused`,
  );

export const UPSERT = `INSERT INTO rollup (span, dim, bucket, value, flows, refused) VALUES (?, ?, ?, ?, ?, ?)
  ON CONFLICT (span, dim, bucket, value) DO UPDATE SET flows = flows + excluded.flows, refused = refused + excluded.refused`;

/** One row's increment: [span, dim, bucket, value, flows, refused]. */
export type RollupRow = [Span, Dim, number, string | number, number, number];

/**
 * The increments a batch makes, summed per row (one upsert per distinct row). Daily source
 * rows only for the events of hours before `folded` (the later ones are summed from their
 * hours: foldSteps).
 */
export function rollupRows(events: readonly FlowEvent[], folded = Number.POSITIVE_INFINITY): RollupRow[] {
  const rows: RollupRow[] = [];
  // Rows by span and bucket, then dimension, then value: Map lookups on values the events
  // already hold (text keys built per row cost more than the rest of the batch's JS).
  const groups = bucketGroups<Map<Dim, Map<string | number, RollupRow>>>(() => new Map());
  const add = (
    group: Map<Dim, Map<string | number, RollupRow>>,
    span: Span,
    dim: Dim,
    bucket: number,
    value: string | number,
    flows: number,
    refused: number,
  ) => {
    let byValue = group.get(dim);
    if (!byValue) {
      byValue = new Map();
      group.set(dim, byValue);
    }
    const r = byValue.get(value);
    if (r) {
      r[4] += flows;
      r[5] += refused;
    } else {
      const row: RollupRow = [span, dim, bucket, value, flows, refused];
      byValue.set(value, row);
      rows.push(row);
    }
  };
  for (const e of events) {
    if (e.type !== 'flow' && e.type !== 'rejected') continue;
    const at = typeof e.openedAt === 'number' && Number.isFinite(e.openedAt) ? e.openedAt : 0;
    const flow = e.type === 'flow';
    const flows = flow ? 1 : 0;
    const refused = flow ? 0 : typeof e.count === 'number' && Number.isFinite(e.count) ? e.count : 0;
    // Values as the SQL backfill computes them from the stored row (row.ts eventValues).
    const port = Number.isFinite(e.dst?.port) ? e.dst.port : 0;
    const bytes = typeof e.bytesIn === 'number' && Number.isFinite(e.bytesIn) ? e.bytesIn : 0;
    const close = e.closeReason ?? '-';
    const src = String(e.src?.ip ?? '');
    const daySrc = at - (at % HOUR_MS) < folded;
    for (let s = 0; s < SPANS.length; s++) {
      const [span, ms] = SPANS[s]!;
      const bucket = at - (at % ms);
      const g = groups(s, bucket);
      add(g, span, 'all', bucket, '', flows, refused);
      if (span === 'h' || (span === 'd' && daySrc)) add(g, span, 'src', bucket, src, flows, refused);
      if (!flow) {
        add(g, span, 'reason', bucket, close, 0, refused);
        if (span !== 'm') add(g, span, 'rsrc', bucket, src, 0, refused);
        continue;
      }
      add(g, span, 'port', bucket, port, 1, 0);
      add(g, span, 'protocol', bucket, e.protocol ?? '-', 1, 0);
      add(g, span, 'route', bucket, e.route ?? '-', 1, 0);
      add(g, span, 'action', bucket, e.action ?? '-', 1, 0);
      add(g, span, 'close', bucket, close, 1, 0);
      add(g, span, 'sensor', bucket, typeof e.sensor === 'string' ? e.sensor : String(e.sensor ?? ''), 1, 0);
      add(g, span, 'bytes', bucket, '', bytes, 0);
    }
  }
  return rows;
}

/**
 * One `T` per span SPANS[s] and bucket, made by `make`: a batch's flows mostly share their
 * buckets, so the last one of each span is at hand without a lookup.
 */
function bucketGroups<T>(make: (s: number, bucket: number) => T): (s: number, bucket: number) => T {
  const maps = SPANS.map(() => new Map<number, T>());
  const last = SPANS.map(() => Number.NaN);
  const lastGroup: (T | undefined)[] = SPANS.map(() => undefined);
  return (s, bucket) => {
    if (last[s] === bucket) return lastGroup[s]!;
    let g = maps[s]!.get(bucket);
    if (g === undefined) {
      g = make(s, bucket);
      maps[s]!.set(bucket, g);
    }
    last[s] = bucket;
    lastGroup[s] = g;
    return g;
  };
}

/** The key prefix of span SPANS[s] and a bucket ("m|1767268800000|"), made once per bucket. */
function bucketKeys(): (s: number, bucket: number) => string {
  return bucketGroups((s, bucket) => `${SPANS[s]![0]}|${bucket}|`);
}

const SPANS: readonly [Span, number][] = [
  ['m', MINUTE_MS],
  ['h', HOUR_MS],
  ['d', DAY_MS],
];

export interface StatsQuery {
  by: 'hour' | 'day';
  since: number; // epoch ms; the bucket holding it is the first
  until?: number; // epoch ms; default: now
  top?: number; // entries per list (default 5)
}

export interface StatsEntry {
  value: string | number;
  flows: number; // admitted
  refused: number; // refused at admission (sources only)
}

export interface StatsBucket {
  start: number; // epoch ms, a UTC hour or day
  flows: number;
  refused: number;
  sources: StatsEntry[];
  ports: StatsEntry[];
  protocols: StatsEntry[];
  routes: StatsEntry[];
}

const LISTS: readonly [Dim, 'sources' | 'ports' | 'protocols' | 'routes'][] = [
  ['src', 'sources'],
  ['port', 'ports'],
  ['protocol', 'protocols'],
  ['route', 'routes'],
];

interface Readable {
  prepare(sql: string): {
    iterate(params?: Record<string, unknown>): IterableIterator<Record<string, unknown>>;
  };
}

/**
 * The buckets from `q.since` to `q.until` that hold events, oldest first, each with its top
 * entries (by flows plus refusals). Each list is one read of the rollup_top index.
 */
export function readStats(db: Readable, q: StatsQuery): StatsBucket[] {
  const span: Span = q.by === 'hour' ? 'h' : 'd';
  const ms = span === 'h' ? HOUR_MS : DAY_MS;
  const top = q.top ?? 5;
  const from = q.since - (q.since % ms);
  const to = q.until ?? Date.now();
  const buckets = [
    ...db
      .prepare(
        `SELECT bucket, flows, refused FROM rollup
         WHERE span = @span AND dim = 'all' AND bucket >= @from AND bucket <= @to ORDER BY bucket`,
      )
      .iterate({ span, from, to }),
  ] as unknown as { bucket: number; flows: number; refused: number }[];
  const list = db.prepare(
    `SELECT value, flows, refused FROM rollup
     WHERE span = @span AND dim = @dim AND bucket = @bucket ORDER BY flows + refused DESC, value DESC LIMIT @top`,
  );
  // A day not yet whole in its source rows: its day row plus its hours from `folded` on.
  // The top of the sum is among the sources of those hours and the day row's busiest
  // (as many more as those hours have sources), each then counted exactly.
  const folded = span === 'd' ? foldedUntil(db) : Number.POSITIVE_INFINITY;
  const openDay = db.prepare(
    `WITH open AS (SELECT value, sum(flows) AS flows, sum(refused) AS refused FROM rollup
        WHERE span = 'h' AND dim = 'src' AND bucket >= @from AND bucket < @to GROUP BY value),
      pick AS (SELECT value FROM open UNION SELECT value FROM (SELECT value FROM rollup
        WHERE span = 'd' AND dim = 'src' AND bucket = @bucket ORDER BY flows + refused DESC, value DESC
        LIMIT @top + (SELECT count(*) FROM open)))
     SELECT p.value, coalesce(d.flows, 0) + coalesce(o.flows, 0) AS flows,
            coalesce(d.refused, 0) + coalesce(o.refused, 0) AS refused
     FROM pick p LEFT JOIN open o ON o.value = p.value
       LEFT JOIN rollup d ON d.span = 'd' AND d.dim = 'src' AND d.bucket = @bucket AND d.value = p.value
     ORDER BY coalesce(d.flows, 0) + coalesce(o.flows, 0) + coalesce(d.refused, 0) + coalesce(o.refused, 0) DESC,
       p.value DESC LIMIT @top`,
  );
  return buckets.map((b) => {
    const out: StatsBucket = {
      start: Number(b.bucket),
      flows: Number(b.flows),
      refused: Number(b.refused),
      sources: [],
      ports: [],
      protocols: [],
      routes: [],
    };
    const start = Number(b.bucket);
    for (const [dim, key] of LISTS) {
      const rows =
        dim === 'src' && start + ms > folded
          ? openDay.iterate({ bucket: b.bucket, from: Math.max(folded, start), to: start + ms, top })
          : list.iterate({ span, dim, bucket: b.bucket, top });
      out[key] = ([...rows] as unknown as StatsEntry[]).map((r) => ({
        value: typeof r.value === 'bigint' ? Number(r.value) : r.value,
        flows: Number(r.flows),
        refused: Number(r.refused),
      }));
    }
    return out;
  });
}
