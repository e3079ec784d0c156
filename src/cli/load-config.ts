// Loading a configuration for a verb: on problems, every one on its own line
// (`FILE:LINE: key.path: message`), then `honeygate VERB: N problems in FILE`, and the
// verb exits 2. run, check, firewall and events all load through here.
import { type LoadResult, loadConfigFile } from '../config/load.js';

export type Loaded = Extract<LoadResult, { ok: true }>;

/**
 * Loads `file`. Returns the config and its warnings, or null after writing the problems
 * and the count line (ending in `tail`, e.g. "; not started") to `err`: exit 2 then.
 */
export function loadOrReport(
  verb: string,
  file: string,
  err: (line: string) => void = (line) => process.stderr.write(line),
  tail = '',
): Loaded | null {
  const result = loadConfigFile(file);
  if (result.ok) return result;
  for (const e of result.errors) err(`${e}\n`);
  const n = result.errors.length;
  err(`honeygate ${verb}: ${n} problem${n === 1 ? '' : 's'} in ${file}${tail}\n`);
  return null;
}
