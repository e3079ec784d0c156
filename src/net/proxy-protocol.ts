// PROXY protocol v1/v2 codec (haproxy doc/proxy-protocol.txt), written for hostile input.
// npm checked: proxy-protocol-js (throws, no 'incomplete' state, v1 addresses unchecked, v2 parse
// ignores TLVs, CRC and the length field), proxy-protocol-v2 (dev prerelease only), proxy-protocol (v1 only).
import { isIPv4, isIPv6, SocketAddress } from 'node:net';
import ipaddr from 'ipaddr.js';
import { crc32c } from './crc32c.js';

export type ProxyFamily = 'TCP4' | 'TCP6' | 'UDP4' | 'UDP6' | 'UNIX_STREAM' | 'UNIX_DGRAM' | 'UNKNOWN';
export interface ProxyAddress {
  ip: string; // IPv4 dotted quad or IPv6 in Node's compressed form (as socket.remoteAddress prints it)
  port: number;
}
export interface Tlv {
  type: number;
  value: Buffer;
}
export interface SslInfo {
  client: number; // PP2_CLIENT_* bits
  verify: number; // 0: the client certificate was verified
  version?: string;
  cn?: string;
  cipher?: string;
  sigAlg?: string;
  keyAlg?: string;
  subTlvs: Tlv[]; // all sub-TLVs in order, including unknown ones
}
export interface ProxyHeader {
  version: 1 | 2;
  command: 'PROXY' | 'LOCAL'; // v1 is always PROXY; v1 "UNKNOWN" maps to command PROXY, family UNKNOWN
  family: ProxyFamily; // for v2 LOCAL: the family byte as sent, though its addresses are ignored
  src: ProxyAddress | null; // null for LOCAL, UNKNOWN/UNSPEC, UNIX
  dst: ProxyAddress | null;
  unixSrc?: string; // UNIX families: the path up to the first NUL; an abstract name keeps its leading "\0"
  unixDst?: string;
  tlvs: Tlv[]; // all TLVs in order, including unknown ones
  alpn?: string;
  authority?: string;
  uniqueId?: Buffer;
  ssl?: SslInfo;
  netns?: string;
  length: number; // bytes the header took on the wire
}
export type ParseResult =
  | { status: 'incomplete' }
  | { status: 'done'; header: ProxyHeader; consumed: number }
  | { status: 'error'; reason: string };
export interface ParseOptions {
  v1: boolean;
  v2: boolean;
  maxV2Length?: number; // limit on the v2 length field (address + TLV bytes); default 4096
}
export interface EncodeV2Options {
  command?: 'PROXY' | 'LOCAL'; // default PROXY when addresses are given, else LOCAL
  src?: ProxyAddress;
  dst?: ProxyAddress;
  family?: ProxyFamily; // default: TCP4/TCP6 from the addresses, UNIX_STREAM when unixSrc/unixDst are given
  unixSrc?: string;
  unixDst?: string;
  tlvs?: Tlv[];
  crc32c?: boolean; // append a CRC32C TLV computed over the whole header
}

export const PP2_TYPE = {
  ALPN: 0x01,
  AUTHORITY: 0x02,
  CRC32C: 0x03,
  NOOP: 0x04,
  UNIQUE_ID: 0x05,
  SSL: 0x20,
  NETNS: 0x30,
} as const;
export const PP2_SUBTYPE_SSL = {
  VERSION: 0x21,
  CN: 0x22,
  CIPHER: 0x23,
  SIG_ALG: 0x24,
  KEY_ALG: 0x25,
} as const;
export const PP2_CLIENT = { SSL: 0x01, CERT_CONN: 0x02, CERT_SESS: 0x04 } as const;

export const V1_MAX_LENGTH = 107; // including CRLF
export const V2_SIGNATURE = Buffer.from([
  0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
]);
const V2_FIXED = 16;
const DEFAULT_MAX_V2_LENGTH = 4096;
const UNIQUE_ID_MAX = 128;
const UNIX_PATH = 108;

const FAMILY_BYTES: Record<number, { family: ProxyFamily; addrLen: number }> = {
  0: { family: 'UNKNOWN', addrLen: 0 },
  17: { family: 'TCP4', addrLen: 12 },
  18: { family: 'UDP4', addrLen: 12 },
  33: { family: 'TCP6', addrLen: 36 },
  34: { family: 'UDP6', addrLen: 36 },
  49: { family: 'UNIX_STREAM', addrLen: 2 * UNIX_PATH },
  50: { family: 'UNIX_DGRAM', addrLen: 2 * UNIX_PATH },
};
const FAMILY_LIST = '0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32';

const INCOMPLETE: ParseResult = Object.freeze({ status: 'incomplete' });
const fail = (reason: string): ParseResult => ({ status: 'error', reason });
const hex = (n: number, width = 2): string => `0x${n.toString(16).toUpperCase().padStart(width, '0')}`;

/** Quotes attacker bytes for a message: printable ASCII as is, the rest as \xNN, capped. */
function show(text: string): string {
  const cut = text.length > 40 ? `${text.slice(0, 40)}...` : text;
  return `"${cut.replace(/[^\x20-\x7e]|["\\]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)}"`;
}

/**
 * Parses a PROXY header at the start of `buf` (everything received so far). Never throws and
 * never reads past `buf`. 'incomplete' means the bytes are a valid prefix of an enabled version;
 * 'error' is returned as soon as they cannot be one.
 */
export function parseProxyHeader(buf: Buffer, opts: ParseOptions): ParseResult {
  try {
    if (!opts.v1 && !opts.v2) return fail('no PROXY protocol version enabled (v1 and v2 are both off)');
    const max = opts.maxV2Length ?? DEFAULT_MAX_V2_LENGTH;
    if (!Number.isInteger(max) || max < 0) return fail(`maxV2Length must be an integer >= 0, got ${max}`);
    if (buf.length === 0) return INCOMPLETE;
    const first = buf[0]!;
    if (first === 0x50 /* P */) {
      return opts.v1 ? parseV1(buf) : fail('v1 header received but only v2 is accepted');
    }
    if (first === 0x0d) {
      return opts.v2 ? parseV2(buf, max) : fail('v2 header received but only v1 is accepted');
    }
    const expected = [opts.v1 ? '"P" (v1)' : '', opts.v2 ? '0x0D (v2)' : ''].filter(Boolean).join(' or ');
    return fail(`not a PROXY protocol header: first byte ${hex(first)}, expected ${expected}`);
  } catch (err) {
    // Unreachable by design; kept so a bug here is a rejected flow, not a crashed gateway.
    return fail(`internal error while parsing: ${(err as Error)?.message ?? String(err)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// v1: "PROXY TCP4 1.2.3.4 5.6.7.8 1234 80\r\n"

const V1_PROTOCOLS = ['TCP4', 'TCP6', 'UNKNOWN'];
const V1_FIELDS = ['', '', 'source address', 'destination address', 'source port', 'destination port'];

function parseV1(buf: Buffer): ParseResult {
  // The CR may sit at index 105 at most, so that CRLF ends at byte 107.
  const scan = Math.min(buf.length, V1_MAX_LENGTH - 1);
  let cr = -1;
  for (let i = 0; i < scan; i++) {
    const c = buf[i];
    if (c === 0x0d) {
      cr = i;
      break;
    }
    if (c === 0x0a) return fail(`v1: line ends in a lone LF at byte ${i} (CRLF required)`);
  }
  if (cr === -1) {
    if (buf.length >= V1_MAX_LENGTH - 1) return fail(`v1: no CRLF within the first ${V1_MAX_LENGTH} bytes`);
    const check = checkV1Line(buf.toString('latin1'), false);
    return typeof check === 'string' ? fail(check) : INCOMPLETE;
  }
  const check = checkV1Line(buf.toString('latin1', 0, cr), true);
  if (typeof check === 'string') return fail(check);
  if (buf.length === cr + 1) return INCOMPLETE;
  if (buf[cr + 1] !== 0x0a) return fail(`v1: CR at byte ${cr} is not followed by LF`);
  const length = cr + 2;
  const header: ProxyHeader = {
    version: 1,
    command: 'PROXY',
    family: check?.family ?? 'UNKNOWN',
    src: check?.src ?? null,
    dst: check?.dst ?? null,
    tlvs: [],
    length,
  };
  return { status: 'done', header, consumed: length };
}

interface V1Line {
  family: ProxyFamily;
  src: ProxyAddress | null;
  dst: ProxyAddress | null;
}

/**
 * Checks a v1 line without its CRLF. With complete=false the line is what arrived so far and
 * its last field may be cut short. Returns an error message, null (a valid prefix), or the fields.
 */
function checkV1Line(line: string, complete: boolean): string | V1Line | null {
  const f = line.split(' ');
  const last = f.length - 1;
  const whole = (i: number): boolean => i < last || complete;
  const f0 = f[0]!;
  if (!whole(0)) return 'PROXY'.startsWith(f0) ? null : `v1: line starts with ${show(f0)}, expected "PROXY"`;
  if (f0 !== 'PROXY') return `v1: line starts with ${show(f0)}, expected "PROXY"`;
  const proto = f[1];
  if (proto === undefined) return 'v1: "PROXY" must be followed by a space and TCP4, TCP6 or UNKNOWN';
  if (!whole(1)) {
    return V1_PROTOCOLS.some((p) => p.startsWith(proto))
      ? null
      : `v1: protocol ${show(proto)} is not TCP4, TCP6 or UNKNOWN`;
  }
  // UNKNOWN: the receiver ignores the rest of the line.
  if (proto === 'UNKNOWN') return { family: 'UNKNOWN', src: null, dst: null };
  if (proto === '') return 'v1: empty protocol field (fields are separated by exactly one space)';
  if (proto !== 'TCP4' && proto !== 'TCP6') return `v1: protocol ${show(proto)} is not TCP4, TCP6 or UNKNOWN`;
  for (let i = 2; i < 6; i++) {
    const v = f[i];
    if (v === undefined) return complete ? `v1: ${proto} line has ${f.length} fields, expected 6` : null;
    const done = whole(i);
    if (done && v === '') return `v1: empty ${V1_FIELDS[i]} (fields are separated by exactly one space)`;
    const ok = i < 4 ? (proto === 'TCP4' ? ipv4Ok(v, done) : ipv6Ok(v, done)) : portOk(v, done);
    if (!ok) {
      const what =
        i < 4 ? `an ${proto === 'TCP4' ? 'IPv4' : 'IPv6'} address` : 'a port (0-65535, no leading zeros)';
      return `v1: ${V1_FIELDS[i]} ${show(v)} ${done ? 'is not' : 'cannot become'} ${what}`;
    }
  }
  if (f.length > 6) return `v1: ${proto} line has ${f.length} fields, expected 6`;
  if (!complete) return null;
  const family = proto as ProxyFamily;
  const ip = (t: string): string => (family === 'TCP4' ? t : formatIpv6(t));
  return {
    family,
    src: { ip: ip(f[2]!), port: Number(f[4]) },
    dst: { ip: ip(f[3]!), port: Number(f[5]) },
  };
}

/** Dotted quad, each octet 0-255 without leading zeros; with complete=false, a prefix of one. */
function ipv4Ok(s: string, complete: boolean): boolean {
  const parts = s.split('.');
  if (parts.length > 4 || (complete && parts.length !== 4)) return false;
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    if (p === '') {
      if (complete || i !== parts.length - 1) return false;
      continue;
    }
    if (!/^\d{1,3}$/.test(p) || (p.length > 1 && p[0] === '0') || Number(p) > 255) return false;
  }
  return true;
}

/** IPv6 text (hex groups, one "::", optional trailing dotted quad); with complete=false, a plausible prefix. */
function ipv6Ok(s: string, complete: boolean): boolean {
  if (s.length > 45 || !/^[0-9A-Fa-f:.]*$/.test(s)) return false;
  const groups = s.split(':');
  const tail = groups[groups.length - 1]!;
  if (tail.includes('.') && (groups.length < 3 || !ipv4Ok(tail, complete))) return false;
  if (complete) return isIPv6(s);
  if (s.includes(':::')) return false;
  const dbl = s.indexOf('::');
  if (dbl !== -1 && s.indexOf('::', dbl + 1) !== -1) return false;
  if (groups.length > 9) return false;
  for (let i = 0; i < groups.length - 1; i++)
    if (groups[i]!.length > 4 || groups[i]!.includes('.')) return false;
  return tail.includes('.') || tail.length <= 4;
}

function portOk(s: string, complete: boolean): boolean {
  if (!/^\d{0,5}$/.test(s) || (complete && s === '')) return false;
  return (s.length <= 1 || s[0] !== '0') && Number(s) <= 65535;
}

/** Node's normal IPv6 form: lower case, longest zero run compressed, IPv4-mapped as ::ffff:a.b.c.d. */
function formatIpv6(text: string): string {
  return new SocketAddress({ address: text, family: 'ipv6' }).address;
}

// ---------------------------------------------------------------------------------------------
// v2: 12-byte signature, ver/cmd, family, length, address block, TLVs.

function parseV2(buf: Buffer, maxLength: number): ParseResult {
  const sigEnd = Math.min(buf.length, V2_SIGNATURE.length);
  for (let i = 0; i < sigEnd; i++) {
    if (buf[i] !== V2_SIGNATURE[i]) {
      return fail(`v2: signature byte ${i} is ${hex(buf[i]!)}, expected ${hex(V2_SIGNATURE[i]!)}`);
    }
  }
  if (buf.length < 13) return INCOMPLETE;
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 2) return fail(`v2: version nibble is ${verCmd >> 4}, only 2 is valid`);
  const cmd = verCmd & 0x0f;
  if (cmd > 1) return fail(`v2: command ${hex(cmd, 1)} is not 0x0 (LOCAL) or 0x1 (PROXY)`);
  if (buf.length < 14) return INCOMPLETE;
  const fam = FAMILY_BYTES[buf[13]!];
  if (!fam) return fail(`v2: family/transport byte ${hex(buf[13]!)} is not one of ${FAMILY_LIST}`);
  if (buf.length < V2_FIXED) return INCOMPLETE;
  const len = buf.readUInt16BE(14);
  if (len > maxLength) return fail(`v2: header length ${len} exceeds the limit of ${maxLength}`);
  // LOCAL ignores the address block, family included (the spec, and HAProxy): a LOCAL header
  // whose family byte is set may carry a shorter block, or none.
  const addrLen = cmd === 0 ? Math.min(fam.addrLen, len) : fam.addrLen;
  if (len < addrLen) {
    return fail(`v2: length ${len} is too short for the ${fam.family} address block (${fam.addrLen} bytes)`);
  }
  const end = V2_FIXED + len;
  // Walk the TLV headers that have arrived: an overrun is reported before the rest comes in.
  const walk = walkTlvs(buf, V2_FIXED + addrLen, end, 'v2', 'header');
  if (typeof walk === 'string') return fail(walk);
  if (walk === null || buf.length < end) return INCOMPLETE;

  const header: ProxyHeader = {
    version: 2,
    command: cmd === 1 ? 'PROXY' : 'LOCAL',
    family: fam.family,
    src: null,
    dst: null,
    tlvs: walk.map((t) => ({ type: t.type, value: Buffer.from(t.value) })),
    length: end,
  };
  if (cmd === 1) readAddresses(buf, header);
  const problem = interpretTlvs(buf.subarray(0, end), walk, header);
  if (problem) return fail(problem);
  return { status: 'done', header, consumed: end };
}

function readAddresses(buf: Buffer, h: ProxyHeader): void {
  const a = V2_FIXED;
  switch (h.family) {
    case 'TCP4':
    case 'UDP4':
      h.src = { ip: buf.subarray(a, a + 4).join('.'), port: buf.readUInt16BE(a + 8) };
      h.dst = { ip: buf.subarray(a + 4, a + 8).join('.'), port: buf.readUInt16BE(a + 10) };
      break;
    case 'TCP6':
    case 'UDP6':
      h.src = { ip: ipv6FromBytes(buf.subarray(a, a + 16)), port: buf.readUInt16BE(a + 32) };
      h.dst = { ip: ipv6FromBytes(buf.subarray(a + 16, a + 32)), port: buf.readUInt16BE(a + 34) };
      break;
    case 'UNIX_STREAM':
    case 'UNIX_DGRAM':
      h.unixSrc = unixPath(buf.subarray(a, a + UNIX_PATH));
      h.unixDst = unixPath(buf.subarray(a + UNIX_PATH, a + 2 * UNIX_PATH));
      break;
    default:
      break; // UNKNOWN (UNSPEC): no addresses
  }
}

function ipv6FromBytes(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return formatIpv6(groups.join(':'));
}

/** A NUL-padded sockaddr_un path; an abstract name (leading NUL) keeps the NUL and drops the padding. */
function unixPath(b: Buffer): string {
  if (b[0] === 0) {
    let end = b.length;
    while (end > 1 && b[end - 1] === 0) end--;
    return end === 1 ? '' : b.toString('utf8', 0, end);
  }
  const nul = b.indexOf(0);
  return b.toString('utf8', 0, nul === -1 ? b.length : nul);
}

interface RawTlv {
  type: number;
  value: Buffer; // a view into the parsed buffer
  offset: number; // of the value, from the start of the walked buffer
}

/**
 * Walks TLVs from `start` to `end` (both offsets into `buf`, `end` may lie beyond the bytes
 * received so far). Returns an error message, null when more bytes are needed to go on, or the
 * TLVs when they all arrived. Checks that need only a TLV's type and length are done here.
 */
function walkTlvs(
  buf: Buffer,
  start: number,
  end: number,
  where: string,
  container: string,
): string | RawTlv[] | null {
  const out: RawTlv[] = [];
  let pos = start;
  while (pos < end) {
    const left = end - pos;
    if (left < 3) return `${where}: ${left} stray byte(s) at the end of ${container}, too few for a TLV (3)`;
    if (pos + 3 > buf.length) return null;
    const type = buf[pos]!;
    const len = buf.readUInt16BE(pos + 1);
    if (len > left - 3) {
      return `${where}: TLV ${hex(type)} overruns ${container} (len ${len} > ${left - 3} left)`;
    }
    if (container === 'header') {
      if (type === PP2_TYPE.CRC32C && len !== 4) return `v2: CRC32C TLV has length ${len}, must be 4`;
      if (type === PP2_TYPE.UNIQUE_ID && len > UNIQUE_ID_MAX) {
        return `v2: UNIQUE_ID TLV has length ${len}, at most ${UNIQUE_ID_MAX} allowed`;
      }
    }
    if (pos + 3 + len > buf.length) return null;
    out.push({ type, value: buf.subarray(pos + 3, pos + 3 + len), offset: pos + 3 });
    pos += 3 + len;
  }
  return out;
}

// A type we read into a field must appear once: two AUTHORITY TLVs would leave the reader guessing.
const SINGLE = new Set<number>([
  PP2_TYPE.ALPN,
  PP2_TYPE.AUTHORITY,
  PP2_TYPE.CRC32C,
  PP2_TYPE.UNIQUE_ID,
  PP2_TYPE.SSL,
  PP2_TYPE.NETNS,
]);

/** Fills the typed fields of `h` from the TLVs and checks the CRC. Returns an error message or null. */
function interpretTlvs(wire: Buffer, tlvs: RawTlv[], h: ProxyHeader): string | null {
  const seen = new Set<number>();
  for (const t of tlvs) {
    if (SINGLE.has(t.type)) {
      if (seen.has(t.type)) return `v2: TLV ${hex(t.type)} appears more than once`;
      seen.add(t.type);
    }
    switch (t.type) {
      case PP2_TYPE.ALPN:
        h.alpn = t.value.toString('latin1');
        break;
      case PP2_TYPE.AUTHORITY:
        h.authority = t.value.toString('utf8');
        break;
      case PP2_TYPE.CRC32C: {
        const copy = Buffer.from(wire);
        copy.fill(0, t.offset, t.offset + 4);
        const expected = t.value.readUInt32BE(0);
        const actual = crc32c(copy);
        if (expected !== actual)
          return `v2: CRC32C mismatch (header says ${hex(expected, 8)}, computed ${hex(actual, 8)})`;
        break;
      }
      case PP2_TYPE.UNIQUE_ID:
        h.uniqueId = Buffer.from(t.value);
        break;
      case PP2_TYPE.SSL: {
        const ssl = parseSsl(t.value);
        if (typeof ssl === 'string') return ssl;
        h.ssl = ssl;
        break;
      }
      case PP2_TYPE.NETNS:
        h.netns = t.value.toString('latin1');
        break;
      default:
        break; // NOOP and unknown types stay in h.tlvs only
    }
  }
  return null;
}

const SSL_FIELDS: Record<number, 'version' | 'cn' | 'cipher' | 'sigAlg' | 'keyAlg'> = {
  [PP2_SUBTYPE_SSL.VERSION]: 'version',
  [PP2_SUBTYPE_SSL.CN]: 'cn',
  [PP2_SUBTYPE_SSL.CIPHER]: 'cipher',
  [PP2_SUBTYPE_SSL.SIG_ALG]: 'sigAlg',
  [PP2_SUBTYPE_SSL.KEY_ALG]: 'keyAlg',
};

function parseSsl(v: Buffer): SslInfo | string {
  if (v.length < 5) return `v2: SSL TLV has length ${v.length}, needs at least 5 (client, verify)`;
  const sub = walkTlvs(v, 5, v.length, 'v2', 'SSL TLV');
  if (typeof sub === 'string') return sub;
  if (sub === null) return 'v2: SSL sub-TLVs are truncated'; // cannot happen: v is complete
  const ssl: SslInfo = {
    client: v[0]!,
    verify: v.readUInt32BE(1),
    subTlvs: sub.map((t) => ({ type: t.type, value: Buffer.from(t.value) })),
  };
  for (const t of sub) {
    const field = SSL_FIELDS[t.type];
    if (!field) continue;
    if (ssl[field] !== undefined) return `v2: SSL sub-TLV ${hex(t.type)} appears more than once`;
    // CN is UTF-8 per the spec; the others are US-ASCII, read byte for byte.
    ssl[field] = t.value.toString(field === 'cn' ? 'utf8' : 'latin1');
  }
  return ssl;
}

// ---------------------------------------------------------------------------------------------
// Encoding. Inputs come from our own code, so bad ones throw (RangeError / TypeError).

/** Returns 4 or 16 address bytes, IPv4-mapped IPv6 folded to 4; null if `ip` is not a literal IP. */
function ipBytes(ip: string): Buffer | null {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  if (!isIPv6(ip) || ip.includes('%')) return null;
  // ipaddr.js reads "::a.b.c.d" (IPv4-compatible, as Node prints those bytes) as the mapped
  // "::ffff:a.b.c.d", which would turn into the IPv4 address a.b.c.d; "0::a.b.c.d" it reads right.
  const b = Buffer.from(ipaddr.IPv6.parse(ip.startsWith('::') ? `0${ip}` : ip).toByteArray());
  const mapped = b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
  return mapped ? Buffer.from(b.subarray(12)) : b;
}

function checkPort(port: number, what: string): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`${what} port must be an integer 0-65535, got ${port}`);
  }
}

/** "PROXY TCP4|TCP6 src dst sport dport\r\n"; mixed families or non-IP text give "PROXY UNKNOWN\r\n". */
export function encodeProxyV1(src: ProxyAddress, dst: ProxyAddress): Buffer {
  checkPort(src.port, 'source');
  checkPort(dst.port, 'destination');
  const s = ipBytes(src.ip);
  const d = ipBytes(dst.ip);
  if (!s || !d || s.length !== d.length) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  const text = (b: Buffer): string => (b.length === 4 ? b.join('.') : ipv6FromBytes(b));
  const proto = s.length === 4 ? 'TCP4' : 'TCP6';
  return Buffer.from(`PROXY ${proto} ${text(s)} ${text(d)} ${src.port} ${dst.port}\r\n`, 'latin1');
}

const FAMILY_CODES: Record<ProxyFamily, number> = {
  UNKNOWN: 0x00,
  TCP4: 0x11,
  UDP4: 0x12,
  TCP6: 0x21,
  UDP6: 0x22,
  UNIX_STREAM: 0x31,
  UNIX_DGRAM: 0x32,
};

function to16(b: Buffer): Buffer {
  if (b.length === 16) return b;
  const out = Buffer.alloc(16);
  out[10] = 0xff;
  out[11] = 0xff;
  b.copy(out, 12);
  return out;
}

function encodeAddresses(opts: EncodeV2Options, command: 'PROXY' | 'LOCAL'): { fam: number; block: Buffer } {
  const unix = opts.unixSrc !== undefined || opts.unixDst !== undefined;
  // 'TCP': TCP4 or TCP6, whichever the addresses need.
  const family = opts.family ?? (unix ? 'UNIX_STREAM' : opts.src || opts.dst ? 'TCP' : 'UNKNOWN');
  // LOCAL: the spec says a sender should present no address at all.
  if (command === 'LOCAL' || family === 'UNKNOWN') return { fam: 0x00, block: Buffer.alloc(0) };
  if (family === 'UNIX_STREAM' || family === 'UNIX_DGRAM') {
    const block = Buffer.alloc(2 * UNIX_PATH);
    for (const [i, path] of [opts.unixSrc ?? '', opts.unixDst ?? ''].entries()) {
      const bytes = Buffer.from(path, 'utf8');
      if (bytes.length > UNIX_PATH)
        throw new RangeError(`UNIX path is ${bytes.length} bytes, at most 108 fit`);
      bytes.copy(block, i * UNIX_PATH);
    }
    return { fam: FAMILY_CODES[family], block };
  }
  const s = opts.src && ipBytes(opts.src.ip);
  const d = opts.dst && ipBytes(opts.dst.ip);
  if (!opts.src || !opts.dst || !s || !d) {
    // Like encodeProxyV1's UNKNOWN: without two IP addresses, say nothing about addresses.
    if (family === 'TCP') return { fam: 0x00, block: Buffer.alloc(0) };
    throw new TypeError(`family ${family} needs literal IP addresses in both src and dst`);
  }
  checkPort(opts.src.port, 'source');
  checkPort(opts.dst.port, 'destination');
  const udp = family === 'UDP4' || family === 'UDP6';
  // Like HAProxy: IPv4 when both are IPv4, else both as IPv6 (IPv4 as ::ffff:a.b.c.d). An
  // explicit TCP6/UDP6 forces IPv6; an explicit TCP4/UDP4 needs two IPv4 addresses.
  const both4 = s.length === 4 && d.length === 4;
  if ((family === 'TCP4' || family === 'UDP4') && !both4) {
    throw new TypeError(`family ${family} needs IPv4 addresses, got "${opts.src.ip}", "${opts.dst.ip}"`);
  }
  const v4 = both4 && family !== 'TCP6' && family !== 'UDP6';
  const a = v4 ? s : to16(s);
  const b = v4 ? d : to16(d);
  const block = Buffer.alloc(a.length * 2 + 4);
  a.copy(block, 0);
  b.copy(block, a.length);
  block.writeUInt16BE(opts.src.port, a.length * 2);
  block.writeUInt16BE(opts.dst.port, a.length * 2 + 2);
  return { fam: v4 ? (udp ? 0x12 : 0x11) : udp ? 0x22 : 0x21, block };
}

function encodeTlv(t: Tlv): Buffer {
  if (!Number.isInteger(t.type) || t.type < 0 || t.type > 255)
    throw new RangeError(`TLV type must be 0-255, got ${t.type}`);
  if (t.value.length > 65535)
    throw new RangeError(`TLV ${hex(t.type)} value is ${t.value.length} bytes, at most 65535`);
  if (t.type === PP2_TYPE.UNIQUE_ID && t.value.length > UNIQUE_ID_MAX) {
    throw new RangeError(`UNIQUE_ID is ${t.value.length} bytes, at most ${UNIQUE_ID_MAX}`);
  }
  const out = Buffer.alloc(3 + t.value.length);
  out[0] = t.type;
  out.writeUInt16BE(t.value.length, 1);
  t.value.copy(out, 3);
  return out;
}

/** Builds a v2 header. With crc32c, a CRC32C TLV goes last and covers the whole header. */
export function encodeProxyV2(opts: EncodeV2Options): Buffer {
  const command = opts.command ?? (opts.src || opts.dst || opts.unixSrc || opts.unixDst ? 'PROXY' : 'LOCAL');
  const { fam, block } = encodeAddresses(opts, command);
  const tlvs = opts.tlvs ?? [];
  if (opts.crc32c && tlvs.some((t) => t.type === PP2_TYPE.CRC32C)) {
    throw new TypeError('crc32c: true and a CRC32C TLV in tlvs: pass one or the other');
  }
  const parts = tlvs.map(encodeTlv);
  if (opts.crc32c) parts.push(encodeTlv({ type: PP2_TYPE.CRC32C, value: Buffer.alloc(4) }));
  const len = block.length + parts.reduce((n, p) => n + p.length, 0);
  if (len > 65535) throw new RangeError(`v2 header body is ${len} bytes, at most 65535`);
  const fixed = Buffer.alloc(V2_FIXED);
  V2_SIGNATURE.copy(fixed, 0);
  fixed[12] = 0x20 | (command === 'PROXY' ? 1 : 0);
  fixed[13] = fam;
  fixed.writeUInt16BE(len, 14);
  const out = Buffer.concat([fixed, block, ...parts]);
  if (opts.crc32c) out.writeUInt32BE(crc32c(out), out.length - 4);
  return out;
}
