// Address helpers shared by config, routing and admission. ipaddr.js does the parsing;
// what is ours is the normal form: IPv4-mapped IPv6 (::ffff:a.b.c.d, as Node reports
// IPv4 peers on dual-stack sockets) is folded to plain IPv4 so one attacker has one key.
import { isIPv4, isIPv6 } from 'node:net';
import ipaddr from 'ipaddr.js';
import type { Cidr, Endpoint } from '../config/types.js';

/** Returns the normal text form of an IP address, or null if it is not one. */
export function normalizeIp(text: string): string | null {
  if (!ipaddr.isValid(text)) return null;
  let addr = ipaddr.parse(text);
  if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress()) {
    addr = (addr as ipaddr.IPv6).toIPv4Address();
  }
  return addr.toString();
}

/**
 * normalizeIp for an address Node read from the kernel (socket.remoteAddress, localAddress):
 * libuv already prints those canonically (lowercase, longest zero run compressed), so only
 * the forms with an embedded IPv4 (::ffff:a.b.c.d) need the full parse, which is too dear
 * to run on every flow.
 */
export function socketIp(text: string): string | null {
  if (isIPv4(text)) return text;
  if (!text.includes('.') && isIPv6(text)) return text;
  return normalizeIp(text);
}

export function ipFamily(ip: string): 4 | 6 {
  return ip.includes(':') ? 6 : 4;
}

/** Parses "a.b.c.d/n", "x::/n" or a bare address (a /32 or /128). Throws with a message on bad input. */
export function parseCidr(text: string): Cidr {
  const [addrText, prefixText, extra] = text.split('/');
  if (extra !== undefined || !addrText || !ipaddr.isValid(addrText)) {
    throw new Error(`"${text}" is not an IP address or CIDR block`);
  }
  const addr = ipaddr.parse(addrText);
  const family = addr.kind() === 'ipv4' ? 4 : 6;
  const max = family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (!/^\d{1,3}$/.test(prefixText ?? String(max)) || prefix > max) {
    throw new Error(`"${text}": prefix length must be 0-${max}`);
  }
  const bytes = Buffer.from(addr.toByteArray());
  return { text, family, bytes: maskBytes(bytes, prefix), prefix };
}

function maskBytes(bytes: Buffer, prefix: number): Buffer {
  const out = Buffer.from(bytes);
  for (let i = 0; i < out.length; i++) {
    const bits = Math.max(0, Math.min(8, prefix - i * 8));
    out[i] = out[i]! & ((0xff << (8 - bits)) & 0xff);
  }
  return out;
}

/** True when `ip` (normal form) lies in `cidr`. IPv4 never matches an IPv6 block and vice versa. */
export function cidrContains(cidr: Cidr, ip: string): boolean {
  if (ipFamily(ip) !== cidr.family || !ipaddr.isValid(ip)) return false;
  const bytes = Buffer.from(ipaddr.parse(ip).toByteArray());
  return maskBytes(bytes, cidr.prefix).equals(cidr.bytes);
}

export function anyContains(cidrs: Cidr[], ip: string): boolean {
  for (const c of cidrs) if (cidrContains(c, ip)) return true;
  return false;
}

/** "1.2.3.4:80" or "[2001:db8::1]:80". */
export function formatEndpoint(e: { host?: string; ip?: string; port: number }): string {
  const host = e.host ?? e.ip ?? '';
  return host.includes(':') ? `[${host}]:${e.port}` : `${host}:${e.port}`;
}

/** Parses "host:port" / "[v6]:port" with a literal IP. Throws with a message on bad input. */
export function parseEndpoint(text: string): Endpoint {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]+):(\d+)$/.exec(text);
  if (!m) throw new Error(`"${text}" is not ADDRESS:PORT (IPv6 as [ADDRESS]:PORT)`);
  const host = normalizeIp(m[1]!);
  if (!host) throw new Error(`"${text}": "${m[1]}" is not an IP address`);
  const port = Number(m[2]);
  if (port > 65535) throw new Error(`"${text}": port must be 0-65535`);
  return { host, port };
}

function cidrRange(c: Cidr): [bigint, bigint] {
  const bits = c.family === 4 ? 32 : 128;
  let start = 0n;
  for (const b of c.bytes) start = (start << 8n) | BigInt(b);
  const size = 1n << BigInt(bits - c.prefix);
  return [start, start + size - 1n];
}

/**
 * The blocks of one family in nft's element syntax, sorted, with blocks inside another
 * dropped (an interval set rejects overlapping elements). null: the family is covered
 * entirely (a /0), so the rule needs no address match at all.
 */
export function familyAddresses(cidrs: Cidr[], family: 4 | 6): string[] | null {
  const mine = cidrs.filter((c) => c.family === family);
  if (mine.some((c) => c.prefix === 0)) return null;
  const ranged = mine
    .map((c) => ({ c, r: cidrRange(c) }))
    .sort((a, b) => (a.r[0] < b.r[0] ? -1 : a.r[0] > b.r[0] ? 1 : b.c.prefix - a.c.prefix));
  const kept: typeof ranged = [];
  for (const x of ranged) {
    const last = kept[kept.length - 1];
    if (last && x.r[0] >= last.r[0] && x.r[1] <= last.r[1]) continue;
    kept.push(x);
  }
  const max = family === 4 ? 32 : 128;
  return kept.map(({ c }) => {
    const addr = ipaddr.fromByteArray([...c.bytes]).toString();
    return c.prefix === max ? addr : `${addr}/${c.prefix}`;
  });
}
