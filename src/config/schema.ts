// The raw YAML shape (what users write) as zod 4 schemas, plus the scalar forms it
// accepts: durations, sizes, rates, ports, endpoints, CIDRs. Each scalar is parsed by a
// plain function that throws a message naming the allowed forms; `conv` turns that into a
// zod issue, so every problem in a file is collected in one pass. Cross-field checks
// (names that must exist, cycles) live in load.ts, which sees the whole file.

import { z } from 'zod';
import { PROTOCOLS } from '../classifiers/index.js';
import { normalizeIp, parseCidr, parseEndpoint } from '../net/address.js';
import type {
  Balance,
  CaptureOptions,
  Cidr,
  Endpoint,
  PortRange,
  ProxyVersion,
  SourceMode,
} from './types.js';

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
  let ms: number;
  if (typeof v === 'number' && Number.isFinite(v) && v >= 0) ms = Math.round(v * 1000);
  else {
    const m = typeof v === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(v) : null;
    if (!m) throw new Error(`invalid duration ${describe(v)} (${DURATION_FORMS})`);
    ms = Math.round(Number(m[1]) * DURATION_UNITS[m[2] ?? 's']!);
  }
  // Node turns a longer timer into 1 ms (TimeoutOverflowWarning): a 30d timeout would fire at once.
  if (ms > MAX_DURATION_MS)
    throw new Error(`invalid duration ${describe(v)}: at most 24d (timers cannot wait longer)`);
  return ms;
}

/** The longest timer Node runs as asked: 2^31 - 1 ms, about 24.8 days. */
export const MAX_DURATION_MS = 2 ** 31 - 1;

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

function portNumber(s: string, min: number): number | null {
  if (!/^\d{1,5}$/.test(s)) return null;
  const n = Number(s);
  return n >= min && n <= 65535 ? n : null;
}

/** "22", 22, "8000-8099" -> PortRange. Ports are 1-65535 and from <= to. */
export function parsePortRange(v: unknown, min = 1): PortRange {
  const s = typeof v === 'number' ? String(v) : v;
  const m = typeof s === 'string' ? /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(s) : null;
  const from = m ? portNumber(m[1]!, min) : null;
  const to = m ? (m[2] === undefined ? from : portNumber(m[2], min)) : null;
  if (from === null || to === null) {
    throw new Error(`invalid port ${describe(v)} (a port ${min}-65535 or a range like 8000-8099)`);
  }
  if (from > to)
    throw new Error(`invalid port range ${describe(v)} (the first port must not exceed the last)`);
  return { from, to };
}

/** Most ports one listener may bind: each is a socket, and the process may hold 20,000 open files. */
export const MAX_BIND_PORTS = 5000;

/** "0.0.0.0:2222", "0.0.0.0:2000-2999", "[::]:80" -> one host with a port range (port 0 allowed: tests). */
export function parseBind(v: unknown): { host: string; ports: PortRange } {
  const s = text(v);
  const m = /^\[([^\]]+)\]:(.+)$/.exec(s) ?? /^([^:[\]]+):(.+)$/.exec(s);
  if (!m)
    throw new Error(
      `invalid bind address ${describe(v)} (ADDRESS:PORT or ADDRESS:FROM-TO, IPv6 as [ADDRESS]:PORT)`,
    );
  const host = normalizeIp(m[1]!);
  if (!host) throw new Error(`invalid bind address ${describe(v)}: "${m[1]}" is not an IP address`);
  const ports = parsePortRange(m[2], 0);
  if (ports.from === 0 && ports.to !== 0)
    throw new Error(`invalid bind address ${describe(v)}: port 0 cannot start a range`);
  return { host, ports };
}

/** A honeypot server or admin address: "192.0.2.10:2222" (port 1-65535). */
export function server(v: unknown): Endpoint {
  const e = parseEndpoint(text(v));
  if (e.port === 0) throw new Error(`"${v}": port must be 1-65535`);
  return e;
}

export function cidr(v: unknown): Cidr {
  return parseCidr(text(v));
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

// ---- the raw shape ------------------------------------------------------------------

export const SOURCE_MODES: readonly SourceMode[] = ['transparent', 'proxy-v2', 'proxy-v1', 'none'];
export const BALANCES: readonly Balance[] = ['roundrobin', 'leastconn', 'source-hash'];
export const PROXY_VERSIONS: readonly ProxyVersion[] = ['v1', 'v2'];
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export const ACTION_KEYS = ['forward', 'capture', 'reject', 'drop'] as const;

/** Top-level sections. Each is parsed on its own so one broken section hides nothing else. */
export const TOP_KEYS = [
  'listeners',
  'routes',
  'backends',
  'limits',
  'events',
  'admin',
  'firewall',
  'contain',
  'log',
  'workers',
] as const;
export const topSchema = obj(Object.fromEntries(TOP_KEYS.map((k) => [k, z.unknown().optional()])));

export const acceptProxySchema = obj({
  versions: list(oneOf(PROXY_VERSIONS), { min: 1 }).default(['v1', 'v2']),
  from: list(cidr, { min: 1 }),
  timeout: conv(positiveDuration).default(3000),
});

/** An interface name as nft's iifname takes it: at most 15 characters, `*` only at the end. */
export function interfaceName(v: unknown): string {
  const s = text(v);
  if (!/^[A-Za-z0-9_.@:-]{1,15}$/.test(s) && !/^[A-Za-z0-9_.@:-]{1,14}\*$/.test(s)) {
    throw new Error(
      `invalid interface name ${describe(v)} (up to 15 letters, digits, _.@:-; a trailing * matches a prefix)`,
    );
  }
  return s;
}

export function ipAddress(v: unknown): string {
  if (text(v).includes('%')) throw new Error(`${describe(v)}: a zone id (%IFACE) cannot be used here`);
  const ip = normalizeIp(text(v));
  if (!ip) throw new Error(`${describe(v)} is not an IP address`);
  return ip;
}

/** A destination block to divert; an IPv4-mapped IPv6 block never matches a packet on the wire. */
export function divertCidr(v: unknown): Cidr {
  const c = cidr(v);
  const mapped =
    c.family === 6 && c.bytes.subarray(0, 12).equals(Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255]));
  if (mapped && c.prefix >= 96) {
    throw new Error(
      `${c.text} is IPv4-mapped: no packet carries such an address; write the IPv4 block instead`,
    );
  }
  return c;
}

export const divertSchema = obj({
  interface: list(interfaceName, { min: 1 }),
  addresses: list(divertCidr, { min: 1 }).optional(),
  ports: list((v) => parsePortRange(v), { min: 1 }).default([{ from: 1, to: 65535 }]),
  exclude: list((v) => parsePortRange(v)).default([]),
});

export const tproxySchema = obj({
  port: conv(intIn(1, 65535)),
  address: list(ipAddress, { min: 1 }).default(['127.0.0.1', '::1']),
});

export const listenerSchema = obj({
  name: conv(name),
  bind: list(parseBind, { min: 1 }).optional(),
  acceptProxy: acceptProxySchema.optional(),
  originalDst: z.boolean({ error: 'expected true or false' }).default(false),
  tproxy: tproxySchema.optional(),
  divert: divertSchema.optional(),
});

export const matchSchema = obj({
  listeners: list(name, { min: 1 }).optional(),
  dstPorts: list((v) => parsePortRange(v), { min: 1 }).optional(),
  dstAddresses: list(cidr, { min: 1 }).optional(),
  srcAddresses: list(cidr, { min: 1 }).optional(),
  protocol: list(oneOf([...PROTOCOLS, 'unknown']), { min: 1 }).optional(),
});

/** What `capture: {}` means; also the capture a backend falls back to (with firstBytes as its size). */
export const CAPTURE_DEFAULTS: CaptureOptions = { maxBytes: 4096, timeoutMs: 10_000, banner: null };

/** `capture: {}`, `capture: true` and a bare `capture:` all mean "capture with defaults". */
const flag = (v: unknown) => (v === true || v === null ? {} : v);

export const captureSchema = z.preprocess(
  flag,
  obj({
    maxBytes: conv(parseSize).default(CAPTURE_DEFAULTS.maxBytes),
    timeout: conv(positiveDuration).default(CAPTURE_DEFAULTS.timeoutMs),
    banner: conv(text).optional(),
  }),
);

/** `reject: {}` / `reject: true` (same for drop): the action takes no options. */
export const emptyActionSchema = conv((v) => {
  if (v === true || v === null || (typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0))
    return {};
  throw new Error(`takes no options (write {} or true), got ${describe(v)}`);
});

export const routeSchema = obj({
  name: conv(name).optional(),
  match: matchSchema.optional(),
  forward: conv(name).optional(),
  capture: captureSchema.optional(),
  reject: emptyActionSchema.optional(),
  drop: emptyActionSchema.optional(),
});

export const healthSchema = obj({
  interval: conv(positiveDuration).default(5000),
  timeout: conv(positiveDuration).default(2000),
  rise: conv(intIn(1, 100)).default(2),
  fall: conv(intIn(1, 100)).default(3),
});

export const backendSchema = obj({
  servers: list(server, { min: 1 }),
  source: conv(oneOf(SOURCE_MODES)).default('none'),
  balance: conv(oneOf(BALANCES)).default('roundrobin'),
  health: healthSchema.optional(),
  fallback: conv(name).optional(),
  connectTimeout: conv(positiveDuration).default(3000),
  retries: conv(intIn(0, 10)).default(1),
});

export const limitsSchema = obj({
  maxConnections: conv(intIn(1, 1_000_000)).default(8000),
  perSource: conv(intIn(1, 1_000_000)).default(64),
  perSourceRate: conv(parseRate).default({ count: 50, perMs: 1000 }),
  idleTimeout: conv(positiveDuration).default(300_000),
  maxDuration: conv(positiveDuration).default(3_600_000),
  maxBytesIn: conv(parseSize).default(10 * 1024 ** 2),
  maxBytesOut: conv(parseSize).default(100 * 1024 ** 2),
  firstBytes: conv(sizeUpTo(1024 ** 2, '1MiB')).default(4096),
  rejectLogInterval: conv(positiveDuration).default(10_000),
  grace: conv(parseDuration).default(10_000),
});

/** A sink path, or `null` / `false` / "" for none. */
const sinkPath = (v: unknown): string | null => (v === null || v === false || v === '' ? null : text(v));

export const DEFAULT_SQLITE = './data/events.db';

export const eventsSchema = obj({
  sensor: conv(nonEmptyText).optional(),
  sqlite: conv(sinkPath).default(DEFAULT_SQLITE),
  jsonl: conv(sinkPath).default(null),
  updateInterval: conv(positiveDuration).default(60_000),
  queueSize: conv(intIn(1, 10_000_000)).default(100_000),
  batch: conv(positiveDuration).default(200),
});

export const adminSchema = obj({
  listen: conv(server).default({ host: '127.0.0.1', port: 9100 }),
  token: conv((v) => (v === null || v === '' ? null : bearerToken(v))).default(null),
});

/**
 * A token a client can present as `Authorization: Bearer TOKEN`: visible ASCII only. A space
 * or a control character could never be sent in one header token, so it would lock everyone
 * out. The message names the position, never the secret.
 */
function bearerToken(v: unknown): string {
  const t = text(v);
  const bad = /[^\x21-\x7e]/.exec(t);
  if (bad) {
    const what = bad[0] === ' ' ? 'a space' : `character ${JSON.stringify(bad[0])}`;
    throw new Error(
      `the token has ${what} at position ${bad.index + 1}: a Bearer token is visible ASCII only (no spaces)`,
    );
  }
  return t;
}

/** A 32-bit mark: 4096 or "0x1000". */
export function mark(v: unknown): number {
  const n = typeof v === 'string' && /^0x[0-9a-f]{1,8}$/i.test(v.trim()) ? Number.parseInt(v, 16) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 0xffffffff) {
    throw new Error(`expected a mark from 0x1 to 0xffffffff, got ${describe(v)}`);
  }
  return n;
}

export const firewallSchema = obj({
  mark: conv(mark).default(0x1000),
  mask: conv(mark).optional(),
  // 253-255 are the kernel's default, main and local tables.
  table: conv((v) => {
    const t = intIn(1, 0xfffffffe)(v);
    if (t >= 253 && t <= 255)
      throw new Error(`table ${t} is one of the kernel's own (253 default, 254 main, 255 local)`);
    return t;
  }).default(4210),
  rulePriority: conv(intIn(1, 32765)).default(10000),
  checkInterval: conv(positiveDuration).default(5000),
});

/** `workers: 2` or `workers: auto` (one per CPU). */
export function workers(v: unknown): number | 'auto' {
  if (v === 'auto') return 'auto';
  if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 256) return v;
  throw new Error(`expected a number of worker processes from 1 to 256, or auto; got ${describe(v)}`);
}

export const logSchema = obj({
  level: conv(oneOf(LOG_LEVELS)).default('info'),
});

export type RawListener = z.output<typeof listenerSchema>;
export type RawFirewall = z.output<typeof firewallSchema>;
export type RawRoute = z.output<typeof routeSchema>;
export type RawBackend = z.output<typeof backendSchema>;
