// The small pieces every config schema is built from, apart from the schemas themselves:
// scalar forms (durations, sizes, rates, names) as plain functions that throw a message
// naming the allowed forms, and the zod glue (`conv`, `list`, `obj`) that turns such a
// message into an issue at its key path. It imports nothing of honeygate, so that a module
// the schema is built from (an action's definition in src/actions/definitions/) can use it
// without importing schema.ts back.

import { z } from 'zod';

// ---- scalar forms -------------------------------------------------------------------

/** Describes a YAML value for messages: `a string "x"`, `a list`, `nothing`. */
export function describe(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return `"${v}"`;
  return String(v);
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION_FORMS = 'use 500ms, 5s, 5m, 1h, 1d or a number of seconds';

/** "500ms", "5s", "5m", "1h", "1d", or a plain number of seconds (number or numeric text) -> ms. */
export function parseDuration(v: unknown): number {
  const ms = parsePeriod(v);
  // Node turns a longer timer into 1 ms (TimeoutOverflowWarning): a 30d timeout would fire at once.
  if (ms > MAX_DURATION_MS)
    throw new Error(`invalid duration ${describe(v)}: at most 24d (timers cannot wait longer)`);
  return ms;
}

/** A duration that no timer waits for (an age, like events.retention.maxAge: 30d): parseDuration's forms, no 24d cap. */
export function parsePeriod(v: unknown): number {
  if (typeof v === 'number' && Number.isFinite(v) && v >= 0) return Math.round(v * 1000);
  const m = typeof v === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(v) : null;
  if (!m) throw new Error(`invalid duration ${describe(v)} (${DURATION_FORMS})`);
  const ms = Math.round(Number(m[1]) * DURATION_UNITS[m[2] ?? 's']!);
  if (!Number.isSafeInteger(ms)) throw new Error(`invalid duration ${describe(v)}: too large`);
  return ms;
}

/** The longest timer Node runs as asked: 2^31 - 1 ms, about 24.8 days. */
export const MAX_DURATION_MS = 2 ** 31 - 1;

/** 10000 -> "10s", 300000 -> "5m", 1500 -> "1.5s", 200 -> "200ms". */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return ms > 1000 ? `${ms / 1000}s` : `${ms}ms`;
}

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
};
const SIZE_FORMS = 'use a number of bytes or 4KiB, 10MiB, 1GiB (KB, MB, GB are 1000-based)';

/** 4096, "4KiB", "10MiB", "1GiB", "4KB" (1000-based) -> bytes. */
export function parseSize(v: unknown): number {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  const m = typeof v === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)?\s*$/.exec(v) : null;
  const unit = m ? SIZE_UNITS[(m[2] ?? 'b').toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new Error(`invalid size ${describe(v)} (${SIZE_FORMS})`);
  const bytes = Math.round(Number(m[1]) * unit);
  if (!Number.isSafeInteger(bytes)) throw new Error(`invalid size ${describe(v)}: too large`);
  return bytes;
}

/** A size that is kept in memory per flow (and in every queued event): at most `max`. */
export function sizeUpTo(max: number, maxText: string): (v: unknown) => number {
  return (v) => {
    const bytes = parseSize(v);
    if (bytes > max)
      throw new Error(`invalid size ${describe(v)}: at most ${maxText} (kept in memory per flow)`);
    return bytes;
  };
}

const RATE_UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000 };

/** "50/s", "600/m", "1000/h", or a plain number (per second) -> { count, perMs }. */
export function parseRate(v: unknown): { count: number; perMs: number } {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v > 0) return { count: v, perMs: 1000 };
  const m = typeof v === 'string' ? /^\s*(\d+)\s*\/\s*(s|m|h)\s*$/.exec(v) : null;
  if (!m || Number(m[1]) === 0) throw new Error(`invalid rate ${describe(v)} (use 50/s, 600/m or 1000/h)`);
  return { count: Number(m[1]), perMs: RATE_UNITS[m[2]!]! };
}

/** A duration that must be more than zero (a zero timeout or interval means nothing useful). */
export function positiveDuration(v: unknown): number {
  const ms = parseDuration(v);
  if (ms <= 0) throw new Error(`invalid duration ${describe(v)}: must be more than 0`);
  return ms;
}

export function intIn(min: number, max: number): (v: unknown) => number {
  return (v) => {
    if (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max) return v;
    throw new Error(`invalid value ${describe(v)} (a whole number ${min}-${max})`);
  };
}

export function oneOf<T extends string>(allowed: readonly T[]): (v: unknown) => T {
  return (v) => {
    if (typeof v === 'string' && (allowed as readonly string[]).includes(v)) return v as T;
    throw new Error(`invalid value ${describe(v)} (allowed: ${allowed.join(', ')})`);
  };
}

export function text(v: unknown): string {
  if (typeof v === 'string') return v;
  throw new Error(`expected text, got ${describe(v)}`);
}

export function nonEmptyText(v: unknown): string {
  const s = text(v);
  if (s.trim() === '') throw new Error('must not be empty');
  return s;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** Listener, route and backend names: short, printable, safe in logs and nft comments. */
export function name(v: unknown): string {
  if (typeof v === 'string' && NAME_RE.test(v)) return v;
  throw new Error(
    `invalid name ${describe(v)} (letters, digits, '_', '.', '-'; at most 64; starting with a letter or digit)`,
  );
}

// ---- zod glue -----------------------------------------------------------------------

/** A zod schema running `parse` on the raw value; a thrown message becomes an issue at this path. */
export function conv<T>(parse: (v: unknown) => T) {
  return z.unknown().transform((v, ctx): T => {
    if (v === undefined) {
      ctx.issues.push({ code: 'custom', message: 'required key is missing', input: v });
      return z.NEVER;
    }
    try {
      return parse(v);
    } catch (err) {
      ctx.issues.push({ code: 'custom', message: (err as Error).message, input: v });
      return z.NEVER;
    }
  });
}

/** One value or a list of them -> a list; each bad element is its own issue, at its index. */
export function list<T>(parse: (v: unknown) => T, opts: { min?: number } = {}) {
  return z.unknown().transform((v, ctx): T[] => {
    if (v === undefined) {
      ctx.issues.push({ code: 'custom', message: 'required key is missing', input: v });
      return z.NEVER;
    }
    const items = Array.isArray(v) ? v : [v];
    const out: T[] = [];
    if (items.length < (opts.min ?? 0)) {
      ctx.issues.push({
        code: 'custom',
        message: opts.min === 1 ? 'needs at least one value' : `needs at least ${opts.min} values`,
        input: v,
      });
    }
    items.forEach((item, i) => {
      try {
        out.push(parse(item));
      } catch (err) {
        const path = Array.isArray(v) ? [i] : [];
        ctx.issues.push({ code: 'custom', message: (err as Error).message, input: item, path });
      }
    });
    return out;
  });
}

/**
 * A strict mapping: unknown keys are issues whose message lists the allowed keys
 * (load.ts prints one line per key: "unknown key 'sevrers' (allowed: servers, ...)").
 */
export function obj<S extends z.core.$ZodLooseShape>(shape: S) {
  const allowed = Object.keys(shape).join(', ');
  return z.strictObject(shape, {
    error: (iss) => {
      if (iss.code === 'unrecognized_keys') return `allowed: ${allowed}`;
      if (iss.code === 'invalid_type')
        return `expected a mapping (keys: ${allowed}), got ${describe(iss.input)}`;
      return undefined;
    },
  });
}
