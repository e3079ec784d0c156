// The raw YAML shape (what users write) as zod 4 schemas, plus the scalar forms it
// accepts that know addresses: ports, endpoints, CIDRs (the others, and the zod glue, are
// in zod.ts). Each scalar is parsed by a plain function that throws a
// message naming the allowed forms; `conv` turns that into a zod issue, so every problem in
// a file is collected in one pass. A route's action keys come from the action definitions
// (src/actions/definitions/). Cross-field checks (names that must exist, cycles) live in
// checks.ts, which sees the whole file.

import { z } from 'zod';
import { ACTION_SHAPE } from '../actions/definitions/index.js';
import { PROTOCOLS } from '../classifiers/index.js';
import { natsSchema } from '../fleet/config.js';
import { normalizeIp, parseCidr, parseEndpoint } from '../net/address.js';
import { account } from '../privileges/identity.js';
import { recordingsSchema, recordSchema } from '../record/config.js';
import { sensorsMatch, tunnelDialSchema, tunnelListenSchema } from '../tunnel/config.js';
import type { Balance, Cidr, Endpoint, Engine, PortRange, ProxyVersion, SourceMode } from './types.js';
import {
  conv,
  describe,
  intIn,
  list,
  name,
  nonEmptyText,
  obj,
  oneOf,
  parseDuration,
  parsePeriod,
  parseRate,
  parseSize,
  positiveDuration,
  sizeUpTo,
  text,
} from './zod.js';

export { ACTION_KEYS, CAPTURE_DEFAULTS } from '../actions/definitions/index.js';

// ---- scalar forms -------------------------------------------------------------------

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

// ---- the raw shape ------------------------------------------------------------------

export const SOURCE_MODES: readonly SourceMode[] = ['transparent', 'proxy-v2', 'proxy-v1', 'none'];
export const BALANCES: readonly Balance[] = ['roundrobin', 'leastconn', 'source-hash'];
export const ENGINES: readonly Engine[] = ['user', 'kernel'];
export const PROXY_VERSIONS: readonly ProxyVersion[] = ['v1', 'v2'];
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;

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
  'user',
  'group',
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

export const TRANSPORTS = ['tcp', 'udp'] as const;

export const listenerSchema = obj({
  name: conv(name),
  transport: conv(oneOf(TRANSPORTS)).default('tcp'),
  bind: list(parseBind, { min: 1 }).optional(),
  acceptProxy: acceptProxySchema.optional(),
  originalDst: z.boolean({ error: 'expected true or false' }).default(false),
  tproxy: tproxySchema.optional(),
  divert: divertSchema.optional(),
  tunnel: tunnelListenSchema.optional(), // a hub's tunnel listener (src/tunnel/config.ts)
});

export const matchSchema = obj({
  listeners: list(name, { min: 1 }).optional(),
  dstPorts: list((v) => parsePortRange(v), { min: 1 }).optional(),
  dstAddresses: list(cidr, { min: 1 }).optional(),
  srcAddresses: list(cidr, { min: 1 }).optional(),
  protocol: list(oneOf([...PROTOCOLS, 'unknown']), { min: 1 }).optional(),
  sensors: sensorsMatch.optional(), // flows a hub took from these sensors' tunnels
});

export const routeSchema = obj({
  name: conv(name).optional(),
  match: matchSchema.optional(),
  ...ACTION_SHAPE,
  record: recordSchema.optional(), // session recording (src/record/config.ts)
});

export const healthSchema = obj({
  interval: conv(positiveDuration).default(5000),
  timeout: conv(positiveDuration).default(2000),
  rise: conv(intIn(1, 100)).default(2),
  fall: conv(intIn(1, 100)).default(3),
});

export const backendSchema = obj({
  servers: list(server, { min: 1 }).optional(), // required unless `tunnel` (checks.ts)
  tunnel: tunnelDialSchema.optional(), // a sensor's hub (src/tunnel/config.ts)
  source: conv(oneOf(SOURCE_MODES)).default('none'),
  balance: conv(oneOf(BALANCES)).default('roundrobin'),
  health: healthSchema.optional(),
  fallback: conv(name).optional(),
  connectTimeout: conv(positiveDuration).default(3000),
  retries: conv(intIn(0, 10)).default(1),
  record: recordSchema.optional(), // session recording (src/record/config.ts)
  engine: conv(oneOf(ENGINES)).default('user'),
});

/** The amplification guard's defaults (the UDP gateway's too, for a config without `limits`). */
export const AMPLIFICATION_DEFAULTS = {
  enabled: true,
  ratio: 1,
  allowance: 512,
  bytesPerSecond: 16 * 1024,
  packetsPerSecond: 20,
  unanswered: 4,
};

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
  udp: obj({
    idleTimeout: conv(positiveDuration).default(30_000),
    maxFlows: conv(intIn(1, 1_000_000)).default(20_000),
  }).default({ idleTimeout: 30_000, maxFlows: 20_000 }),
  amplification: obj({
    enabled: z.boolean({ error: 'expected true or false' }).default(true),
    ratio: conv(ratio).default(AMPLIFICATION_DEFAULTS.ratio),
    allowance: conv(datagramSize).default(AMPLIFICATION_DEFAULTS.allowance),
    bytesPerSecond: conv(parseSize).default(AMPLIFICATION_DEFAULTS.bytesPerSecond),
    packetsPerSecond: conv(intIn(1, 1_000_000)).default(AMPLIFICATION_DEFAULTS.packetsPerSecond),
    unanswered: conv(intIn(1, 1000)).default(AMPLIFICATION_DEFAULTS.unanswered),
  }).default(AMPLIFICATION_DEFAULTS),
});

/** Bytes of one UDP datagram's worth: 512, "1KiB"; 0 to 65535. */
function datagramSize(v: unknown): number {
  const n = parseSize(v);
  if (n > 65_535) throw new Error(`invalid size ${describe(v)}: at most 65535 (one datagram)`);
  return n;
}

/** A reply-to-request byte ratio: 1, 0.5, "2.0"; 0 (send nothing back) to 100. */
function ratio(v: unknown): number {
  const n = typeof v === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0 || n > 100)
    throw new Error(
      `expected a ratio from 0 to 100 (1 = no more bytes back than received), got ${describe(v)}`,
    );
  return n;
}

/** A sink path, or `null` / `false` / "" for none. */
const sinkPath = (v: unknown): string | null => (v === null || v === false || v === '' ? null : text(v));

export const DEFAULT_SQLITE = './data/events.db';

/** events.retention: how long and how much the SQLite store keeps; each bound optional. */
export const retentionSchema = obj({
  maxAge: conv((v) => {
    const ms = parsePeriod(v);
    if (ms < 60_000) throw new Error(`invalid duration ${describe(v)}: at least 1m`);
    return ms;
  }).optional(),
  maxSize: conv((v) => {
    const bytes = parseSize(v);
    if (bytes < 1024 ** 2) throw new Error(`invalid size ${describe(v)}: at least 1MiB`);
    return bytes;
  }).optional(),
});

/** events.scan: when a source's flows make a `scan` event (src/scan/detector.ts). */
export const scanSchema = obj({
  enabled: z.boolean({ error: 'expected true or false' }).default(true),
  ports: conv(intIn(1, 65535)).default(10),
  addresses: conv(intIn(1, 1_000_000)).default(10),
  idle: conv(positiveDuration).default(30_000),
  maxDuration: conv(positiveDuration).default(600_000),
  maxAddresses: conv(intIn(1, 65536)).default(256),
  maxSources: conv(intIn(1, 1_000_000)).default(4096),
});

export const eventsSchema = obj({
  sensor: conv(nonEmptyText).optional(),
  sqlite: conv(sinkPath).default(DEFAULT_SQLITE),
  jsonl: conv(sinkPath).default(null),
  createDirectories: z.boolean({ error: 'expected true or false' }).default(false),
  updateInterval: conv(positiveDuration).default(60_000),
  queueSize: conv(intIn(1, 10_000_000)).default(100_000),
  batch: conv(positiveDuration).default(200),
  retention: retentionSchema.optional(),
  nats: natsSchema.optional(), // the fleet sink (src/fleet/config.ts)
  enrich: obj({ country: conv(text).optional(), asn: conv(text).optional() }).optional(), // src/enrich
  recordings: recordingsSchema.optional(), // where session recordings go (src/record/config.ts)
  scan: scanSchema.default(scanSchema.parse({})),
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
  kernelMark: conv(mark).default(0x2000),
});

/** `workers: 2` or `workers: auto` (one per CPU). */
export function workers(v: unknown): number | 'auto' {
  if (v === 'auto') return 'auto';
  if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 256) return v;
  throw new Error(`expected a number of worker processes from 1 to 256, or auto; got ${describe(v)}`);
}

/** `user:` / `group:`: an account name or numeric id (looked up in src/privileges/identity.ts). */
export const accountSchema = conv(account).optional();

export const logSchema = obj({
  level: conv(oneOf(LOG_LEVELS)).default('info'),
  format: conv(oneOf(LOG_FORMATS)).default('auto'),
});

export type RawListener = z.output<typeof listenerSchema>;
export type RawFirewall = z.output<typeof firewallSchema>;
export type RawRoute = z.output<typeof routeSchema>;
export type RawBackend = z.output<typeof backendSchema>;
