// Reads the SQLite event store for `honeygate events` (and anything else that wants
// past flows). Opens read-only, so it is safe next to a running gateway.

import type { PortRange } from '../config/types.js';
import { HoneygateError } from '../errors.js';
import { cidrContains, parseCidr } from '../net/address.js';
import type { FlowEvent } from './event.js';
import { type EventRow, rowToEvent } from './row.js';
import { APPLICATION_ID } from './sqlite.js';
import { type Database, openDatabase } from './sqlite-driver.js';

export interface EventQuery {
  since?: number; // opened at or after, epoch ms
  until?: number; // opened at or before, epoch ms
  src?: string; // IP or CIDR
  dstPort?: number | PortRange[]; // one port, or ranges (inclusive)
  route?: string;
  action?: string;
  type?: string;
  sensor?: string; // the gateway that recorded it (a collector's store holds many)
  country?: string; // the source's country (events.enrich), ISO 3166 alpha-2, upper case
  asn?: number; // the source's autonomous system number (events.enrich)
  limit?: number; // default 100
}

export const DEFAULT_LIMIT = 100;

/**
 * Events matching `q`, newest (by time opened) first. Throws HG_ERR_EVENTS_QUERY when
 * `dbPath` is missing or not a honeygate store, or when `q.src` is not an IP or CIDR.
 */
export function queryEvents(dbPath: string, q: EventQuery): FlowEvent[] {
  const limit = q.limit ?? DEFAULT_LIMIT;
  if (!Number.isInteger(limit) || limit < 0) {
    throw new HoneygateError('HG_ERR_EVENTS_QUERY', `limit must be a whole number >= 0, got ${limit}`);
  }
  const { where, params, cidr } = filters(q);

  const db = openStore(dbPath);
  try {
    // A source block can match a few rows or most of the store. Counted in the src_ip index
    // up to a bound first: few, and the index finds them (sorted in memory); many, and the
    // newest-first walk of the opened_at index meets enough of them soon, where sorting
    // millions of rows would take minutes.
    const wide = cidr !== null && manyInBlock(db, where, params);
    const sql =
      `SELECT * FROM events${wide ? ' INDEXED BY events_opened_at' : ''}${where.length ? ` WHERE ${where.join(' AND ')}` : ''}` +
      ' ORDER BY opened_at DESC, seq DESC' +
      (cidr ? '' : ' LIMIT @limit');
    if (!cidr) params.limit = limit;
    const out: FlowEvent[] = [];
    if (limit === 0) return out;
    for (const row of db.prepare(sql).iterate(params) as unknown as IterableIterator<EventRow>) {
      if (cidr && !cidrContains(cidr, row.src_ip)) continue;
      out.push(rowToEvent(row));
      if (out.length >= limit) break;
    }
    return out;
  } catch (err) {
    if (err instanceof HoneygateError) throw err;
    throw new HoneygateError('HG_ERR_EVENTS_QUERY', `${dbPath}: ${(err as Error).message}`, { cause: err });
  } finally {
    db.close();
  }
}

type Cidr = ReturnType<typeof parseCidr>;

/** Rows of a source block beyond which its query walks the store newest first. */
const BLOCK_SORT_MAX = 20_000;

/** True when more than BLOCK_SORT_MAX rows match (counted in an index, up to the bound). */
function manyInBlock(db: Database, where: string[], params: Record<string, unknown>): boolean {
  const { limit: _limit, ...rest } = params;
  const sql = `SELECT count(*) AS n FROM (SELECT 1 FROM events WHERE ${where.join(' AND ')} LIMIT ${BLOCK_SORT_MAX + 1})`;
  const row = db.prepare(sql).get(rest) as { n: number } | undefined;
  return Number(row?.n ?? 0) > BLOCK_SORT_MAX;
}

// The WHERE terms of `q` (all but `limit`). A source block SQL cannot express exactly is
// narrowed in SQL and decided by `cidr` on each row.
function filters(q: EventQuery): { where: string[]; params: Record<string, unknown>; cidr: Cidr | null } {
  const where: string[] = [];
  const params: Record<string, unknown> = {};
  const add = (sql: string, name: string, value: unknown) => {
    where.push(sql);
    params[name] = value;
  };
  if (q.since !== undefined) add('opened_at >= @since', 'since', q.since);
  if (q.until !== undefined) add('opened_at <= @until', 'until', q.until);
  const onePort =
    typeof q.dstPort === 'number'
      ? q.dstPort
      : q.dstPort?.length === 1 && q.dstPort[0]!.from === q.dstPort[0]!.to
        ? q.dstPort[0]!.from
        : null;
  // One port as an equality: the (dst_port, opened_at) index then reads newest first, unsorted.
  if (onePort !== null) add('dst_port = @dstPort', 'dstPort', onePort);
  else if (typeof q.dstPort !== 'number' && q.dstPort?.length) {
    const parts = q.dstPort.map((r, i) => {
      params[`portFrom${i}`] = r.from;
      params[`portTo${i}`] = r.to;
      return `dst_port BETWEEN @portFrom${i} AND @portTo${i}`;
    });
    where.push(`(${parts.join(' OR ')})`);
  }
  if (q.route !== undefined) add('route = @route', 'route', q.route);
  if (q.action !== undefined) add('action = @action', 'action', q.action);
  if (q.type !== undefined) add('type = @type', 'type', q.type);
  if (q.sensor !== undefined) add('sensor = @sensor', 'sensor', q.sensor);
  if (q.country !== undefined) add('src_country = @country', 'country', q.country);
  if (q.asn !== undefined) add('src_asn = @asn', 'asn', q.asn);

  let cidr: Cidr | null = null;
  if (q.src !== undefined) {
    try {
      cidr = parseCidr(q.src);
    } catch (err) {
      throw new HoneygateError('HG_ERR_EVENTS_QUERY', `src: ${(err as Error).message}`, { cause: err });
    }
    // SQL narrows by text (using the src_ip index where it can); cidrContains decides.
    const range = ipv4TextRange(cidr.bytes, cidr.family, cidr.prefix);
    if (range) {
      add('src_ip >= @srcLow', 'srcLow', range[0]);
      add('src_ip < @srcHigh', 'srcHigh', range[1]);
    } else {
      where.push(cidr.family === 4 ? "instr(src_ip, ':') = 0" : "instr(src_ip, ':') > 0");
    }
  }

  return { where, params, cidr };
}

/** Counts behind `honeygate events --summary`: what came, from where, to which ports. */
export interface EventSummary {
  flows: number; // flow events (one per connection; updates are not counted again)
  refused: number; // flows refused at admission (the sum of the rejected tallies)
  sources: number; // distinct source addresses, flows and refusals
  first: number | null; // earliest opened_at, epoch ms
  last: number | null;
  top: {
    sources: [string, number][];
    ports: [number, number][];
    protocols: [string, number][];
    userAgents: [string, number][];
    sshClients: [string, number][];
    reasons: [string, number][];
  };
}

/**
 * Tallies the events matching `q` (its `limit` is ignored; `top` entries per list). One
 * pass over the rows in SQLite's order; user agents and SSH versions are read from the
 * stored protocol fields with json_extract. Throws as queryEvents does.
 */
export function summarizeEvents(dbPath: string, q: EventQuery, top = 10): EventSummary {
  const { where, params, cidr } = filters(q);
  where.push("type IN ('flow', 'rejected')");
  const sql =
    'SELECT type, src_ip, dst_port, protocol, close_reason, count, opened_at,' +
    " json_extract(protocol_fields, '$.userAgent') AS ua, json_extract(protocol_fields, '$.clientVersion') AS ssh" +
    ` FROM events WHERE ${where.join(' AND ')}`;
  const tally = () => new Map<string | number, number>();
  const sources = tally();
  const ports = tally();
  const protocols = tally();
  const uas = tally();
  const ssh = tally();
  const reasons = tally();
  const add = (m: Map<string | number, number>, k: unknown, n: number) => {
    if (k === null || k === undefined || k === '') return;
    const key = typeof k === 'number' ? k : String(k);
    m.set(key, (m.get(key) ?? 0) + n);
  };
  const out: EventSummary = {
    flows: 0,
    refused: 0,
    sources: 0,
    first: null,
    last: null,
    top: { sources: [], ports: [], protocols: [], userAgents: [], sshClients: [], reasons: [] },
  };
  const db = openStore(dbPath);
  try {
    for (const r of db.prepare(sql).iterate(params) as unknown as IterableIterator<SummaryRow>) {
      if (cidr && !cidrContains(cidr, r.src_ip)) continue;
      const n = r.type === 'rejected' ? r.count : 1;
      if (r.type === 'rejected') out.refused += n;
      else {
        out.flows++;
        add(ports, r.dst_port, 1);
        add(protocols, r.protocol ?? 'unknown', 1);
        add(uas, r.ua, 1);
        add(ssh, r.ssh, 1);
      }
      add(sources, r.src_ip || 'unknown', n);
      add(reasons, r.close_reason, n);
      if (out.first === null || r.opened_at < out.first) out.first = r.opened_at;
      if (out.last === null || r.opened_at > out.last) out.last = r.opened_at;
    }
  } catch (err) {
    if (err instanceof HoneygateError) throw err;
    throw new HoneygateError('HG_ERR_EVENTS_QUERY', `${dbPath}: ${(err as Error).message}`, { cause: err });
  } finally {
    db.close();
  }
  const best = <K>(m: Map<string | number, number>) =>
    [...m].sort((a, b) => b[1] - a[1] || String(a[0]).localeCompare(String(b[0]))).slice(0, top) as [
      K,
      number,
    ][];
  sources.delete('*'); // a tally over many sources (the tally table was full) names none
  out.sources = sources.size;
  out.top = {
    sources: best<string>(sources),
    ports: best<number>(ports),
    protocols: best<string>(protocols),
    userAgents: best<string>(uas),
    sshClients: best<string>(ssh),
    reasons: best<string>(reasons),
  };
  return out;
}

interface SummaryRow {
  type: string;
  src_ip: string;
  dst_port: number;
  protocol: string | null;
  close_reason: string | null;
  count: number;
  opened_at: number;
  ua: string | null;
  ssh: string | null;
}

/**
 * Calls `onEvents` with the events matching `q` recorded after the store's current last
 * row, in the order they were recorded, polling every `intervalMs` (by rowid, so it costs
 * an index lookup when nothing is new) until `signal` aborts. `q.limit` is ignored; with
 * `backlog` > 0 the last `backlog` matching events come first. Resolves when aborted.
 */
export async function followEvents(
  dbPath: string,
  q: EventQuery,
  onEvents: (events: FlowEvent[]) => void,
  signal: AbortSignal,
  opts: { intervalMs?: number; backlog?: number } = {},
): Promise<void> {
  const { where, params, cidr } = filters(q);
  const db = openStore(dbPath);
  try {
    const cond = where.length ? ` AND ${where.join(' AND ')}` : '';
    const newer = db.prepare(`SELECT * FROM events WHERE seq > @after${cond} ORDER BY seq LIMIT 1000`);
    const top = db.prepare('SELECT max(seq) AS seq FROM events').get() as { seq: number | null } | undefined;
    let after = top?.seq ?? 0;
    const backlog = opts.backlog ?? 0;
    if (backlog > 0) {
      const recent = queryEvents(dbPath, { ...q, limit: backlog });
      if (recent.length) onEvents(recent.reverse());
    }
    while (!signal.aborted) {
      const rows = [...(newer.iterate({ ...params, after }) as unknown as IterableIterator<EventRow>)];
      if (rows.length) after = rows[rows.length - 1]!.seq;
      const events = rows.filter((r) => !cidr || cidrContains(cidr, r.src_ip)).map(rowToEvent);
      if (events.length) onEvents(events);
      if (rows.length === 1000) continue; // more waiting: no pause
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, opts.intervalMs ?? 500);
        function done() {
          clearTimeout(t);
          signal.removeEventListener('abort', done);
          resolve();
        }
        signal.addEventListener('abort', done, { once: true });
      });
    }
  } catch (err) {
    if (err instanceof HoneygateError) throw err;
    throw new HoneygateError('HG_ERR_EVENTS_QUERY', `${dbPath}: ${(err as Error).message}`, { cause: err });
  } finally {
    db.close();
  }
}

/** The store at `dbPath`, read-only; throws HG_ERR_EVENTS_QUERY when it is missing or not a honeygate store. */
export function openStore(dbPath: string): Database {
  let db: Database;
  try {
    db = openDatabase(dbPath, { readonly: true });
  } catch (err) {
    throw noStore(dbPath, (err as Error).message, err);
  }
  try {
    const appId = db.pragma('application_id');
    if (appId !== APPLICATION_ID) throw noStore(dbPath, 'the file is not a honeygate event store');
    return db;
  } catch (err) {
    db.close();
    if (err instanceof HoneygateError) throw err;
    throw noStore(dbPath, (err as Error).message, err); // e.g. "file is not a database"
  }
}

function noStore(dbPath: string, why: string, cause?: unknown): HoneygateError {
  const hint = 'point at it with --db FILE, or -c CONFIG to take events.sqlite from the config';
  return new HoneygateError('HG_ERR_EVENTS_QUERY', `no event store at ${dbPath} (${why}); ${hint}`, {
    cause,
  });
}

/**
 * For an IPv4 block whose prefix covers whole octets, the text range its addresses sort
 * in: 10.1.0.0/16 -> ["10.1.", "10.1/") ('/' follows '.' in ASCII). Null otherwise.
 */
function ipv4TextRange(bytes: Buffer, family: 4 | 6, prefix: number): [string, string] | null {
  if (family !== 4 || prefix < 8) return null;
  const octets = Math.floor(prefix / 8);
  if (octets === 4) {
    const ip = [...bytes].join('.');
    return [ip, `${ip}\u0000`];
  }
  const head = `${[...bytes.subarray(0, octets)].join('.')}.`;
  return [head, `${head.slice(0, -1)}/`];
}
