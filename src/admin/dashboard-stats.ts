// The dashboard's aggregates: one SQL query (or two) per view over the events table, each
// bounded to a time range so it reads through the opened_at index, never the whole store.
// Flows are the 'flow' rows (one per connection; updates are not counted again);
// refusals are the 'rejected' rows, each a tally of `count` refused flows.
import { statSync } from 'node:fs';
import { HoneygateError } from '../errors.js';
import { pendingJobs } from '../events/backfill.js';
import { hash32, Sketch } from '../events/hll.js';
import { openStore } from '../events/query.js';
import {
  DIM_SPANS,
  type Dim,
  foldedUntil,
  HOUR_MS,
  MINUTE_MS,
  ROLLUP_REFUSED_SCHEMA,
  ROLLUP_SKETCH_SCHEMA,
  ROLLUP_VIEWS_SCHEMA,
  SKETCH_SPANS,
  SPAN_MS,
  type Span,
} from '../events/rollup.js';
import { MIGRATIONS } from '../events/sqlite.js';
import type { Database } from '../events/sqlite-driver.js';

/** A view's time window: the last hour, day or week, cut into `bucketMs` slots. */
export interface Range {
  name: RangeName;
  since: number; // epoch ms, inclusive, a multiple of bucketMs
  until: number; // epoch ms, exclusive
  bucketMs: number; // the flows-over-time slot
  heatMs: number; // the port-by-time heat map's slot
}

export const RANGES = {
  '1h': { spanMs: 3_600_000, bucketMs: 60_000, heatMs: 300_000 },
  '24h': { spanMs: 86_400_000, bucketMs: 900_000, heatMs: 3_600_000 },
  '7d': { spanMs: 604_800_000, bucketMs: 3_600_000, heatMs: 3_600_000 },
} as const;
export type RangeName = keyof typeof RANGES;
export const GROUPINGS = ['action', 'route'] as const;

/** The range named `name` ending now; throws a usage error for any other name. */
export function toRange(name: string | null, now: number): Range {
  const key = (name ?? '24h') as RangeName;
  if (!Object.hasOwn(RANGES, key)) {
    throw new HoneygateError(
      'HG_ERR_EVENTS_QUERY',
      `range: "${name}" is not one of ${Object.keys(RANGES).join(', ')}`,
    );
  }
  const r = RANGES[key];
  const until = now + 1;
  // The first slot starts on a slot boundary so that each slot holds a whole bucket.
  const since = Math.floor((until - r.spanMs) / r.bucketMs) * r.bucketMs;
  return { name: key, since, until, bucketMs: r.bucketMs, heatMs: r.heatMs };
}

const FLOWS = "type = 'flow' AND opened_at >= @since AND opened_at < @until";
const REFUSED = "type = 'rejected' AND opened_at >= @since AND opened_at < @until";

function window(r: Range): Record<string, number> {
  return { since: r.since, until: r.until };
}

function all<T>(db: Database, sql: string, params: Record<string, unknown>): T[] {
  return [...db.prepare(sql).iterate(params)] as unknown as T[];
}

/** Runs `fn` on the store at `dbPath`, opened read-only for this one call. */
export function withStore<T>(dbPath: string, fn: (db: Database) => T): T {
  const db = openStore(dbPath);
  try {
    // Read through a memory map: a range scan over a large store copies every page otherwise.
    db.pragma('mmap_size = 1073741824');
    return fn(db);
  } catch (err) {
    if (err instanceof HoneygateError) throw err;
    throw new HoneygateError('HG_ERR_EVENTS_QUERY', `${dbPath}: ${(err as Error).message}`, { cause: err });
  } finally {
    db.close();
  }
}

export interface Timeline {
  range: RangeName;
  by: (typeof GROUPINGS)[number];
  since: number;
  bucketMs: number;
  times: number[]; // the start of each slot
  series: { name: string; counts: number[] }[]; // flows per slot, one series per action or route, then "refused"
}

/** Flows per slot by action or route, and refused flows per slot. */
function rawTimeline(db: Database, r: Range, by: (typeof GROUPINGS)[number]): Timeline {
  const slots = Math.ceil((r.until - r.since) / r.bucketMs);
  const times = Array.from({ length: slots }, (_, i) => r.since + i * r.bucketMs);
  const series = new Map<string, number[]>();
  const put = (name: string, t: number, n: number) => {
    let counts = series.get(name);
    if (!counts) {
      counts = new Array<number>(slots).fill(0);
      series.set(name, counts);
    }
    const i = Math.floor((t - r.since) / r.bucketMs);
    if (i >= 0 && i < slots) counts[i]! += n;
  };
  const col = by === 'route' ? 'route' : 'action';
  const params = window(r);
  // The slot width goes in as a literal: a bound number may arrive as a REAL, and then the
  // division would not cut opened_at into slots at all.
  const slot = slotExpr(r.bucketMs);
  for (const row of all<{ t: number; k: string; n: number }>(
    db,
    `SELECT ${slot} AS t, coalesce(${col}, '(none)') AS k, count(*) AS n
       FROM events WHERE ${FLOWS} GROUP BY t, k`,
    params,
  )) {
    put(row.k, row.t, row.n);
  }
  const refused = new Array<number>(slots).fill(0);
  for (const row of all<{ t: number; n: number }>(
    db,
    `SELECT ${slot} AS t, sum(count) AS n FROM events WHERE ${REFUSED} GROUP BY t`,
    params,
  )) {
    const i = Math.floor((row.t - r.since) / r.bucketMs);
    if (i >= 0 && i < slots) refused[i]! += row.n;
  }
  return timelineOf(r, by, times, series, refused);
}

/** The timeline's answer: the named series, most flows first (ties by name), then "refused". */
function timelineOf(
  r: Range,
  by: (typeof GROUPINGS)[number],
  times: number[],
  series: Map<string, number[]>,
  refused: number[],
): Timeline {
  const named = [...series].sort((a, b) => sum(b[1]) - sum(a[1]) || a[0].localeCompare(b[0]));
  return {
    range: r.name,
    by,
    since: r.since,
    bucketMs: r.bucketMs,
    times,
    series: [...named.map(([name, counts]) => ({ name, counts })), { name: 'refused', counts: refused }],
  };
}

/** SQL for the start of opened_at's slot of `ms` (a whole number of ms, from RANGES). */
function slotExpr(ms: number): string {
  const n = Math.trunc(ms);
  return `(opened_at - opened_at % ${n})`;
}

function sum(xs: number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return s;
}

export interface SourceRow {
  ip: string;
  flows: number;
  first: number;
  last: number;
  ports: number[]; // the distinct destination ports, lowest first, at most 12
  portCount: number;
  protocols: string[];
}

/** The `top` sources with the most flows in the range. */
function rawTopSources(db: Database, r: Range, top = 20): SourceRow[] {
  const rows = all<{ ip: string; flows: number; first: number; last: number }>(
    db,
    `SELECT src_ip AS ip, count(*) AS flows, min(opened_at) AS first, max(opened_at) AS last
       FROM events WHERE ${FLOWS} GROUP BY src_ip ORDER BY flows DESC, src_ip LIMIT @top`,
    { ...window(r), top },
  );
  // Ports and protocols of those sources in one pass over the range: through the src_ip
  // index (`+src_ip` keeps SQLite off it) a busy source's whole history would be read.
  const ips: Record<string, string> = {};
  rows.forEach((row, i) => {
    ips[`ip${i}`] = row.ip;
  });
  const detail = new Map<string, { ports: string | null; protocols: string | null }>();
  if (rows.length) {
    for (const d of all<{ ip: string; ports: string | null; protocols: string | null }>(
      db,
      `SELECT src_ip AS ip, group_concat(DISTINCT dst_port) AS ports,
              group_concat(DISTINCT coalesce(protocol, 'unknown')) AS protocols
         FROM events WHERE ${FLOWS} AND +src_ip IN (${Object.keys(ips)
           .map((k) => `@${k}`)
           .join(', ')})
         GROUP BY src_ip`,
      { ...window(r), ...ips },
    )) {
      detail.set(d.ip, d);
    }
  }
  return rows.map((row) => {
    const d = detail.get(row.ip) ?? { ports: null, protocols: null };
    const ports = (d.ports ?? '')
      .split(',')
      .filter(Boolean)
      .map(Number)
      .sort((a, b) => a - b);
    return {
      ...row,
      ports: ports.slice(0, 12),
      portCount: ports.length,
      protocols: (d.protocols ?? '').split(',').filter(Boolean).sort(),
    };
  });
}

export interface PortRow {
  port: number;
  flows: number;
  sources: number; // distinct source addresses
  sourcesEstimated: boolean; // sources is a HyperLogLog estimate (standard error 1.6%), not an exact count
}

/** The `top` destination ports with the most flows in the range. */
function rawTopPorts(db: Database, r: Range, top = 20): PortRow[] {
  return all<Omit<PortRow, 'sourcesEstimated'>>(
    db,
    `SELECT dst_port AS port, count(*) AS flows, count(DISTINCT src_ip) AS sources
       FROM events WHERE ${FLOWS} GROUP BY dst_port ORDER BY flows DESC, dst_port LIMIT @top`,
    { ...window(r), top },
  ).map((p) => ({ ...p, sourcesEstimated: false }));
}

export interface Heatmap {
  range: RangeName;
  since: number;
  slotMs: number;
  times: number[];
  ports: number[]; // rows, busiest first
  counts: number[][]; // counts[port index][slot index]
  max: number;
}

/**
 * Flows per destination port (the `top` busiest) and slot: the port-by-hour heat map.
 * `+dst_port` keeps SQLite on the opened_at range: through the dst_port index it would read
 * every flow those ports ever had.
 */
function rawHeatmap(db: Database, r: Range, top = 12): Heatmap {
  const since = Math.floor(r.since / r.heatMs) * r.heatMs;
  const slots = Math.ceil((r.until - since) / r.heatMs);
  const times = Array.from({ length: slots }, (_, i) => since + i * r.heatMs);
  const ports = rawTopPorts(db, r, top).map((p) => p.port);
  const counts = ports.map(() => new Array<number>(slots).fill(0));
  let max = 0;
  if (ports.length) {
    const index = new Map(ports.map((p, i) => [p, i]));
    for (const row of all<{ port: number; t: number; n: number }>(
      db,
      `SELECT dst_port AS port, ${slotExpr(r.heatMs)} AS t, count(*) AS n
         FROM events WHERE ${FLOWS} AND +dst_port IN (${ports.map((p) => Number(p)).join(',')})
         GROUP BY port, t`,
      window(r),
    )) {
      const i = index.get(row.port);
      const j = Math.floor((row.t - since) / r.heatMs);
      if (i === undefined || j < 0 || j >= slots) continue;
      counts[i]![j] = row.n;
      if (row.n > max) max = row.n;
    }
  }
  return { range: r.name, since, slotMs: r.heatMs, times, ports, counts, max };
}

/** Flows per detected protocol ('unknown' when none was detected), most first. */
function rawProtocolMix(db: Database, r: Range): { protocol: string; flows: number }[] {
  return all(
    db,
    `SELECT coalesce(protocol, 'unknown') AS protocol, count(*) AS flows
       FROM events WHERE ${FLOWS} GROUP BY 1 ORDER BY flows DESC, protocol`,
    window(r),
  );
}

// Flow ends that mean a limit or a fault cut the flow short (not the attacker's choice).
const LIMIT_ENDS = [
  'idle-timeout',
  'max-duration',
  'byte-cap',
  'server-unavailable',
  'no-route',
  'fd-exhausted',
  'shutdown',
  'crash',
  'error',
];

export interface Refusals {
  byReason: { reason: string; flows: number }[]; // refused at admission (limit-global, limit-per-source, limit-rate)
  topSources: { ip: string; flows: number }[];
  limitEnds: { reason: string; flows: number }[]; // accepted flows ended by a limit or a fault
}

/** Refused flows by reason and source, and flows cut short by a limit, in the range. */
function rawRefusals(db: Database, r: Range): Refusals {
  return {
    byReason: all(
      db,
      `SELECT coalesce(close_reason, 'unknown') AS reason, sum(count) AS flows
         FROM events WHERE ${REFUSED} GROUP BY 1 ORDER BY flows DESC, reason`,
      window(r),
    ),
    topSources: all(
      db,
      `SELECT src_ip AS ip, sum(count) AS flows FROM events WHERE ${REFUSED} AND src_ip != '*'
         GROUP BY src_ip ORDER BY flows DESC, ip LIMIT 10`,
      window(r),
    ),
    limitEnds: all(
      db,
      `SELECT close_reason AS reason, count(*) AS flows FROM events
         WHERE ${FLOWS} AND close_reason IN (${LIMIT_ENDS.map((x) => `'${x}'`).join(', ')})
         GROUP BY 1 ORDER BY flows DESC, reason`,
      window(r),
    ),
  };
}

export interface Overview {
  range: RangeName;
  flows: number;
  refused: number;
  sources: number;
  sourcesEstimated: boolean; // sources is a HyperLogLog estimate (standard error 1.6%), not an exact count
  bytesIn: number;
  sensors: { sensor: string; flows: number; last: number }[]; // several in a fleet's central store
  firewall: { at: number; detail: string | null; sensor: string }[]; // the latest firewall events
}

/** Totals of the range, the sensors seen in it, and the latest firewall notes. */
function rawOverview(db: Database, r: Range): Overview {
  const t = db
    .prepare(
      `SELECT count(*) AS flows, count(DISTINCT src_ip) AS sources, coalesce(sum(bytes_in), 0) AS bytesIn
         FROM events WHERE ${FLOWS}`,
    )
    .get(window(r)) as { flows: number; sources: number; bytesIn: number };
  const refused = db
    .prepare(`SELECT coalesce(sum(count), 0) AS n FROM events WHERE ${REFUSED}`)
    .get(window(r)) as { n: number };
  return {
    range: r.name,
    flows: t.flows,
    refused: refused.n,
    sources: t.sources,
    sourcesEstimated: false,
    bytesIn: t.bytesIn,
    sensors: all(
      db,
      `SELECT sensor, count(*) AS flows, max(opened_at) AS last FROM events WHERE ${FLOWS}
         GROUP BY sensor ORDER BY flows DESC, sensor LIMIT 50`,
      window(r),
    ),
    firewall: all(
      db,
      `SELECT opened_at AS at, detail, sensor FROM events
         WHERE type = 'firewall' AND opened_at >= @since AND opened_at < @until
         ORDER BY opened_at DESC LIMIT 5`,
      window(r),
    ),
  };
}

// ---- The views from the rollup --------------------------------------------------------
//
// The rollup (src/events/rollup.ts) holds per-minute, hourly and daily counts of the flows by
// each dimension a view groups by, kept in the transaction that inserts the events. A view
// reads its range as whole buckets of the rollup (days where a whole day fits, then hours,
// then minutes) plus the events of what is left: the range's last partial minute (or hour,
// for sources, which have no minute rows), and a bucket that `events.retention` may have cut
// (the one holding the oldest stored event: the rollup keeps the counts of deleted events).
// So each answer is the raw query's, from a few thousand rows instead of millions. A store
// whose schema predates the rollup's view rows (and rawViews()) is read the raw way.

const RAW = new WeakSet<Database>();

/** `db`, marked to answer every view from the events table (the reference the tests and the benchmark compare with). */
export function rawViews(db: Database): Database {
  RAW.add(db);
  return db;
}

/** The schema version from which the rollup holds the views' rows. */
const VIEWS_VERSION = MIGRATIONS.indexOf(ROLLUP_VIEWS_SCHEMA) + 1;
const READY = new WeakMap<Database, boolean>();

function fromRollup(db: Database): boolean {
  if (RAW.has(db)) return false;
  let ready = READY.get(db);
  if (ready === undefined) {
    // A store upgraded while running counts its older events in the background (backfill.ts).
    ready = Number(db.pragma('user_version')) >= VIEWS_VERSION && !pendingJobs(db).includes('rollup');
    READY.set(db, ready);
  }
  return ready;
}
/** The schema version from which the rollup holds the distinct sources' sketches. */
const SKETCH_VERSION = MIGRATIONS.indexOf(ROLLUP_SKETCH_SCHEMA) + 1;
const SKETCHES = new WeakMap<Database, boolean>();
function fromSketches(db: Database): boolean {
  if (!fromRollup(db)) return false;
  let ready = SKETCHES.get(db);
  if (ready === undefined) {
    ready = Number(db.pragma('user_version')) >= SKETCH_VERSION && !pendingJobs(db).includes('sketch');
    SKETCHES.set(db, ready);
  }
  return ready;
}
/**
 * The distinct sources of the flows in the range, per value of `dim` (all: '', port: each
 * of `values`): the union of the rollup's sketches of the range's whole buckets and the
 * sources of the events of the rest. Exact while every union stays sparse (hll.ts).
 */
function distinctOf(
  db: Database,
  r: Range,
  dim: 'all' | 'port',
  values: (string | number)[],
): Map<string | number, Sketch> {
  const out = new Map<string | number, Sketch>(values.map((v) => [v, new Sketch()]));
  if (!values.length) return out;
  const list = values.map((v) =>
    typeof v === 'number' ? String(Math.trunc(v)) : `'${String(v).replaceAll("'", "''")}'`,
  );
  for (const p of plan(db, r.since, r.until, SKETCH_SPANS[dim])) {
    if (p.span === 'raw') {
      const col = dim === 'port' ? 'dst_port' : "''";
      const only = dim === 'port' ? ` AND +dst_port IN (${list.join(', ')})` : '';
      for (const x of all<{ v: string | number; ip: string }>(
        db,
        `SELECT DISTINCT ${col} AS v, src_ip AS ip FROM events WHERE type = 'flow' AND opened_at >= @f AND opened_at < @t${only}`,
        { f: p.from, t: p.to },
      )) {
        out.get(typeof x.v === 'bigint' ? Number(x.v) : x.v)?.add(hash32(String(x.ip)));
      }
      continue;
    }
    const ms = SPAN_MS[p.span];
    const buckets = Array.from({ length: (p.to - p.from) / ms }, (_, k) => p.from + k * ms);
    for (const x of all<{ value: string | number; sketch: Uint8Array }>(
      db,
      `SELECT value, sketch FROM rollup_sketch WHERE span = '${p.span}' AND dim = '${dim}'
         AND bucket IN (${buckets.join(', ')}) AND value IN (${list.join(', ')})`,
      {},
    )) {
      out.get(typeof x.value === 'bigint' ? Number(x.value) : x.value)?.merge(x.sketch);
    }
  }
  return out;
}

/** How one dimension's counts come out of the events table (the rollup's backfill, per piece of range). */
interface RawDim {
  value: string;
  flows: string;
  refused: string;
  where: string;
}
const BOTH = "type IN ('flow', 'rejected')";
const FLOW_N = "sum(CASE WHEN type = 'flow' THEN 1 ELSE 0 END)";
const REFUSED_N = "sum(CASE WHEN type = 'rejected' THEN count ELSE 0 END)";
const flowDim = (value: string): RawDim => ({
  value,
  flows: 'count(*)',
  refused: '0',
  where: "type = 'flow'",
});
const RAW_DIMS: Record<Dim, RawDim> = {
  all: { value: "''", flows: FLOW_N, refused: REFUSED_N, where: BOTH },
  src: { value: 'src_ip', flows: FLOW_N, refused: REFUSED_N, where: BOTH },
  port: flowDim('dst_port'),
  protocol: flowDim("coalesce(protocol, '-')"),
  route: flowDim("coalesce(route, '-')"),
  action: flowDim("coalesce(action, '-')"),
  close: flowDim("coalesce(close_reason, '-')"),
  reason: {
    value: "coalesce(close_reason, '-')",
    flows: '0',
    refused: 'sum(count)',
    where: "type = 'rejected'",
  },
  sensor: flowDim('sensor'),
  rsrc: { value: 'src_ip', flows: '0', refused: 'sum(count)', where: "type = 'rejected'" },
  bytes: { value: "''", flows: 'sum(bytes_in)', refused: '0', where: "type = 'flow'" },
};

/** A stretch [from, to) of a range, read from the rollup's buckets of `span`, or from the events. */
interface Piece {
  span: Span | 'raw';
  from: number;
  to: number;
}

/**
 * [from, to) cut into runs of whole rollup buckets of `spans` (largest first) and raw
 * stretches. A bucket is used only if it starts after the oldest stored event: retention
 * deletes the oldest events first, so such a bucket still holds every event it counted.
 */
function plan(db: Database, from: number, to: number, spans: readonly Span[], dim?: Dim): Piece[] {
  const oldest = (
    db.prepare('SELECT opened_at AS t FROM events ORDER BY opened_at LIMIT 1').get() as
      | { t: number }
      | undefined
  )?.t;
  if (oldest === undefined || from >= to) return [];
  const sizes = [...spans].map((s) => [s, SPAN_MS[s]] as const).sort((a, b) => b[1] - a[1]);
  const finest = sizes.length ? sizes[sizes.length - 1]![1] : to - from;
  // A day's source rows lack its hours from foldedUntil on: such a day is read as hours.
  const whole = dim === 'src' ? foldedUntil(db) : Number.POSITIVE_INFINITY;
  const out: Piece[] = [];
  const push = (span: Piece['span'], a: number, b: number) => {
    const last = out[out.length - 1];
    if (last && last.span === span && last.to === a) last.to = b;
    else out.push({ span, from: a, to: b });
  };
  let at = from;
  while (at < to) {
    if (at <= oldest) {
      // Nothing before the oldest event; its bucket may have lost some: the events say.
      const next = Math.min(to, Math.floor(oldest / finest) * finest + finest);
      push('raw', at, next);
      at = next;
      continue;
    }
    const fit = sizes.find(
      ([span, ms]) => at % ms === 0 && at + ms <= to && (span !== 'd' || at + ms <= whole),
    );
    if (fit) {
      push(fit[0], at, at + fit[1]);
      at += fit[1];
    } else {
      const next = Math.min(to, Math.floor(at / finest) * finest + finest);
      push('raw', at, next);
      at = next;
    }
  }
  return out;
}

interface Counted {
  t: number; // the slot's start, or 0 without slots
  value: string | number;
  flows: number;
  refused: number;
}

/**
 * The counts of `dim` in [r.since, r.until), summed per value (and per slot of `slotMs`,
 * which every span used divides), from the rollup and the events of the pieces it lacks.
 * `values` narrows to those values.
 */
function counts(
  db: Database,
  r: Range,
  dim: Dim,
  slotMs: number | null,
  values?: (string | number)[],
): Counted[] {
  const spans = DIM_SPANS[dim].filter((s) => slotMs === null || slotMs % SPAN_MS[s] === 0);
  const pieces = plan(db, r.since, r.until, spans, dim);
  if (!pieces.length) return [];
  const raw = RAW_DIMS[dim];
  const params: Record<string, unknown> = {};
  const inList = (col: string) => {
    if (!values) return '';
    values.forEach((v, i) => {
      params[`v${i}`] = v;
    });
    return ` AND ${col} IN (${values.map((_, i) => `@v${i}`).join(', ')})`;
  };
  const rollupIn = inList('value');
  const rawIn = values ? inList(raw.value) : '';
  const parts = pieces.map((p, i) => {
    // Bound only where used: node:sqlite on Node 24 refuses a parameter the SQL does not name.
    if (p.span === 'raw' || !values) {
      params[`f${i}`] = p.from;
      params[`t${i}`] = p.to;
    }
    if (p.span === 'raw') {
      const t = slotMs === null ? '0' : slotExpr(slotMs);
      return `SELECT ${t} AS t, ${raw.value} AS value, ${raw.flows} AS flows, ${raw.refused} AS refused
         FROM events WHERE ${raw.where} AND opened_at >= @f${i} AND opened_at < @t${i}${rawIn} GROUP BY 1, 2`;
    }
    const t = slotMs === null ? '0' : `(bucket - bucket % ${Math.trunc(slotMs)})`;
    const ms = SPAN_MS[p.span];
    // A few values: each bucket and value is a seek in the primary key, where a bucket range
    // would read every value of every bucket (a week of hourly ports: millions of rows).
    const buckets = values
      ? `bucket IN (${Array.from({ length: (p.to - p.from) / ms }, (_, k) => p.from + k * ms).join(', ')})`
      : `bucket >= @f${i} AND bucket < @t${i}`;
    return `SELECT ${t} AS t, value, flows, refused FROM rollup
       WHERE span = '${p.span}' AND dim = '${dim}' AND ${buckets}${rollupIn}`;
  });
  const rows = all<Counted>(
    db,
    `SELECT t, value, sum(flows) AS flows, sum(refused) AS refused FROM (${parts.join(' UNION ALL ')}) GROUP BY t, value`,
    params,
  );
  return rows.map((x) => ({
    t: Number(x.t),
    value: typeof x.value === 'bigint' ? Number(x.value) : x.value,
    flows: Number(x.flows),
    refused: Number(x.refused),
  }));
}

/** `rows` merged by `name(value)` (two stored values may show as one, as coalesce() does in SQL), flows and refused summed. */
function merge(
  rows: Counted[],
  name: (v: string | number) => string,
): Map<string, { flows: number; refused: number }> {
  const out = new Map<string, { flows: number; refused: number }>();
  for (const x of rows) {
    const k = name(x.value);
    const m = out.get(k);
    if (m) {
      m.flows += x.flows;
      m.refused += x.refused;
    } else out.set(k, { flows: x.flows, refused: x.refused });
  }
  return out;
}

/** SQLite's BINARY order of two texts (UTF-8 bytes), for the raw queries' ORDER BY ties. */
function binary(a: string, b: string): number {
  return a === b ? 0 : Buffer.compare(Buffer.from(a), Buffer.from(b));
}

const noneAs = (name: string) => (v: string | number) => (v === '-' ? name : String(v));

/** Flows per slot by action or route, and refused flows per slot. */
export function timeline(db: Database, r: Range, by: (typeof GROUPINGS)[number]): Timeline {
  if (!fromRollup(db)) return rawTimeline(db, r, by);
  const slots = Math.ceil((r.until - r.since) / r.bucketMs);
  const times = Array.from({ length: slots }, (_, i) => r.since + i * r.bucketMs);
  const series = new Map<string, number[]>();
  const slot = (t: number) => Math.floor((t - r.since) / r.bucketMs);
  for (const x of counts(db, r, by, r.bucketMs)) {
    const name = x.value === '-' ? '(none)' : String(x.value);
    let c = series.get(name);
    if (!c) {
      c = new Array<number>(slots).fill(0);
      series.set(name, c);
    }
    const i = slot(x.t);
    if (i >= 0 && i < slots) c[i]! += x.flows;
  }
  const refused = new Array<number>(slots).fill(0);
  for (const x of counts(db, r, 'all', r.bucketMs)) {
    const i = slot(x.t);
    if (i >= 0 && i < slots) refused[i]! += x.refused;
  }
  return timelineOf(r, by, times, series, refused);
}

/**
 * The `top` values of `dim` by `measure` in the range (ties by `tie`), with exact counts,
 * without summing every rollup row when the counts are skewed (attacks are): each bucket's
 * `depth` busiest rows, read in order from the rollup_top index, bound what a value missing
 * from them can have there (the next row's count). A value whose bound cannot reach the
 * top-th best lower count is out; the rest are counted exactly. When the bounds do not
 * settle the top (a flat tail among the top), the depth grows, then every row is summed.
 */
function topCounts(
  db: Database,
  r: Range,
  dim: Dim,
  top: number,
  tie: (a: string | number, b: string | number) => number,
  measure: 'flows' | 'refused' = 'flows',
): Counted[] {
  const rank = (xs: Counted[]) =>
    xs.sort((a, b) => b[measure] - a[measure] || tie(a.value, b.value)).slice(0, top);
  const pieces = plan(db, r.since, r.until, DIM_SPANS[dim], dim);
  const buckets: [Span, number][] = [];
  for (const p of pieces) {
    if (p.span === 'raw') continue;
    for (let b = p.from; b < p.to; b += SPAN_MS[p.span]) buckets.push([p.span, b]);
  }
  const busiest = db.prepare(
    `SELECT value, ${measure} AS flows, flows + refused AS n FROM rollup
       WHERE span = @span AND dim = @dim AND bucket = @bucket ORDER BY flows + refused DESC LIMIT @limit`,
  );
  const raw = RAW_DIMS[dim];
  for (let depth = 2 * top; depth <= 512 && top > 0; depth *= 4) {
    // value -> [flows seen, the sum of the bounds of the buckets it was seen in]
    const seen = new Map<string | number, [number, number]>();
    const add = (v: unknown, flows: number, bound: number) => {
      const value = typeof v === 'bigint' ? Number(v) : (v as string | number);
      const m = seen.get(value);
      if (m) {
        m[0] += flows;
        m[1] += bound;
      } else seen.set(value, [flows, bound]);
    };
    let unseen = 0; // the most a value can have in the buckets where it was not seen
    for (const [span, bucket] of buckets) {
      const rows = [...busiest.iterate({ span, dim, bucket, limit: depth + 1 })] as unknown as {
        value: unknown;
        flows: number;
        n: number;
      }[];
      const bound = rows.length > depth ? Number(rows[depth]!.n) : 0;
      unseen += bound;
      for (const x of rows.slice(0, depth)) add(x.value, Number(x.flows), bound);
    }
    for (const p of pieces) {
      if (p.span !== 'raw') continue;
      if (dim === 'src' && cacheOf(db)) {
        for (const [value, c] of sourceMinutes(db, p.from, p.to))
          add(value, c[measure === 'flows' ? 0 : 1], 0);
        continue;
      }
      for (const x of all<{ value: unknown; flows: number }>(
        db,
        `SELECT ${raw.value} AS value, ${measure === 'flows' ? raw.flows : raw.refused} AS flows FROM events
           WHERE ${raw.where} AND opened_at >= @f AND opened_at < @t GROUP BY 1`,
        { f: p.from, t: p.to },
      )) {
        add(x.value, Number(x.flows), 0);
      }
    }
    const lows = [...seen.values()].map((m) => m[0]).sort((a, b) => b - a);
    const kth = lows.length >= top ? lows[top - 1]! : -1;
    if (unseen === 0) {
      const of = (n: number, m: 'flows' | 'refused') => (measure === m ? n : 0);
      return rank(
        [...seen].map(([value, m]) => ({
          t: 0,
          value,
          flows: of(m[0], 'flows'),
          refused: of(m[0], 'refused'),
        })),
      );
    }
    // A value never seen may reach `unseen`; it must stay below the top-th lower count.
    if (kth < 0 || unseen >= kth) continue;
    const left = [...seen].filter(([, m]) => m[0] + unseen - m[1] >= kth).map(([v]) => v);
    return rank(counts(db, r, dim, null, left));
  }
  return rank(counts(db, r, dim, null));
}

/** The `top` ports by flows (ties: the lower port first). */
function portsByFlows(db: Database, r: Range, top: number): { port: number; flows: number }[] {
  const sums = portSums(db, r);
  if (sums) return topOf(sums, top);
  return topCounts(db, r, 'port', top, (a, b) => Number(a) - Number(b)).map((x) => ({
    port: Number(x.value),
    flows: x.flows,
  }));
}

/** The `top` destination ports with the most flows in the range. */
export function topPorts(db: Database, r: Range, top = 20): PortRow[] {
  if (!fromRollup(db)) return rawTopPorts(db, r, top);
  const ports = portsByFlows(db, r, top);
  if (!ports.length) return [];
  if (fromSketches(db)) {
    const sk = distinctOf(
      db,
      r,
      'port',
      ports.map((p) => p.port),
    );
    return ports.map((p) => {
      const x = sk.get(p.port)!;
      return { port: p.port, flows: p.flows, sources: x.count(), sourcesEstimated: x.dense };
    });
  }
  // Distinct sources per port without the sketches (a store still counting them): from
  // the events, one pass over the range's flows (\`+\`: through the dst_port index the
  // table is read at random, 337 against 186 ms for the last hour of 10 million events).
  const distinct = new Map(
    all<{ port: number; n: number }>(
      db,
      `SELECT dst_port AS port, count(DISTINCT src_ip) AS n FROM events
         WHERE ${FLOWS} AND +dst_port IN (${ports.map((p) => Number(p.port)).join(',')}) GROUP BY dst_port`,
      window(r),
    ).map((x) => [Number(x.port), Number(x.n)]),
  );
  return ports.map((p) => ({
    port: p.port,
    flows: p.flows,
    sources: distinct.get(p.port) ?? 0,
    sourcesEstimated: false,
  }));
}
/** Flows per destination port (the `top` busiest) and slot: the port-by-hour heat map. */
export function heatmap(db: Database, r: Range, top = 12): Heatmap {
  if (!fromRollup(db)) return rawHeatmap(db, r, top);
  const since = Math.floor(r.since / r.heatMs) * r.heatMs;
  const slots = Math.ceil((r.until - since) / r.heatMs);
  const times = Array.from({ length: slots }, (_, i) => since + i * r.heatMs);
  const ports = portsByFlows(db, r, top).map((p) => p.port);
  const table = ports.map(() => new Array<number>(slots).fill(0));
  let max = 0;
  if (ports.length) {
    const index = new Map(ports.map((p, i) => [p, i]));
    for (const x of counts(db, r, 'port', r.heatMs, ports)) {
      const i = index.get(Number(x.value));
      const j = Math.floor((x.t - since) / r.heatMs);
      if (i === undefined || j < 0 || j >= slots) continue;
      table[i]![j] = x.flows;
      if (x.flows > max) max = x.flows;
    }
  }
  return { range: r.name, since, slotMs: r.heatMs, times, ports, counts: table, max };
}

/** Flows per detected protocol ('unknown' when none was detected), most first. */
export function protocolMix(db: Database, r: Range): { protocol: string; flows: number }[] {
  if (!fromRollup(db)) return rawProtocolMix(db, r);
  return [...merge(counts(db, r, 'protocol', null), noneAs('unknown'))]
    .map(([protocol, c]) => ({ protocol, flows: c.flows }))
    .sort((a, b) => b.flows - a.flows || binary(a.protocol, b.protocol));
}

/** Refused flows by reason and source, and flows cut short by a limit, in the range. */
export function refusals(db: Database, r: Range): Refusals {
  if (!fromRollup(db)) return rawRefusals(db, r);
  const ends = new Set(LIMIT_ENDS);
  return {
    byReason: [...merge(counts(db, r, 'reason', null), noneAs('unknown'))]
      .map(([reason, c]) => ({ reason, flows: c.refused }))
      .sort((a, b) => b.flows - a.flows || binary(a.reason, b.reason)),
    topSources: refusedSources(db, r),
    limitEnds: counts(db, r, 'close', null)
      .filter((x) => ends.has(String(x.value)))
      .map((x) => ({ reason: String(x.value), flows: x.flows }))
      .sort((a, b) => b.flows - a.flows || binary(a.reason, b.reason)),
  };
}

/** The store's schema version, read once per connection. */
const VERSION = new WeakMap<Database, number>();
function version(db: Database): number {
  let v = VERSION.get(db);
  if (v === undefined) {
    v = Number(db.pragma('user_version'));
    VERSION.set(db, v);
  }
  return v;
}

/** The 10 sources with the most refused flows (tallies for all sources, '*', left out). */
function refusedSources(db: Database, r: Range): Refusals['topSources'] {
  if (version(db) < MIGRATIONS.indexOf(ROLLUP_REFUSED_SCHEMA) + 1) {
    // A store not yet upgraded: from the tallies, one per source and interval.
    return all(
      db,
      `SELECT src_ip AS ip, sum(count) AS flows FROM events WHERE ${REFUSED} AND src_ip != '*'
         GROUP BY src_ip ORDER BY flows DESC, ip LIMIT 10`,
      window(r),
    );
  }
  // One more than shown: the tallies for all sources ('*') may be among them.
  return topCounts(db, r, 'rsrc', 11, (a, b) => binary(String(a), String(b)), 'refused')
    .filter((x) => x.value !== '*')
    .map((x) => ({ ip: String(x.value), flows: x.refused }))
    .slice(0, 10);
}

/** Totals of the range, the sensors seen in it, and the latest firewall notes. */
export function overview(db: Database, r: Range): Overview {
  if (!fromRollup(db)) return rawOverview(db, r);
  let flows = 0;
  let refused = 0;
  for (const x of counts(db, r, 'all', null)) {
    flows += x.flows;
    refused += x.refused;
  }
  let bytesIn = 0;
  for (const x of counts(db, r, 'bytes', null)) bytesIn += x.flows;
  const last = db.prepare(
    `SELECT opened_at AS t FROM events INDEXED BY events_sensor
       WHERE sensor = @sensor AND opened_at >= @since AND opened_at < @until AND type = 'flow'
       ORDER BY opened_at DESC LIMIT 1`,
  );
  const sensors = counts(db, r, 'sensor', null)
    .map((x) => ({ sensor: String(x.value), flows: x.flows }))
    .sort((a, b) => b.flows - a.flows || binary(a.sensor, b.sensor))
    .slice(0, 50)
    .map((s) => ({
      ...s,
      last: Number((last.get({ sensor: s.sensor, ...window(r) }) as { t: number } | undefined)?.t ?? 0),
    }));
  return {
    range: r.name,
    flows,
    refused,
    ...distinctSources(db, r),
    bytesIn,
    sensors,
    firewall: latestFirewall(db, r),
  };
}

/** Distinct sources with a flow in the range: the rollup's hourly and daily source rows, and the events of the rest. */
function distinctSources(db: Database, r: Range): { sources: number; sourcesEstimated: boolean } {
  if (fromSketches(db)) {
    const x = distinctOf(db, r, 'all', ['']).get('')!;
    return { sources: x.count(), sourcesEstimated: x.dense };
  }
  const pieces = plan(db, r.since, r.until, DIM_SPANS.src, 'src');
  if (!pieces.length) return { sources: 0, sourcesEstimated: false };
  const params: Record<string, unknown> = {};
  const parts = pieces.map((p, i) => {
    params[`f${i}`] = p.from;
    params[`t${i}`] = p.to;
    return p.span === 'raw'
      ? `SELECT src_ip AS v FROM events WHERE type = 'flow' AND opened_at >= @f${i} AND opened_at < @t${i}`
      : `SELECT value AS v FROM rollup WHERE span = '${p.span}' AND dim = 'src' AND bucket >= @f${i} AND bucket < @t${i} AND flows > 0`;
  });
  const row = db.prepare(`SELECT count(DISTINCT v) AS n FROM (${parts.join(' UNION ALL ')})`).get(params) as {
    n: number;
  };
  return { sources: Number(row.n), sourcesEstimated: false };
}

function latestFirewall(db: Database, r: Range): Overview['firewall'] {
  return all(
    db,
    `SELECT opened_at AS at, detail, sensor FROM events
       WHERE type = 'firewall' AND opened_at >= @since AND opened_at < @until
       ORDER BY opened_at DESC LIMIT 5`,
    window(r),
  );
}

// What the rollup's whole buckets hold for the top lists, kept between calls (in the
// dashboard's worker thread). A week's top ports sum every port row of the range (the
// seeded tail is too flat for topCounts' early stop: some 650,000 rows), and a top
// source's ports and protocols are its flows, read at random through the src_ip index.
// A bucket's rows only ever grow (late events, a fleet's sensors catching up), so a kept
// bucket is used only while its count in the rollup is still the one it was read at.

/** A port bucket: its ports and their flows, and their sum (the bucket's 'all' flows when read). */
interface PortBucket {
  ports: Uint16Array;
  flows: Float64Array;
  total: number;
}
/** A source's flows in one bucket: how many, when, to which ports, in which protocols. */
interface Detail {
  flows: number;
  first: number;
  last: number;
  ports: string[];
  protocols: string[];
}
/** A minute's flows and refused flows per source, and their sums (the minute's 'all' row when read). */
interface Minute {
  flows: number;
  refused: number;
  values: [string, [number, number]][];
}
interface StoreCache {
  ports: Map<string, PortBucket>;
  minutes: Map<string, Minute>;
  portRows: number; // the ports kept, over all buckets
  details: Map<string, Detail>;
}
const MAX_STORES = 4;
const MAX_PORT_ROWS = 2_000_000; // ~20 MB: three ranges of a busy store
const MAX_DETAILS = 20_000;
const MAX_MINUTES = 240; // two ranges' first and last hours
const CACHES = new Map<string, StoreCache>();
const CACHE_OF = new WeakMap<Database, StoreCache | null>();

/** The cache of the store `db` reads (by file and inode: a store made again at a path is another), or null in memory. */
function cacheOf(db: Database): StoreCache | null {
  let c = CACHE_OF.get(db);
  if (c !== undefined) return c;
  c = null;
  const file = (db.prepare('PRAGMA database_list').get() as { file?: string } | undefined)?.file;
  if (file) {
    try {
      const st = statSync(file);
      const key = `${file}|${st.dev}|${st.ino}|${st.birthtimeMs}`;
      c = CACHES.get(key) ?? null;
      if (c) CACHES.delete(key); // most recently used last
      c ??= { ports: new Map(), minutes: new Map(), portRows: 0, details: new Map() };
      CACHES.set(key, c);
      while (CACHES.size > MAX_STORES) CACHES.delete(CACHES.keys().next().value!);
    } catch {
      c = null;
    }
  }
  CACHE_OF.set(db, c);
  return c;
}

/** `m`'s entry for `key`, moved to the end (the oldest go first). */
function touch<V>(m: Map<string, V>, key: string): V | undefined {
  const v = m.get(key);
  if (v !== undefined) {
    m.delete(key);
    m.set(key, v);
  }
  return v;
}

const isPort = (v: unknown): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 65535;
const num = (v: unknown): unknown => (typeof v === 'bigint' ? Number(v) : v);

/**
 * Flows per destination port (index: the port) in the range: the kept sums of the
 * rollup's whole buckets, and the events of the rest. Null when a stored port is not one
 * of 0..65535 (topCounts answers then).
 */
function portSums(db: Database, r: Range): Float64Array | null {
  return drain(portSumsSteps(db, r));
}

/** portSums, pausing after each bucket it reads from the rollup (warmTopLists). */
function* portSumsSteps(db: Database, r: Range): Generator<void, Float64Array | null> {
  const cache = cacheOf(db);
  if (!cache) return null;
  const sums = new Float64Array(65536);
  const total = db.prepare(
    "SELECT flows FROM rollup WHERE span = @span AND dim = 'all' AND bucket = @bucket AND value = ''",
  );
  const rows = db.prepare(
    "SELECT value, flows FROM rollup WHERE span = @span AND dim = 'port' AND bucket = @bucket",
  );
  for (const p of plan(db, r.since, r.until, DIM_SPANS.port)) {
    if (p.span === 'raw') {
      for (const x of all<{ port: unknown; n: number }>(
        db,
        `SELECT dst_port AS port, count(*) AS n FROM events WHERE ${FLOWS} GROUP BY 1`,
        { since: p.from, until: p.to },
      )) {
        const port = num(x.port);
        if (!isPort(port)) return null;
        sums[port]! += Number(x.n);
      }
      continue;
    }
    const ms = SPAN_MS[p.span];
    for (let bucket = p.from; bucket < p.to; bucket += ms) {
      const key = `${p.span}|${bucket}`;
      const want = Number((total.get({ span: p.span, bucket }) as { flows: number } | undefined)?.flows ?? 0);
      let b = touch(cache.ports, key);
      if (!b || b.total !== want) {
        if (b) {
          cache.ports.delete(key);
          cache.portRows -= b.ports.length;
        }
        const read = [...rows.iterate({ span: p.span, bucket })] as unknown as {
          value: unknown;
          flows: number;
        }[];
        b = { ports: new Uint16Array(read.length), flows: new Float64Array(read.length), total: 0 };
        for (let i = 0; i < read.length; i++) {
          const port = num(read[i]!.value);
          if (!isPort(port)) return null;
          b.ports[i] = port;
          b.flows[i] = Number(read[i]!.flows);
          b.total += b.flows[i]!;
        }
        // Kept only as the total read says it is (a write between the two reads: read it again next time).
        if (b.total === want) {
          cache.ports.set(key, b);
          cache.portRows += read.length;
          while (cache.portRows > MAX_PORT_ROWS) {
            const [k, old] = cache.ports.entries().next().value!;
            cache.ports.delete(k);
            cache.portRows -= old.ports.length;
          }
        }
        yield;
      }
      for (let i = 0; i < b.ports.length; i++) sums[b.ports[i]!]! += b.flows[i]!;
    }
  }
  return sums;
}

/** The `top` ports of `sums` with flows, most first (ties: the lower port first). */
function topOf(sums: Float64Array, top: number): { port: number; flows: number }[] {
  const best: { port: number; flows: number }[] = [];
  for (let port = 0; port < sums.length; port++) {
    const flows = sums[port]!;
    if (flows <= 0 || (best.length >= top && flows <= best[best.length - 1]!.flows)) continue;
    let i = best.length;
    while (i > 0 && best[i - 1]!.flows < flows) i--;
    best.splice(i, 0, { port, flows });
    if (best.length > top) best.pop();
  }
  return best;
}

/**
 * The flows of source `ip` in the range: the kept details of the rollup's whole buckets
 * (each checked against the source's count there), and the events of the rest.
 */
function sourceDetail(db: Database, pieces: Piece[], ip: string): Detail {
  return drain(sourceDetailSteps(db, pieces, ip));
}

/** sourceDetail, pausing after each bucket it reads from the events (warmTopLists). */
function* sourceDetailSteps(db: Database, pieces: Piece[], ip: string): Generator<void, Detail> {
  const cache = cacheOf(db);
  const read = db.prepare(
    `SELECT count(*) AS n, min(opened_at) AS first, max(opened_at) AS last, group_concat(DISTINCT dst_port) AS ports,
            group_concat(DISTINCT coalesce(protocol, 'unknown')) AS protocols
       FROM events INDEXED BY events_src_ip
       WHERE src_ip = @ip AND opened_at >= @f AND opened_at < @t AND type = 'flow'`,
  );
  const stretch = (f: number, t: number): Detail => {
    const d = read.get({ ip, f, t }) as {
      n: number;
      first: number | null;
      last: number | null;
      ports: string | null;
      protocols: string | null;
    };
    return {
      flows: Number(d.n),
      first: Number(d.first ?? Number.POSITIVE_INFINITY),
      last: Number(d.last ?? Number.NEGATIVE_INFINITY),
      ports: (d.ports ?? '').split(','),
      protocols: (d.protocols ?? '').split(','),
    };
  };
  const count = db.prepare(
    "SELECT flows FROM rollup WHERE span = @span AND dim = 'src' AND bucket = @bucket AND value = @ip",
  );
  const parts: Detail[] = [];
  for (const p of pieces) {
    if (p.span === 'raw') {
      parts.push(stretch(p.from, p.to));
      continue;
    }
    const ms = SPAN_MS[p.span];
    for (let bucket = p.from; bucket < p.to; bucket += ms) {
      const want = Number(
        (count.get({ span: p.span, bucket, ip }) as { flows: number } | undefined)?.flows ?? 0,
      );
      if (want === 0) continue;
      const key = `${p.span}|${bucket}|${ip}`;
      let d = cache ? touch(cache.details, key) : undefined;
      if (!d || d.flows !== want) {
        // An hour at a time (a busy source's day is ~25,000 flows here: 0.6 s in one step).
        const hours: Detail[] = [];
        for (let h = bucket; h < bucket + ms; h += HOUR_MS) {
          hours.push(stretch(h, Math.min(h + HOUR_MS, bucket + ms)));
          yield;
        }
        d = union(hours);
        if (cache && d.flows === want) {
          cache.details.set(key, d);
          if (cache.details.size > MAX_DETAILS) cache.details.delete(cache.details.keys().next().value!);
        }
      }
      parts.push(d);
    }
  }
  return union(parts);
}

/** The flows of `parts` (stretches of one source's) together. */
function union(parts: Detail[]): Detail {
  const out: Detail = {
    flows: 0,
    first: Number.POSITIVE_INFINITY,
    last: Number.NEGATIVE_INFINITY,
    ports: [],
    protocols: [],
  };
  const ports = new Set<string>();
  const protocols = new Set<string>();
  for (const d of parts) {
    out.flows += d.flows;
    out.first = Math.min(out.first, d.first);
    out.last = Math.max(out.last, d.last);
    for (const x of d.ports) if (x) ports.add(x);
    for (const x of d.protocols) if (x) protocols.add(x);
  }
  out.ports = [...ports];
  out.protocols = [...protocols];
  return out;
}

/**
 * Flows and refused flows per source in [from, to) from the events (sources have no minute
 * rows: the last partial hour of a range, an hour of a busy store). Whole minutes are kept,
 * each checked against the rollup's minute total ('all') on every use.
 */
function sourceMinutes(db: Database, from: number, to: number): Map<string, [number, number]> {
  const cache = cacheOf(db)!;
  const out = new Map<string, [number, number]>();
  const read = db.prepare(
    `SELECT src_ip AS value, ${RAW_DIMS.src.flows} AS flows, ${RAW_DIMS.src.refused} AS refused FROM events
       WHERE ${RAW_DIMS.src.where} AND opened_at >= @f AND opened_at < @t GROUP BY 1`,
  );
  const total = db.prepare(
    "SELECT flows, refused FROM rollup WHERE span = 'm' AND dim = 'all' AND bucket = @bucket AND value = ''",
  );
  const stretch = (f: number, t: number): Minute => {
    const m: Minute = { flows: 0, refused: 0, values: [] };
    for (const x of read.iterate({ f, t }) as unknown as IterableIterator<{
      value: unknown;
      flows: number;
      refused: number;
    }>) {
      const c: [number, number] = [Number(x.flows), Number(x.refused)];
      m.values.push([String(x.value), c]);
      m.flows += c[0];
      m.refused += c[1];
    }
    return m;
  };
  const parts: Minute[] = [];
  let at = from;
  while (at < to) {
    const next = Math.min(to, at - (at % MINUTE_MS) + MINUTE_MS);
    if (at % MINUTE_MS !== 0 || next - at < MINUTE_MS) {
      parts.push(stretch(at, next));
    } else {
      const want = total.get({ bucket: at }) as { flows: number; refused: number } | undefined;
      const flows = Number(want?.flows ?? 0);
      const refused = Number(want?.refused ?? 0);
      const key = `m|${at}`;
      let m = touch(cache.minutes, key);
      if (!m || m.flows !== flows || m.refused !== refused) {
        m = stretch(at, next);
        if (m.flows === flows && m.refused === refused) {
          cache.minutes.set(key, m);
          if (cache.minutes.size > MAX_MINUTES) cache.minutes.delete(cache.minutes.keys().next().value!);
        }
      }
      parts.push(m);
    }
    at = next;
  }
  for (const m of parts) {
    for (const [v, c] of m.values) {
      const o = out.get(v);
      if (o) {
        o[0] += c[0];
        o[1] += c[1];
      } else out.set(v, [c[0], c[1]]);
    }
  }
  return out;
}

/** Runs `steps` to its end. */
function drain<T>(steps: Generator<void, T>): T {
  for (;;) {
    const x = steps.next();
    if (x.done) return x.value;
  }
}

/**
 * Reads into the kept buckets what the top lists of the last day and week need, a bucket
 * at a time (each step a few ms, at most ~100 for a day of ports), so that the dashboard's
 * worker can do it between requests: on 10 million events a week's top sources read
 * seconds of flows the first time.
 */
export function* warmTopLists(db: Database, now: number): Generator<void, void> {
  if (!fromRollup(db) || !cacheOf(db)) return;
  for (const name of ['24h', '7d'] as const) {
    const r = toRange(name, now);
    yield* portSumsSteps(db, r);
    const pieces = plan(db, r.since, r.until, DIM_SPANS.src, 'src');
    if (pieces.every((p) => p.span === 'raw')) continue;
    const best = topCounts(db, r, 'src', 20, (a, b) => binary(String(a), String(b)));
    yield;
    for (const b of best) if (b.flows > 0) yield* sourceDetailSteps(db, pieces, String(b.value));
  }
}

/** The `top` sources with the most flows in the range. */
export function topSources(db: Database, r: Range, top = 20): SourceRow[] {
  // Sources have no minute rows: a range without a whole hour in it is all events, and the
  // raw query's one pass over them is quicker than an index read per source below.
  if (!fromRollup(db) || plan(db, r.since, r.until, DIM_SPANS.src, 'src').every((p) => p.span === 'raw')) {
    return rawTopSources(db, r, top);
  }
  const best = topCounts(db, r, 'src', top, (a, b) => binary(String(a), String(b)))
    .filter((x) => x.flows > 0)
    .map((x) => ({ ip: String(x.value), flows: x.flows }));
  // First and last seen, ports and protocols: each source's flows in the range, through the
  // (src_ip, opened_at) index, per bucket (kept: sourceDetail).
  const pieces = plan(db, r.since, r.until, DIM_SPANS.src, 'src');
  return best.map((b) => {
    const d = sourceDetail(db, pieces, b.ip);
    const ports = d.ports.map(Number).sort((x, y) => x - y);
    return {
      ip: b.ip,
      flows: b.flows,
      first: d.first,
      last: d.last,
      ports: ports.slice(0, 12),
      portCount: ports.length,
      protocols: d.protocols.sort(),
    };
  });
}

export const VIEWS = [
  'overview',
  'timeline',
  'sources',
  'ports',
  'heatmap',
  'protocols',
  'refusals',
] as const;
export type View = (typeof VIEWS)[number];

/** What the page asks of one view: its name, the range's name and, for the timeline, the grouping. */
export interface ViewRequest {
  view: View;
  range: string | null;
  by: string | null;
  now: number;
}

/**
 * The answer of one view over the store at `dbPath` (the body of GET /api/stats/VIEW).
 * Throws HG_ERR_EVENTS_QUERY on a bad range or grouping, or when the store cannot be read.
 */
export function runView(dbPath: string, req: ViewRequest): unknown {
  const r = toRange(req.range, req.now);
  let by: (typeof GROUPINGS)[number] = 'action';
  if (req.view === 'timeline' && req.by !== null) {
    if (!(GROUPINGS as readonly string[]).includes(req.by)) {
      throw new HoneygateError(
        'HG_ERR_EVENTS_QUERY',
        `by: "${req.by}" is not one of ${GROUPINGS.join(', ')}`,
      );
    }
    by = req.by as (typeof GROUPINGS)[number];
  }
  return withStore(dbPath, (db) => {
    switch (req.view) {
      case 'overview':
        return overview(db, r);
      case 'timeline':
        return timeline(db, r, by);
      case 'sources':
        return { range: r.name, sources: topSources(db, r) };
      case 'ports':
        return { range: r.name, ports: topPorts(db, r) };
      case 'heatmap':
        return heatmap(db, r);
      case 'protocols':
        return { range: r.name, protocols: protocolMix(db, r) };
      case 'refusals':
        return { range: r.name, ...refusals(db, r) };
    }
  });
}
