// `honeygate events`: query the SQLite event store. Filters map one to one onto
// EventQuery; output is an aligned table for people or JSON lines for scripts.
import type { Command } from 'commander';
import { parsePortRange } from '../config/schema.js';
import type { PortRange } from '../config/types.js';
import type { FlowEvent } from '../events/event.js';
import { escapeBytes } from '../events/format.js';
import { DEFAULT_LIMIT, type EventQuery, queryEvents } from '../events/query.js';
import { formatEndpoint, parseCidr } from '../net/address.js';

export const DEFAULT_DB = './data/events.db';
const ACTIONS = ['forward', 'capture', 'reject', 'drop', 'close'];
const TYPES = ['flow', 'update', 'rejected', 'firewall', 'egress'];
const UNIT_MS: Record<string, number> = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 604800e3 };

export interface EventsOptions {
  config?: string;
  db?: string;
  since?: string;
  until?: string;
  src?: string;
  dstPort?: string;
  route?: string;
  action?: string;
  type?: string;
  limit?: string;
  json?: boolean;
}

export interface Output {
  out: (text: string) => void;
  err: (text: string) => void;
}

class UsageError extends Error {}
/** A usage error already written out (the config's problems): exit 2, print nothing more. */
class Reported extends Error {}

export function register(program: Command): void {
  program
    .command('events')
    .description('query recorded connections (newest first)')
    .option('-c, --config <file>', 'read the event store path from this config (events.sqlite)')
    .option('--db <file>', `the SQLite event store (default ${DEFAULT_DB})`)
    .option('--since <time>', 'opened at or after: ISO time or a duration ago (15m, 2h, 7d)')
    .option('--until <time>', 'opened at or before: ISO time or a duration ago')
    .option('--src <ip|cidr>', 'attacker address or block')
    .option('--dst-port <ports>', 'original destination port(s): 22, 8000-8099 or 22,2222')
    .option('--route <name>', 'route name')
    .option('--action <action>', `route action: ${ACTIONS.join('|')}`)
    .option('--type <type>', `event type: ${TYPES.join('|')}`)
    .option('--limit <n>', `at most this many events (default ${DEFAULT_LIMIT})`)
    .option('--json', 'one JSON object per line (firstBytes in base64)')
    .action(async (opts: EventsOptions) => {
      // `honeygate events | head`: a closed pipe ends the output, it is not a crash.
      process.stdout.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'EPIPE') process.exit(0);
        throw err;
      });
      process.exitCode = await runEvents(opts, {
        out: (t) => process.stdout.write(t),
        err: (t) => process.stderr.write(t),
      });
    });
}

/** Runs the verb; returns the exit code (0 ok, 1 query failed, 2 usage). Never throws. */
export async function runEvents(opts: EventsOptions, io: Output, now = Date.now()): Promise<number> {
  let dbPath: string;
  let query: EventQuery;
  try {
    query = toQuery(opts, now);
    dbPath = await storePath(opts, io);
  } catch (err) {
    if (err instanceof Reported) return 2;
    io.err(`honeygate events: ${(err as Error).message}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
  let events: FlowEvent[];
  try {
    events = queryEvents(dbPath, query);
  } catch (err) {
    io.err(`honeygate events: ${(err as Error).message}\n`);
    return 1;
  }
  if (opts.json) {
    io.out(
      events
        .map((e) => `${JSON.stringify({ ...e, firstBytes: e.firstBytes.toString('base64') })}\n`)
        .join(''),
    );
  } else {
    io.out(formatTable(events));
  }
  return 0;
}

function toQuery(o: EventsOptions, now: number): EventQuery {
  const q: EventQuery = {};
  if (o.since !== undefined) q.since = parseTime('--since', o.since, now);
  if (o.until !== undefined) q.until = parseTime('--until', o.until, now);
  if (o.src !== undefined) {
    try {
      parseCidr(o.src);
    } catch (err) {
      throw new UsageError(`--src: ${(err as Error).message}`);
    }
    q.src = o.src;
  }
  if (o.dstPort !== undefined) q.dstPort = parsePorts('--dst-port', o.dstPort);
  if (o.route !== undefined) q.route = o.route;
  if (o.action !== undefined) q.action = oneOf('--action', o.action, ACTIONS);
  if (o.type !== undefined) q.type = oneOf('--type', o.type, TYPES);
  if (o.limit !== undefined) q.limit = parseWhole('--limit', o.limit, 1, Number.MAX_SAFE_INTEGER);
  return q;
}

async function storePath(o: EventsOptions, io: Output): Promise<string> {
  if (o.config !== undefined && o.db !== undefined) throw new UsageError('give --config or --db, not both');
  if (o.db !== undefined) return o.db;
  if (o.config === undefined) return DEFAULT_DB;
  // Loaded on demand: --db alone needs no config machinery.
  const { loadOrReport } = await import('./load-config.js');
  const loaded = loadOrReport('events', o.config, io.err);
  if (!loaded) throw new Reported();
  if (!loaded.config.events.sqlite)
    throw new UsageError(`${o.config}: events.sqlite is not set, so no store`);
  return loaded.config.events.sqlite;
}

/** "2024-05-01T12:00:00Z" (or any ISO date) or a duration before `now`: 30s, 15m, 2h, 7d, 1w. */
export function parseTime(flag: string, text: string, now: number): number {
  const rel = /^(\d+)([smhdw])$/.exec(text);
  if (rel) return now - Number(rel[1]) * UNIT_MS[rel[2]!]!;
  // A bare date means local midnight, as the table shows local times (Date.parse says UTC).
  const day = /^(\d{4})-(\d{2})-(\d{2})/.exec(text);
  const ms = !day
    ? Number.NaN
    : day[0] === text
      ? new Date(Number(day[1]), Number(day[2]) - 1, Number(day[3])).getTime()
      : Date.parse(text);
  // Date rolls an impossible day over (2024-13-45 is 2025-02-14): refuse it instead.
  if (day && !Number.isNaN(ms) && !isCalendarDay(Number(day[1]), Number(day[2]), Number(day[3]))) {
    throw new UsageError(`${flag}: "${text}" is not a date: ${day[0]} is not a day of the calendar`);
  }
  if (Number.isNaN(ms)) {
    throw new UsageError(
      `${flag}: "${text}" is not an ISO time or a duration like 15m, 2h, 7d (units s m h d w)`,
    );
  }
  return ms;
}

function isCalendarDay(year: number, month: number, day: number): boolean {
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day); // unlike Date.UTC, years below 100 stay themselves
  return d.getUTCFullYear() === year && d.getUTCMonth() === month - 1 && d.getUTCDate() === day;
}

/** "22", "8000-8099", "22,2222,8000-8099" (the config's port syntax, comma-separated). */
function parsePorts(flag: string, text: string): PortRange[] {
  return text.split(',').map((part) => {
    try {
      return parsePortRange(part.trim());
    } catch (err) {
      throw new UsageError(`${flag}: ${(err as Error).message}`);
    }
  });
}

function parseWhole(flag: string, text: string, min: number, max: number): number {
  const n = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!(n >= min && n <= max)) throw new UsageError(`${flag}: "${text}" is not a whole number ${min}-${max}`);
  return n;
}

function oneOf(flag: string, text: string, allowed: string[]): string {
  if (!allowed.includes(text)) throw new UsageError(`${flag}: "${text}" is not one of ${allowed.join(', ')}`);
  return text;
}

const COLUMNS = [
  'TIME',
  'TYPE',
  'SRC',
  'DST',
  'LISTENER',
  'ROUTE',
  'ACTION',
  'SERVER',
  'IN/OUT',
  'DURATION',
  'REASON',
  'PROTO',
  'FIRST BYTES',
];

/** The human table: one row per event, columns padded to their widest cell. */
export function formatTable(events: FlowEvent[]): string {
  const rows = [COLUMNS, ...events.map(tableRow)];
  // A loop, not Math.max(...): spreading 100k+ rows overflows the call stack.
  const widths = COLUMNS.map((_, i) => rows.reduce((w, r) => Math.max(w, r[i]!.length), 0));
  return rows
    .map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  '))
    .map((l) => `${l.trimEnd()}\n`)
    .join('');
}

function tableRow(e: FlowEvent): string[] {
  if (e.type === 'firewall') {
    // Not a flow: what happened to the rules goes where a flow's bytes would.
    const cells = [localTime(e.openedAt), e.type, ...Array<string>(COLUMNS.length - 3).fill('-')];
    return [...cells, (e.detail ?? '').slice(0, 200)].map(printable);
  }
  const server = e.backend || e.server ? `${e.backend ?? '-'}/${e.server ?? '-'}` : '-';
  return [
    localTime(e.openedAt),
    e.type === 'rejected' || e.type === 'egress' ? `${e.type} x${e.count}` : e.type,
    e.src.ip ? formatEndpoint(e.src) : 'unknown', // reset before accept: no address to show
    formatEndpoint(e.dst),
    e.listener,
    e.route ?? '-',
    e.action ?? '-',
    server,
    `${e.bytesIn}/${e.bytesOut}`,
    formatDuration(e.durationMs),
    e.closeReason ?? '-',
    e.protocol ?? '-',
    e.firstBytes.length ? escapeBytes(e.firstBytes, 40) : '-',
  ].map(printable);
}

// Names come from config and classifiers, but nothing reaching a terminal gets to steer it.
function printable(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

/** Local time without milliseconds: 2024-05-01T14:03:07. */
export function localTime(ms: number): string {
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return '-';
  return new Date(ms - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 19);
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
