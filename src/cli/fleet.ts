// `honeygate fleet init -c FILE`: creates or updates the JetStream stream of `events.nats`
// (subjects, limits, replicas, de-duplication window) and prints what it set. Stream setup
// is code, run again after changing the config; `collect` creates its consumer itself.
import { jetstreamManager } from '@nats-io/jetstream';
import type { Command } from 'commander';
import { loadEventsFile } from '../config/load.js';
import type { NatsConfig } from '../fleet/config.js';
import { connectNats } from '../fleet/connect.js';
import { ensureStream, streamConfig } from '../fleet/stream.js';

export function register(program: Command): void {
  const fleet = program
    .command('fleet')
    .description('set up the NATS JetStream stream of a fleet (events.nats)');
  fleet
    .command('init')
    .description('create or update the stream: subjects, retention limits, replicas, de-duplication window')
    .requiredOption('-c, --config <file>', 'configuration file with an events.nats section')
    .action(async (opts: { config: string }) => {
      process.exitCode = await init(opts.config);
    });
}

/** Reads events.nats of `file`, or writes why not and returns null (exit 2). */
export function loadNats(verb: string, file: string): NatsConfig | null {
  const loaded = loadEventsFile(file);
  if (!loaded.ok) {
    for (const e of loaded.errors) process.stderr.write(`${e}\n`);
    process.stderr.write(`honeygate ${verb}: ${loaded.errors.length} problem(s) in ${file}\n`);
    return null;
  }
  if (!loaded.config.events.nats) {
    process.stderr.write(`honeygate ${verb}: ${file} has no events.nats section (servers: ...)\n`);
    return null;
  }
  return loaded.config.events.nats;
}

async function init(file: string): Promise<number> {
  const cfg = loadNats('fleet init', file);
  if (!cfg) return 2;
  let nc: Awaited<ReturnType<typeof connectNats>> | null = null;
  try {
    nc = await connectNats({ ...cfg }, 'honeygate fleet init');
    const jsm = await jetstreamManager(nc);
    const what = await ensureStream(jsm, cfg);
    const s = streamConfig(cfg);
    process.stdout.write(
      `stream ${cfg.stream} ${what}: subjects ${s.subjects.join(' ')}, replicas ${cfg.replicas}, ` +
        `max age ${cfg.maxAgeMs === 0 ? 'none' : `${cfg.maxAgeMs / 3_600_000}h`}, ` +
        `max bytes ${cfg.maxBytes === 0 ? 'none' : cfg.maxBytes}, duplicate window ${cfg.duplicateWindowMs / 1000}s\n`,
    );
    return 0;
  } catch (err) {
    process.stderr.write(`honeygate fleet init: ${cfg.servers.join(',')}: ${(err as Error).message}\n`);
    return 1;
  } finally {
    await nc?.close().catch(() => {});
  }
}
