// The dashboard's aggregates: one SQL query (or two) per view over the events table, each
// bounded to a time range so it reads through the opened_at index, never the whole store.
// Flows are the 'flow' rows (one per connection; updates are not counted again);
// refusals are the 'rejected' rows, each a tally of `count` refused flows.
import { HoneygateError } from '../errors.js';
import { openStore } from '../events/query.js';
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
export function timeline(db: Database, r: Range, by: (typeof GROUPINGS)[number]): Timeline {
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
  const named = [...series].sort((a, b) => sum(b[1]) - sum(a[1]) || a[0].localeCompare(b[0]));
  const refused = new Array<number>(slots).fill(0);
  for (const row of all<{ t: number; n: number }>(
    db,
    `SELECT ${slot} AS t, sum(count) AS n FROM events WHERE ${REFUSED} GROUP BY t`,
    params,
  )) {
    const i = Math.floor((row.t - r.since) / r.bucketMs);
    if (i >= 0 && i < slots) refused[i]! += row.n;
  }
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
export function topSources(db: Database, r: Range, top = 20): SourceRow[] {
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
}

/** The `top` destination ports with the most flows in the range. */
export function topPorts(db: Database, r: Range, top = 20): PortRow[] {
  return all<PortRow>(
    db,
    `SELECT dst_port AS port, count(*) AS flows, count(DISTINCT src_ip) AS sources
       FROM events WHERE ${FLOWS} GROUP BY dst_port ORDER BY flows DESC, dst_port LIMIT @top`,
    { ...window(r), top },
  );
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
export function heatmap(db: Database, r: Range, top = 12): Heatmap {
  const since = Math.floor(r.since / r.heatMs) * r.heatMs;
  const slots = Math.ceil((r.until - since) / r.heatMs);
  const times = Array.from({ length: slots }, (_, i) => since + i * r.heatMs);
  const ports = topPorts(db, r, top).map((p) => p.port);
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
export function protocolMix(db: Database, r: Range): { protocol: string; flows: number }[] {
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
export function refusals(db: Database, r: Range): Refusals {
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
  bytesIn: number;
  sensors: { sensor: string; flows: number; last: number }[]; // several in a fleet's central store
  firewall: { at: number; detail: string | null; sensor: string }[]; // the latest firewall events
}

/** Totals of the range, the sensors seen in it, and the latest firewall notes. */
export function overview(db: Database, r: Range): Overview {
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
