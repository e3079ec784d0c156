// An event as an Elastic Common Schema document: what the JSON lines file holds and what
// `honeygate events --json --format ecs` prints. Standard fields where ECS has one; what it
// has no field for goes under `honeygate.*`, in snake_case. test/unit/events-ecs.test.ts
// checks every event type against ECS's own field definitions (the @elastic/ecs package).
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import type { FlowEvent } from './event.js';
import { escapeBytes, safeJson } from './format.js';

/**
 * The ECS version the documents declare. 8.17 is the last 8.x release, the one Elastic
 * Stack 8 speaks; every field used here exists with the same type in 8.17 and in 9.x (the
 * test validates against 9.4, a superset for these fields).
 */
export const ECS_VERSION = '8.17.0';

const EVENT_TYPES: Record<string, string[]> = {
  flow: ['connection', 'end'],
  update: ['connection', 'info'],
  rejected: ['connection', 'denied'],
  firewall: ['change'],
  egress: ['connection', 'denied'],
  scan: ['info'],
};

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/** One line of the file. Optional fields are left out, not null, when the event has no value. */
export interface EcsDocument {
  '@timestamp'?: string;
  ecs: { version: string };
  event: {
    id: string;
    kind: 'event';
    category: string[];
    type: string[];
    action?: string;
    reason?: string;
    start?: string;
    end?: string;
    duration: number; // nanoseconds
    dataset: 'honeygate.flow';
    module: 'honeygate';
  };
  observer: { name: string; product: 'honeygate'; vendor: 'honeygate'; type: 'proxy' };
  source?: {
    ip?: string;
    port?: number;
    bytes: number;
    geo?: { country_iso_code: string }; // events.enrich
    as?: { number?: number; organization?: { name: string } };
  };
  destination?: { ip?: string; port?: number; bytes: number };
  network?: {
    type?: 'ipv4' | 'ipv6';
    transport: string;
    direction: 'inbound' | 'outbound';
    protocol?: string;
    community_id?: string;
    bytes: number;
  };
  related?: { ip: string[] };
  http?: { request: { method: string }; version?: string };
  url?: { original: string; path?: string; query?: string };
  user_agent?: { original: string };
  tls?: { version?: string; version_protocol?: string; client?: { server_name: string } };
  honeygate: {
    type: string;
    listener: string;
    route?: string;
    backend?: string;
    server?: string;
    source_mode?: string;
    proxy_header?: string;
    peer?: { ip: string; port: number };
    first_bytes: string; // base64
    first_bytes_text: string; // printable, non-printables escaped
    ssh?: Record<string, Json>; // the SSH classifier's fields, hassh and hassh_algorithms among them
    // ECS has tls.client.ja3 but no JA4 field (as of ECS 9.4): ours until it has one.
    tls?: { ja4: string };
    protocol_fields?: Record<string, Json>; // the classifier's fields ECS has no place for
    count: number;
    detail?: string;
    recording?: string; // the session recording's id (`honeygate replay ID`)
    targets?: {
      ports: string; // ascending ranges: "22,80,8000-8099"
      port_count: number;
      addresses: string[];
      address_count: number;
      last?: string; // the last flow counted (event.start: the first)
      ports_truncated?: boolean;
    };
    scan?: { flows: number; refused: number; rate: number; techniques: Record<string, number> };
    udp?: { datagrams_in: number; datagrams_out: number; held_datagrams: number; held_bytes: number };
  };
}

/** Maps an event to its ECS document (nested objects; absent values are left out). */
export function toEcs(e: FlowEvent): EcsDocument {
  // start, end and duration come from one clock: the wall-clock open time plus the flow's
  // monotonic duration. (closedAt is a separate Date.now(), and each truncates to whole ms
  // independently, so a 2.9 ms flow opened at x.9 could show 3 ms between start and end.)
  const end = e.closedAt == null ? undefined : e.openedAt + e.durationMs;
  const at = end ?? e.openedAt + e.durationMs; // close time, or the update's time
  const first = Buffer.isBuffer(e.firstBytes) ? e.firstBytes : Buffer.from(e.firstBytes ?? []);
  const isFlow = e.type !== 'firewall';
  const egress = e.type === 'egress';
  const srcIp = ipOrUndefined(e.src?.ip);
  const dstIp = ipOrUndefined(e.dst?.ip);
  const fields = protocolDoc(e.protocol?.toLowerCase() ?? null, e.protocolFields);
  const doc: EcsDocument = {
    '@timestamp': iso(at),
    ecs: { version: ECS_VERSION },
    event: {
      id: e.id,
      kind: 'event',
      category:
        e.type === 'scan' ? ['network', 'intrusion_detection'] : isFlow ? ['network'] : ['configuration'],
      type: EVENT_TYPES[e.type] ?? ['connection'],
      action: e.action ?? undefined,
      reason: e.closeReason ?? undefined,
      start: iso(e.openedAt),
      end: end === undefined ? undefined : iso(end),
      duration: Math.round(e.durationMs * 1_000_000), // ECS wants nanoseconds
      dataset: 'honeygate.flow',
      module: 'honeygate',
    },
    observer: { name: e.sensor, product: 'honeygate', vendor: 'honeygate', type: 'proxy' },
    honeygate: {
      type: e.type,
      listener: e.listener,
      route: e.route ?? undefined,
      backend: e.backend ?? undefined,
      server: e.server ?? undefined,
      source_mode: e.sourceMode ?? undefined,
      proxy_header: e.proxyHeader ?? undefined,
      peer: e.peer ? { ip: e.peer.ip, port: e.peer.port } : undefined,
      first_bytes: first.toString('base64'),
      first_bytes_text: escapeBytes(first),
      ssh: fields.ssh,
      tls: fields.ja4 ? { ja4: fields.ja4 } : undefined,
      protocol_fields: fields.rest,
      count: e.count,
      detail: e.detail ?? undefined,
      recording: e.recording,
      targets: e.targets
        ? {
            ports: e.targets.ports,
            port_count: e.targets.portCount,
            addresses: e.targets.addresses,
            address_count: e.targets.addressCount,
            last: iso(e.targets.lastAt),
            ports_truncated: e.targets.portsTruncated || undefined,
          }
        : undefined,
      scan: e.scan
        ? {
            flows: e.scan.flows,
            refused: e.scan.refused,
            rate: e.scan.rate,
            // snake_case like every key of ours: connect-reset -> connect_reset
            techniques: Object.fromEntries(
              Object.entries(e.scan.techniques).map(([k, n]) => [k.replace(/-/g, '_'), n ?? 0]),
            ),
          }
        : undefined,
      udp: e.udp
        ? {
            datagrams_in: e.udp.datagramsIn,
            datagrams_out: e.udp.datagramsOut,
            held_datagrams: e.udp.heldDatagrams,
            held_bytes: e.udp.heldBytes,
          }
        : undefined,
    },
  };
  if (isFlow) {
    // An ECS ip field must hold an IP: unknown ('') and aggregated ('*') sources are left out.
    doc.source = { ip: srcIp, port: e.src?.port || undefined, bytes: e.bytesIn };
    const geo = e.geo;
    if (geo && srcIp) {
      if (geo.country) doc.source.geo = { country_iso_code: geo.country };
      if (geo.asn !== null || geo.asOrg)
        doc.source.as = {
          number: geo.asn ?? undefined,
          organization: geo.asOrg ? { name: geo.asOrg } : undefined,
        };
    }
    doc.destination = { ip: dstIp, port: e.dst?.port || undefined, bytes: e.bytesOut };
    const family = dstIp ? isIP(dstIp) : srcIp ? isIP(srcIp) : 0;
    doc.network = {
      type: family === 4 ? 'ipv4' : family === 6 ? 'ipv6' : undefined,
      // An egress event's protocol is its transport (tcp, udp, icmp): a honeypot's own
      // attempt, dropped before any application data.
      transport: egress ? (e.protocol ?? 'unknown') : (e.transport ?? 'tcp'),
      // attackers reach in from outside; the gateway is the perimeter
      direction: egress ? 'outbound' : 'inbound',
      protocol: egress ? undefined : (e.protocol?.toLowerCase() ?? undefined),
      // One flow's id: a rejection or egress tally covers many flows.
      community_id:
        e.type !== 'rejected' && !egress && srcIp && dstIp && e.src.port && e.dst.port
          ? communityId(srcIp, e.src.port, dstIp, e.dst.port, e.transport === 'udp' ? 17 : 6)
          : undefined,
      bytes: e.bytesIn + e.bytesOut,
    };
    const related = new Set<string>();
    for (const ip of [srcIp, dstIp, ipOrUndefined(e.peer?.ip), serverIp(e.server)]) if (ip) related.add(ip);
    if (related.size) doc.related = { ip: [...related] };
  }
  Object.assign(doc, fields.ecs);
  return compact(doc);
}

interface ProtocolDoc {
  ecs: Partial<Pick<EcsDocument, 'http' | 'url' | 'user_agent' | 'tls'>>;
  ssh?: Record<string, Json>;
  ja4?: string;
  rest?: Record<string, Json>;
}

// The classifier's fields: those ECS has a place for go there, the rest stay ours (snake_case).
function protocolDoc(protocol: string | null, raw: Record<string, unknown> | null): ProtocolDoc {
  const out: ProtocolDoc = { ecs: {} };
  if (!raw || typeof raw !== 'object') return out;
  const rest: Record<string, Json> = {};
  for (const [k, v] of Object.entries(raw)) rest[snake(k)] = toJson(v);
  const str = (k: string): string | undefined => {
    const v = rest[k];
    if (typeof v !== 'string' || v === '') return undefined;
    delete rest[k];
    return v;
  };
  if (protocol === 'http') {
    const method = str('method');
    const target = str('path');
    const version = str('version');
    const ua = str('user_agent');
    if (method) out.ecs.http = { request: { method }, version };
    else if (version) rest.version = version;
    if (target !== undefined) {
      // url.path only for an origin-form target ("/a?b"); "*" or an absolute URL stay whole.
      const q = target.indexOf('?');
      out.ecs.url = target.startsWith('/')
        ? {
            original: target,
            path: q < 0 ? target : target.slice(0, q),
            query: q < 0 || q === target.length - 1 ? undefined : target.slice(q + 1),
          }
        : { original: target };
    }
    if (ua !== undefined) out.ecs.user_agent = { original: ua };
  } else if (protocol === 'tls') {
    const sni = str('sni');
    const name = str('version');
    out.ja4 = str('ja4');
    const m = name ? /^(SSL|TLS)(\d\.\d)$/.exec(name) : null;
    out.ecs.tls = {
      version: m ? m[2] : undefined,
      version_protocol: m ? m[1]!.toLowerCase() : undefined,
      client: sni ? { server_name: sni } : undefined,
    };
    if (name && !m) rest.version = name; // an unknown version number, e.g. 0x7f1c
    if (rest.sni === null) delete rest.sni;
  } else if (protocol === 'ssh') {
    out.ssh = rest; // no ECS fields for SSH: all ours, under a name of their own
    return out;
  }
  if (Object.keys(rest).length) out.rest = rest;
  return out;
}

/** clientVersion -> client_version; already snake or lower case stays as it is. */
function snake(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();
}

// Values a classifier put in its fields, as JSON can hold them (BigInt and cycles made safe).
function toJson(v: unknown): Json {
  if (v === undefined) return null;
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  const text = safeJson(v);
  return text === null ? null : (JSON.parse(text) as Json);
}

function serverIp(server: string | null | undefined): string | undefined {
  if (!server) return undefined;
  const i = server.lastIndexOf(':');
  const host = i < 0 ? server : server.slice(0, i);
  return ipOrUndefined(host.replace(/^\[|\]$/g, ''));
}

// Leaves absent values out of the document itself (not only its JSON text), at any depth.
function compact<T extends object>(doc: T): T {
  const obj = doc as Record<string, unknown>;
  for (const [key, value] of Object.entries(obj)) {
    if (value === undefined) delete obj[key];
    else if (value && typeof value === 'object' && !Array.isArray(value) && !Buffer.isBuffer(value)) {
      compact(value);
      if (Object.keys(value).length === 0) delete obj[key];
    }
  }
  return doc;
}

function ipOrUndefined(ip: string | undefined | null): string | undefined {
  return ip && isIP(ip) ? ip : undefined;
}

function iso(ms: number): string | undefined {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

/**
 * Community ID v1 of a flow (github.com/corelight/community-id-spec): base64 of the SHA-1
 * of seed (2 bytes), the lower endpoint's address, the other's, the IP protocol number, a
 * zero byte and both ports (big-endian; the lower endpoint first), prefixed "1:". The order
 * makes both directions of a flow give the same id. Ports are ICMP type/code for ICMP;
 * `port` arguments of null (protocols without ports) hash only the addresses.
 */
export function communityId(
  srcIp: string,
  srcPort: number | null,
  dstIp: string,
  dstPort: number | null,
  proto: number,
  seed = 0,
): string {
  let a = { ip: ipBytes(srcIp), port: srcPort };
  let b = { ip: ipBytes(dstIp), port: dstPort };
  let ordered = Buffer.compare(a.ip, b.ip) < 0 || (a.ip.equals(b.ip) && (a.port ?? 0) <= (b.port ?? 0));
  if (proto === 1 || proto === 58) {
    // ICMP: a request/reply pair is one flow; the spec maps the type onto its counterpart.
    const [port1, port2, oneWay] = icmpPorts(proto, a.port ?? 0, b.port ?? 0);
    a = { ...a, port: port1 };
    b = { ...b, port: port2 };
    // A one-way type (no counterpart) is hashed in the order seen, as the spec's reference does.
    ordered = oneWay || Buffer.compare(a.ip, b.ip) < 0 || (a.ip.equals(b.ip) && port1 <= port2);
  }
  if (!ordered) [a, b] = [b, a];
  const parts: Buffer[] = [u16(seed), a.ip, b.ip, Buffer.from([proto, 0])];
  if (a.port !== null && b.port !== null) parts.push(u16(a.port), u16(b.port));
  return `1:${createHash('sha1').update(Buffer.concat(parts)).digest('base64')}`;
}

// The spec's type -> counterpart tables (ICMPv4 and ICMPv6); a type without one is one-way.
const ICMP4: Record<number, number> = {
  8: 0,
  0: 8,
  13: 14,
  14: 13,
  15: 16,
  16: 15,
  17: 18,
  18: 17,
  10: 9,
  9: 10,
};
const ICMP6: Record<number, number> = {
  128: 129,
  129: 128,
  133: 134,
  134: 133,
  135: 136,
  136: 135,
  130: 131,
  131: 130,
  144: 145,
  145: 144,
  139: 140,
  140: 139,
};

function icmpPorts(proto: number, type: number, code: number): [number, number, boolean] {
  const peer = (proto === 1 ? ICMP4 : ICMP6)[type];
  return peer === undefined ? [type, code, true] : [type, peer, false];
}

function ipBytes(ip: string): Buffer {
  const family = isIP(ip);
  if (family === 4) return Buffer.from(ip.split('.').map(Number));
  if (family !== 6) throw new TypeError(`not an IP address: ${ip}`);
  return ipv6Bytes(ip);
}

// The WHATWG URL parser writes an IPv6 address in its canonical form (hex groups, "::" for
// the longest zero run, an embedded IPv4 tail as two groups): only "::" is left to expand.
function ipv6Bytes(ip: string): Buffer {
  const canonical = new URL(`http://[${ip.split('%')[0]}]/`).hostname.slice(1, -1);
  const [head, tail] = canonical.includes('::') ? canonical.split('::') : [canonical, null];
  const words = (s: string | undefined) => (s ? s.split(':').map((w) => Number.parseInt(w, 16)) : []);
  const h = words(head);
  const t = tail === null ? [] : words(tail);
  const all = [...h, ...Array<number>(8 - h.length - t.length).fill(0), ...t];
  const buf = Buffer.alloc(16);
  for (let i = 0; i < 8; i++) buf.writeUInt16BE(all[i]!, i * 2);
  return buf;
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n & 0xffff);
  return b;
}
