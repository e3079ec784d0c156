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
  const where: string[] = [];
  const params: Record<string, unknown> = {};
  const add = (sql: string, name: string, value: unknown) => {
    where.push(sql);
    params[name] = value;
  };
  if (q.since !== undefined) add('opened_at >= @since', 'since', q.since);
  if (q.until !== undefined) add('opened_at <= @until', 'until', q.until);
  if (typeof q.dstPort === 'number') add('dst_port = @dstPort', 'dstPort', q.dstPort);
  else if (q.dstPort?.length) {
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

  let cidr: ReturnType<typeof parseCidr> | null = null;
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

  const db = openStore(dbPath);
  try {
    const sql =
      `SELECT * FROM events${where.length ? ` WHERE ${where.join(' AND ')}` : ''}` +
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

function openStore(dbPath: string): Database {
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
