// `honeygate events`: query the SQLite event store. Filters map one to one onto
// EventQuery; output is an aligned table for people or JSON lines for scripts.
import type { Command } from 'commander';
import { parsePortRange } from '../config/schema.js';
import type { PortRange } from '../config/types.js';
import { toEcs } from '../events/ecs.js';
import type { FlowEvent } from '../events/event.js';
import { escapeBytes } from '../events/format.js';
import {
  DEFAULT_LIMIT,
  type EventQuery,
  type EventSummary,
  followEvents,
  queryEvents,
  summarizeEvents,
} from '../events/query.js';
import { formatEndpoint, parseCidr } from '../net/address.js';

export const DEFAULT_DB = './data/events.db';
const ACTIONS = ['forward', 'capture', 'reject', 'drop', 'close'];
const TYPES = ['flow', 'update', 'rejected', 'firewall', 'egress', 'scan'];
const FORMATS = ['native', 'ecs'];
const TABLE_WIDTH = 120; // when stdout is not a terminal that says otherwise
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
  sensor?: string;
  country?: string;
  asn?: string;
  limit?: string;
  json?: boolean;
  format?: string;
  summary?: boolean;
  follow?: boolean;
  wide?: boolean;
}

export interface Output {
  out: (text: string) => void;
  err: (text: string) => void;
  width?: number; // the terminal's columns, when stdout is one
  follow?: (stop: AbortController) => void; // --follow started: how to end it (tests)
}

export class UsageError extends Error {}
/** A usage error already written out (the config's problems): exit 2, print nothing more. */
export class Reported extends Error {}

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
    .option('--sensor <name>', 'recorded by this gateway (events.sensor; a collector store holds many)')
    .option('--country <cc>', "source's country, ISO 3166 code (events.enrich.country): DE, US")
    .option('--asn <n>', "source's autonomous system number (events.enrich.asn): 64500 or AS64500")
    .option('--limit <n>', `at most this many events (default ${DEFAULT_LIMIT})`)
    .option('--json', 'one JSON object per line (firstBytes in base64)')
    .option(
      '--format <format>',
      `with --json: ${FORMATS.join('|')} (ecs: the documents of the JSON lines file)`,
    )
    .option('--summary', 'top sources, ports, protocols, user agents and SSH clients (with --since)')
    .option('-f, --follow', 'print new events as they are recorded (Ctrl-C ends)')
    .option('--wide', 'every column, however wide (the table fits the terminal, 120 columns off one)')
    .action(async (opts: EventsOptions) => {
      // `honeygate events | head`: a closed pipe ends the output, it is not a crash.
      process.stdout.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'EPIPE') process.exit(0);
        throw err;
      });
      process.exitCode = await runEvents(opts, {
        out: (t) => process.stdout.write(t),
        err: (t) => process.stderr.write(t),
        width: process.stdout.isTTY ? Math.max(80, process.stdout.columns) : undefined,
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
  const json = opts.json || opts.format === 'ecs';
  const line = (e: FlowEvent) =>
    opts.format === 'ecs'
      ? `${JSON.stringify(toEcs(e))}\n`
      : `${JSON.stringify({ ...e, firstBytes: e.firstBytes.toString('base64') })}\n`;
  const table: TableOptions = { width: opts.wide ? Number.POSITIVE_INFINITY : (io.width ?? TABLE_WIDTH) };
  try {
    if (opts.summary) {
      const summary = summarizeEvents(dbPath, query);
      io.out(json ? `${JSON.stringify(summary)}\n` : formatSummary(summary, query, now));
      return 0;
    }
    if (opts.follow) {
      let header = !json;
      const ac = new AbortController();
      const stop = () => ac.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      io.follow?.(ac);
      try {
        if (header) io.err(`following ${dbPath} (Ctrl-C ends)\n`);
        await followEvents(
          dbPath,
          query,
          (events) => {
            io.out(json ? events.map(line).join('') : formatTable(events, { ...table, header, fixed: true }));
            header = false;
          },
          ac.signal,
          { backlog: query.limit ?? 10 },
        );
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
      return 0;
    }
    const events = queryEvents(dbPath, query);
    if (json) io.out(events.map(line).join(''));
    else if (events.length === 0) io.err(`no events${describeQuery(query, now)} in ${dbPath}\n`);
    else io.out(formatTable(events, table));
  } catch (err) {
    io.err(`honeygate events: ${(err as Error).message}\n`);
    return 1;
  }
  return 0;
}

/** " opened since ..., from ..." for the filters the user gave, or "" for none. */
function describeQuery(q: EventQuery, now: number): string {
  const parts: string[] = [];
  if (q.since !== undefined) parts.push(`since ${tableTime(q.since, now).trim()}`);
  if (q.until !== undefined) parts.push(`until ${tableTime(q.until, now).trim()}`);
  if (q.src !== undefined) parts.push(`from ${q.src}`);
  if (q.dstPort !== undefined)
    parts.push(
      `to port ${typeof q.dstPort === 'number' ? q.dstPort : q.dstPort.map((r) => (r.from === r.to ? r.from : `${r.from}-${r.to}`)).join(',')}`,
    );
  if (q.route !== undefined) parts.push(`route ${q.route}`);
  if (q.action !== undefined) parts.push(`action ${q.action}`);
  if (q.type !== undefined) parts.push(`type ${q.type}`);
  if (q.country !== undefined) parts.push(`country ${q.country}`);
  if (q.asn !== undefined) parts.push(`AS${q.asn}`);
  return parts.length ? ` (${parts.join(', ')})` : '';
}

/** The EventQuery of the verb's options (also the admin API's search); throws on bad input. */
export function toQuery(o: EventsOptions, now: number): EventQuery {
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
  if (o.sensor !== undefined) q.sensor = o.sensor;
  if (o.country !== undefined) {
    if (!/^[A-Za-z]{2}$/.test(o.country))
      throw new UsageError(
        `--country: "${o.country}" is not a two-letter ISO 3166 country code (DE, US, ...)`,
      );
    q.country = o.country.toUpperCase();
  }
  if (o.asn !== undefined) q.asn = parseWhole('--asn', o.asn.replace(/^AS/i, ''), 0, 4294967295);
  if (o.limit !== undefined) q.limit = parseWhole('--limit', o.limit, 1, Number.MAX_SAFE_INTEGER);
  if (o.format !== undefined) oneOf('--format', o.format, FORMATS);
  if (o.summary && o.follow) throw new UsageError('give --summary or --follow, not both');
  return q;
}

/** The store the options name: --db, events.sqlite of -c, or the default (also `honeygate stats`). */
export async function storePath(o: Pick<EventsOptions, 'config' | 'db'>, io: Output): Promise<string> {
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

interface Column {
  name: string;
  min: number; // narrowest it gets before the table gives up on the width
  max: number; // widest it gets in --follow, where later rows cannot widen it
  wide?: boolean; // only with --wide
}

// Shrunk in this order when the table is too wide: the first bytes, then names.
const COLUMNS: Column[] = [
  { name: 'TIME', min: 14, max: 20 },
  { name: 'TYPE', min: 4, max: 12 },
  { name: 'SRC', min: 15, max: 23 },
  { name: 'DST', min: 12, max: 23 },
  { name: 'LISTENER', min: 8, max: 12, wide: true },
  { name: 'ROUTE', min: 5, max: 10 },
  { name: 'ACTION', min: 6, max: 7 },
  { name: 'SERVER', min: 6, max: 24, wide: true },
  { name: 'IN/OUT', min: 6, max: 13 },
  { name: 'DUR', min: 5, max: 6 },
  { name: 'REASON', min: 6, max: 14 },
  { name: 'PROTO', min: 5, max: 6 },
  { name: 'FIRST BYTES', min: 11, max: 40 },
];
const SHRINK_ORDER = ['FIRST BYTES', 'SRC', 'DST', 'REASON', 'ROUTE', 'TYPE', 'IN/OUT'];
const GAP = '  ';

export interface TableOptions {
  width?: number; // columns available (default 120; Infinity for --wide)
  header?: boolean; // default true
  fixed?: boolean; // widths from COLUMNS' max, not from the rows (--follow)
  now?: number; // for the time zone shown in the header
}

/**
 * The human table: one row per event, columns padded to their widest cell. Within
 * `width`, the LISTENER and SERVER columns are left out and cells cut with "~" (the first
 * bytes first); times are local, with the zone in the TIME header.
 */
export function formatTable(events: FlowEvent[], opts: TableOptions = {}): string {
  const width = opts.width ?? TABLE_WIDTH;
  const now = opts.now ?? Date.now();
  const cols = COLUMNS.filter((c) => width === Number.POSITIVE_INFINITY || !c.wide);
  const index = cols.map((c) => COLUMNS.indexOf(c));
  const zone = zoneName(events[0]?.openedAt ?? now);
  const head = cols.map((c) => (c.name === 'TIME' ? `TIME (${zone})` : c.name));
  const rows = events.map((e) => {
    const r = tableRow(e, zone, now);
    return index.map((i) => r[i]!);
  });
  // A loop, not Math.max(...): spreading 100k+ rows overflows the call stack.
  const widths = opts.fixed
    ? cols.map((c, i) => Math.max(c.max, head[i]!.length))
    : cols.map((_, i) => rows.reduce((w, r) => Math.max(w, r[i]!.length), head[i]!.length));
  const total = () => widths.reduce((a, b) => a + b, 0) + GAP.length * (widths.length - 1);
  for (const name of SHRINK_ORDER) {
    const i = cols.findIndex((c) => c.name === name);
    if (i < 0 || total() <= width) continue;
    widths[i] = Math.max(cols[i]!.min, head[i]!.length, widths[i]! - (total() - width));
  }
  const fit = (cell: string, w: number) => (cell.length > w ? `${cell.slice(0, w - 1)}~` : cell);
  const lines = opts.header === false ? rows : [head, ...rows];
  return lines
    .map((r) =>
      r
        .map((cell, i) =>
          i === r.length - 1 ? fit(cell, widths[i]!) : fit(cell, widths[i]!).padEnd(widths[i]!),
        )
        .join(GAP),
    )
    .map((l) => `${l.trimEnd()}\n`)
    .join('');
}

function tableRow(e: FlowEvent, zone: string, now: number): string[] {
  const time = tableTime(e.openedAt, now, zone);
  if (e.type === 'firewall') {
    // Not a flow: what happened to the rules goes where a flow's bytes would.
    const cells = [time, e.type, ...Array<string>(COLUMNS.length - 3).fill('-')];
    return [...cells, (e.detail ?? '').slice(0, 200)].map(printable);
  }
  const server = e.backend || e.server ? `${e.backend ?? '-'}/${e.server ?? '-'}` : '-';
  if (e.type === 'rejected' || e.type === 'scan') {
    // A tally (refusals from one source over an interval) or a scan: the ports go where the
    // first bytes would; dst is the first one's when the event has no port set.
    const t = e.targets;
    const where = t
      ? `${t.addressCount === 1 ? t.addresses[0] : `${t.addressCount} addrs`} ${t.portCount === 1 ? `port ${t.ports}` : `${t.portCount} ports`}`
      : e.dst.port
        ? `${formatEndpoint(e.dst)} first`
        : '-';
    return [
      time,
      `${e.type} x${e.count}`,
      e.src.ip === '*' ? 'many sources' : e.src.ip || 'unknown',
      where,
      e.listener,
      '-',
      e.action ?? '-',
      '-',
      '-',
      formatDuration(e.durationMs),
      e.closeReason ?? '-',
      '-',
      t ? t.ports || '-' : '-',
    ].map(printable);
  }
  return [
    time,
    e.type === 'egress' ? `egress x${e.count}` : e.type,
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

/** "UTC" or the offset from it ("UTC+02:00") of local time at `ms`. */
export function zoneName(ms: number): string {
  const off = -new Date(ms).getTimezoneOffset();
  if (off === 0 || Number.isNaN(off)) return 'UTC';
  const a = Math.abs(off);
  return `UTC${off < 0 ? '-' : '+'}${String(Math.floor(a / 60)).padStart(2, '0')}:${String(a % 60).padStart(2, '0')}`;
}

/**
 * Local time for the table: "05-01 14:03:07" within the year of `now`, with the year
 * otherwise; a row whose zone offset differs from the header's (a DST change in between)
 * carries its own.
 */
export function tableTime(ms: number, now: number, zone = zoneName(ms)): string {
  const t = localTime(ms);
  if (t === '-') return t;
  const short = t.slice(0, 4) === localTime(now).slice(0, 4) ? t.slice(5) : t;
  const own = zoneName(ms);
  return `${short.replace('T', ' ')}${own === zone ? '' : ` ${own}`}`;
}

/** The --summary text: totals, then the top entries of each list side by side with counts. */
export function formatSummary(s: EventSummary, q: EventQuery, now: number): string {
  const span = q.since !== undefined ? ` since ${tableTime(q.since, now)} (${zoneName(q.since)})` : '';
  if (s.flows === 0 && s.refused === 0) return `no flows or refusals${span}\n`;
  const out = [
    `${s.flows} flows, ${s.refused} refused, from ${s.sources} sources${span}`,
    s.first === null
      ? ''
      : `first ${tableTime(s.first, now)}, last ${tableTime(s.last!, now)} (${zoneName(s.last!)})`,
  ];
  const section = (title: string, list: [string | number, number][]) => {
    out.push('', title);
    if (list.length === 0) out.push('  (none)');
    const w = list.reduce((m, [, n]) => Math.max(m, String(n).length), 0);
    for (const [k, n] of list) out.push(`  ${String(n).padStart(w)}  ${printable(String(k)).slice(0, 100)}`);
  };
  section('TOP SOURCES (flows + refused)', s.top.sources);
  section('TOP PORTS', s.top.ports);
  section('TOP PROTOCOLS', s.top.protocols);
  section('TOP HTTP USER AGENTS', s.top.userAgents);
  section('TOP SSH CLIENTS', s.top.sshClients);
  section('TOP CLOSE REASONS', s.top.reasons);
  return `${out.filter((l, i) => i !== 1 || l !== '').join('\n')}\n`;
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
