// The config check of an events.enrich database: cheap (reads the file's tail only), so
// every verb that loads the config can run it; src/enrich/mmdb.ts reads the file whole.
import { closeSync, openSync, readSync, statSync } from 'node:fs';

/** Where the metadata starts: the last occurrence of this marker, within the file's last 128 KiB. */
const METADATA_MARKER = Buffer.from('\xab\xcd\xefMaxMind.com', 'latin1');
const METADATA_WINDOW = 128 * 1024;

/**
 * Checks that `path` looks like a MaxMind DB (exists, readable, carries the metadata
 * marker near its end) without reading it whole; returns the problem in words, or null.
 * For the config checks, which every verb runs.
 */
export function mmdbProblem(path: string): string | null {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    return `cannot open "${path}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
  }
  try {
    const size = statSync(path).size;
    const length = Math.min(size, METADATA_WINDOW);
    const tail = Buffer.alloc(length);
    readSync(fd, tail, 0, length, size - length);
    if (tail.lastIndexOf(METADATA_MARKER) < 0)
      return `"${path}" is not a MaxMind DB file (no metadata marker; a .mmdb.gz or .tar.gz must be unpacked first)`;
    return null;
  } catch (err) {
    return `cannot read "${path}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
  } finally {
    closeSync(fd);
  }
}
