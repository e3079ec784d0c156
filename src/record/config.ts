// Session recording's config: `record:` on a route or a backend (what to keep of each flow)
// and `events.recordings` (where the files go and how much disk they may take). Raw shapes
// (zod) and defaulted types; the store (store.ts) enforces the budget.
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { conv, describe, obj, parseSize, text } from '../config/zod.js';

/** Per flow: `record: { maxBytes }` on a route or a backend; `record: {}` or `true` for the defaults. */
export interface RecordOptions {
  maxBytes: number; // payload kept per flow, both directions together; past it the file says "truncated"
}

export const RECORD_DEFAULTS: RecordOptions = { maxBytes: 1024 ** 2 };

const flag = (v: unknown) => (v === true || v === null ? {} : v);

export const recordSchema = z.preprocess(
  flag,
  obj({
    maxBytes: conv((v) => {
      const n = parseSize(v);
      if (n < 1) throw new Error(`invalid size ${describe(v)}: at least 1 byte`);
      return n;
    }).default(RECORD_DEFAULTS.maxBytes),
  }),
);

export type RawRecord = z.output<typeof recordSchema>;

export function assembleRecord(r: RawRecord | undefined): RecordOptions | null {
  return r ? { maxBytes: r.maxBytes } : null;
}

/** `events.recordings`: the directory and the disk budget of every recording together. */
export interface RecordingsConfig {
  path: string; // directory of the files (<id>.hgrec)
  maxSizeBytes: number; // all recordings together; the oldest finished ones are deleted first
  minFreeBytes: number; // free space left on the file system; below it recording stops
}

export const RECORDINGS_DEFAULTS = { maxSize: 1024 ** 3, minFree: 1024 ** 3 };

export const recordingsSchema = obj({
  path: conv(text).optional(),
  maxSize: conv((v) => {
    const n = parseSize(v);
    if (n < 64 * 1024) throw new Error(`invalid size ${describe(v)}: at least 64KiB`);
    return n;
  }).default(RECORDINGS_DEFAULTS.maxSize),
  minFree: conv(parseSize).default(RECORDINGS_DEFAULTS.minFree),
});

export type RawRecordings = z.output<typeof recordingsSchema>;

/**
 * The defaulted section. Without `path` the files go beside the SQLite store
 * (`<its directory>/recordings`), else beside the config (`./data/recordings`).
 */
export function assembleRecordings(
  r: RawRecordings | undefined,
  baseDir: string,
  sqlite: string | null,
): RecordingsConfig {
  const raw = r ?? { maxSize: RECORDINGS_DEFAULTS.maxSize, minFree: RECORDINGS_DEFAULTS.minFree };
  const path =
    raw.path !== undefined
      ? resolve(baseDir, raw.path)
      : sqlite
        ? resolve(dirname(sqlite), 'recordings')
        : resolve(baseDir, 'data', 'recordings');
  return { path, maxSizeBytes: raw.maxSize, minFreeBytes: raw.minFree };
}
