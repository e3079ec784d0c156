// `honeygate replay ID`: print a recorded session (src/record/), text as it is, binary as
// a hex dump; with --timing, at the pace it was recorded.
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { readSession } from '../record/read.js';
import { formatChunk, formatHeader } from '../record/replay.js';
import { loadOrReport } from './load-config.js';

export const DEFAULT_RECORDINGS = './data/recordings';

export interface RecordingsOptions {
  config?: string;
  dir?: string;
}

/** The recordings directory: --dir, else the config's events.recordings.path, else the default. Null: config problems reported. */
export function recordingsDir(opts: RecordingsOptions, err: (t: string) => void): string | null {
  if (opts.dir) return opts.dir;
  if (!opts.config) return DEFAULT_RECORDINGS;
  const loaded = loadOrReport('events', opts.config, err);
  if (!loaded) return null;
  const events = loaded.config.events;
  // Without an events.recordings section the files are beside the store, as `run` puts them.
  return (
    events.recordings?.path ??
    (events.sqlite ? join(dirname(events.sqlite), 'recordings') : DEFAULT_RECORDINGS)
  );
}

export interface ReplayOptions extends RecordingsOptions {
  timing?: boolean;
  maxWait?: string;
}

export function register(program: Command): void {
  program
    .command('replay')
    .description('print a recorded session: text as it is, binary as hex (see routes[].record)')
    .argument('<id>', 'the flow id (an event id, events --json shows `recording`) or a .hgrec file')
    .option('-c, --config <file>', 'read the recordings directory from this config (events.recordings.path)')
    .option('--dir <dir>', `the recordings directory (default ${DEFAULT_RECORDINGS})`)
    .option('--timing', 'wait between chunks as long as the attacker and the honeypot did')
    .option('--max-wait <seconds>', 'with --timing: wait at most this long between two chunks', '5')
    .action(async (id: string, opts: ReplayOptions) => {
      process.stdout.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'EPIPE') process.exit(0);
        throw err;
      });
      process.exitCode = await runReplay(id, opts, {
        out: (t) => process.stdout.write(t),
        err: (t) => process.stderr.write(t),
      });
    });
}

/** Returns the exit code: 0 printed, 1 no such recording or unreadable, 2 usage or config. */
export async function runReplay(
  id: string,
  opts: ReplayOptions,
  io: { out: (t: string) => void; err: (t: string) => void },
): Promise<number> {
  const maxWait = Number(opts.maxWait ?? '5');
  if (!Number.isFinite(maxWait) || maxWait < 0) {
    io.err(`honeygate replay: --max-wait: expected seconds, got ${JSON.stringify(opts.maxWait)}\n`);
    return 2;
  }
  const dir = recordingsDir(opts, io.err);
  if (dir === null) return 2;
  let session: ReturnType<typeof readSession>;
  try {
    session = readSession(dir, id);
  } catch (err) {
    io.err(`honeygate replay: ${(err as Error).message}\n`);
    return 1;
  }
  io.out(formatHeader(session));
  let before = 0;
  for (const c of session.chunks) {
    if (opts.timing && c.t > before) await sleep(Math.min(c.t - before, maxWait) * 1000);
    before = c.t;
    io.out(formatChunk(c));
  }
  if (!session.complete) io.out('## the file ends mid-record (honeygate stopped while writing it)\n');
  return 0;
}
