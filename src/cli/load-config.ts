// Loading a configuration for a verb: on problems, every one on its own line
// (`FILE:LINE: key.path: message`), then `honeygate VERB: N problems in FILE`, and the
// verb exits 2. run, check, firewall and events all load through here, each reading what
// it needs (READS): `events` only the events section, so a variable that only another
// section uses need not be set for a query; `check` reports an unset variable as a
// warning, since `run` gets it from its service's environment, which check may not have.
import {
  type EventsLoadResult,
  type LoadOptions,
  type LoadResult,
  loadConfigFile,
  loadEventsFile,
} from '../config/load.js';

export type Loaded = Extract<LoadResult, { ok: true }>;
export type LoadedEvents = Extract<EventsLoadResult, { ok: true }>;

/** What each verb reads of a config file, and how an unset ${VAR} counts; the others: all of it, an error. */
const READS: Record<string, { only?: 'events'; unsetEnv?: LoadOptions['unsetEnv'] }> = {
  check: { unsetEnv: 'warn' },
  events: { only: 'events' },
};

/**
 * Loads `file`. Returns the config and its warnings, or null after writing the problems
 * and the count line (ending in `tail`, e.g. "; not started") to `err`: exit 2 then.
 */
export function loadOrReport(
  verb: 'events',
  file: string,
  err?: (line: string) => void,
  tail?: string,
): LoadedEvents | null;
export function loadOrReport(
  verb: string,
  file: string,
  err?: (line: string) => void,
  tail?: string,
): Loaded | null;
export function loadOrReport(
  verb: string,
  file: string,
  err: (line: string) => void = (line) => process.stderr.write(line),
  tail = '',
): Loaded | LoadedEvents | null {
  const reads = READS[verb] ?? {};
  const result =
    reads.only === 'events' ? loadEventsFile(file) : loadConfigFile(file, { unsetEnv: reads.unsetEnv });
  if (result.ok) return result;
  for (const e of result.errors) err(`${e}\n`);
  const n = result.errors.length;
  err(`honeygate ${verb}: ${n} problem${n === 1 ? '' : 's'} in ${file}${tail}\n`);
  return null;
}
