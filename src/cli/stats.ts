// `honeygate stats`: the top sources, destination ports, protocols and routes per UTC hour or
// day, read from the store's rollup (src/events/rollup.ts), which the SQLite sink keeps as it
// writes: a store of 10 million events answers in milliseconds (docs/performance.md).
import type { Command } from 'commander';
import { HoneygateError } from '../errors.js';
import { pendingJobs } from '../events/backfill.js';
import { openStore } from '../events/query.js';
import { readStats, type StatsBucket, type StatsEntry } from '../events/rollup.js';
import { type Output, parseTime, Reported, storePath, UsageError } from './events.js';

export interface StatsOptions {
  config?: string;
  db?: string;
  by?: string;
  since?: string;
  until?: string;
  top?: string;
  json?: boolean;
}

/** How far back each bucket size looks without --since. */
const DEFAULT_SINCE: Record<'hour' | 'day', string> = { hour: '24h', day: '7d' };

export function register(program: Command): void {
  program
    .command('stats')
    .description('top sources, ports, protocols and routes per hour or day (UTC)')
    .option('-c, --config <file>', 'read the event store path from this config (events.sqlite)')
    .option('--db <file>', 'the SQLite event store (default ./data/events.db)')
    .option('--by <bucket>', 'hour|day (default day)')
    .option('--since <time>', 'from: ISO time or a duration ago (default 24h by hour, 7d by day)')
    .option('--until <time>', 'to: ISO time or a duration ago (default now)')
    .option('--top <n>', 'entries per list (default 5)')
    .option('--json', 'one JSON object per bucket')
    .action(async (opts: StatsOptions) => {
      process.exitCode = await runStats(opts, {
        out: (t) => process.stdout.write(t),
        err: (t) => process.stderr.write(t),
      });
    });
}

/** Runs the verb; returns the exit code (0 ok, 1 query failed, 2 usage). Never throws. */
export async function runStats(opts: StatsOptions, io: Output, now = Date.now()): Promise<number> {
  let dbPath: string;
  let by: 'hour' | 'day';
  let since: number;
  let until: number;
  let top: number;
  try {
    by = (opts.by ?? 'day') as 'hour' | 'day';
    if (by !== 'hour' && by !== 'day') throw new UsageError(`--by: "${opts.by}" is not one of hour, day`);
    since = parseTime('--since', opts.since ?? DEFAULT_SINCE[by], now);
    until = opts.until === undefined ? now : parseTime('--until', opts.until, now);
    top = opts.top === undefined ? 5 : Number(opts.top);
    if (!Number.isInteger(top) || top < 1 || top > 1000)
      throw new UsageError(`--top: "${opts.top}" is not a whole number from 1 to 1000`);
    dbPath = await storePath(opts, io);
  } catch (err) {
    if (err instanceof Reported) return 2;
    io.err(`honeygate stats: ${(err as Error).message}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
  let buckets: StatsBucket[];
  try {
    const db = openStore(dbPath);
    try {
      const hasRollup = db.prepare("SELECT 1 AS x FROM sqlite_master WHERE name = 'rollup'").get();
      if (!hasRollup) {
        throw new HoneygateError(
          'HG_ERR_EVENTS_QUERY',
          `${dbPath} was written by an earlier honeygate and has no rollup yet: it gets one (counted from its events) the next time honeygate run or collect opens it`,
        );
      }
      if (pendingJobs(db).includes('rollup')) {
        throw new HoneygateError(
          'HG_ERR_EVENTS_QUERY',
          `${dbPath} is still counting its earlier events into the rollup (after a schema upgrade, in the background of honeygate run or collect): try again when the log says the backfill is done`,
        );
      }
      buckets = readStats(db, { by, since, until, top });
    } finally {
      db.close();
    }
  } catch (err) {
    io.err(`honeygate stats: ${(err as Error).message}\n`);
    return 1;
  }
  if (opts.json) {
    io.out(
      buckets.map((b) => `${JSON.stringify({ ...b, start: new Date(b.start).toISOString() })}\n`).join(''),
    );
    return 0;
  }
  if (buckets.length === 0) {
    io.err(`no flows since ${new Date(since).toISOString()} in ${dbPath}\n`);
    return 0;
  }
  io.out(buckets.map((b) => formatBucket(b, by)).join('\n'));
  return 0;
}

/** One bucket as a block: its totals, then one line per list. */
export function formatBucket(b: StatsBucket, by: 'hour' | 'day'): string {
  const iso = new Date(b.start).toISOString();
  const when = by === 'day' ? iso.slice(0, 10) : `${iso.slice(0, 10)} ${iso.slice(11, 16)}Z`;
  const lines = [`${when}  ${n(b.flows)} flows, ${n(b.refused)} refused`];
  const row = (label: string, entries: StatsEntry[]) =>
    lines.push(`  ${label.padEnd(10)}${entries.length ? entries.map(entry).join('  ') : '-'}`);
  row('sources', b.sources);
  row('ports', b.ports);
  row('protocols', b.protocols);
  row('routes', b.routes);
  return `${lines.join('\n')}\n`;
}

function entry(e: StatsEntry): string {
  const v = e.value === '' ? 'unknown' : String(e.value);
  return e.refused ? `${v} ${n(e.flows)}+${n(e.refused)} refused` : `${v} ${n(e.flows)}`;
}

function n(x: number): string {
  return x.toLocaleString('en-US');
}
