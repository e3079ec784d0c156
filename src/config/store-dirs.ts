// The directories the event sinks write into. A missing one is an error that names it,
// unless the config says to create it (events.createDirectories): as with nginx or HAProxy
// under systemd, a typo in a path must not quietly become a new directory tree made by
// root. `run` prepares them before opening the sinks; `check` warns about them.
import { mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { HoneygateError } from '../errors.js';
import { sensorSubject } from '../fleet/config.js';
import type { EventsConfig } from './types.js';

/** Each sink's key and directory: [['sqlite', '/var/lib/honeygate'], ...]. */
function sinkDirs(events: EventsConfig): ['sqlite' | 'jsonl', string][] {
  const out: ['sqlite' | 'jsonl', string][] = [];
  if (events.sqlite) out.push(['sqlite', dirname(events.sqlite)]);
  if (events.jsonl) out.push(['jsonl', dirname(events.jsonl)]);
  return out;
}

/**
 * Where events go, for the `ready` line: each sink with its path, e.g.
 * `{ sqlite: '/var/lib/honeygate/events.db' }`, or 'none'. The nats sink as its subject,
 * servers and outbox: `honeygate.events.fra1 -> nats://a:4222,nats://b:4222 (outbox /x.db)`.
 */
export function sinkPaths(events: EventsConfig): Record<string, string> | 'none' {
  const out: Record<string, string> = {};
  if (events.sqlite) out.sqlite = events.sqlite;
  if (events.jsonl) out.jsonl = events.jsonl;
  if (events.nats) {
    const n = events.nats;
    out.nats = `${sensorSubject(n, events.sensor)} -> ${n.servers.join(',')} (outbox ${n.outbox})`;
  }
  return Object.keys(out).length ? out : 'none';
}

/** Why `dir` cannot hold a sink's file ("does not exist", "is not a directory"), or null. */
function dirProblem(dir: string): string | null {
  try {
    return statSync(dir).isDirectory() ? null : 'is not a directory';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR' ? 'does not exist' : (err as Error).message;
  }
}

/** The sinks whose directory is missing, as messages: "events.sqlite: directory /x does not exist (...)". */
export function missingStoreDirs(events: EventsConfig): string[] {
  const out: string[] = [];
  for (const [key, dir] of sinkDirs(events)) {
    const why = dirProblem(dir);
    if (why === null) continue;
    const fix =
      why === 'does not exist'
        ? 'create it, or set events.createDirectories: true'
        : 'give a path in a directory';
    out.push(`events.${key}: directory ${dir} ${why} (${fix})`);
  }
  return out;
}

/**
 * Makes sure every sink's directory exists before the sinks open: creates the missing ones
 * (mode 0750) when events.createDirectories is true, else throws HG_ERR_SINK naming them.
 */
export function prepareStoreDirs(events: EventsConfig): void {
  if (events.createDirectories) {
    for (const [key, dir] of sinkDirs(events)) {
      try {
        mkdirSync(dir, { recursive: true, mode: 0o750 });
      } catch (err) {
        throw new HoneygateError(
          'HG_ERR_SINK',
          `events.${key}: cannot create directory ${dir}: ${(err as Error).message}`,
          {
            cause: err,
          },
        );
      }
    }
  }
  const missing = missingStoreDirs(events);
  if (missing.length) throw new HoneygateError('HG_ERR_SINK', missing.join('; '));
}
