// An event as its row of the events table: named (EventRow, as a query returns it) or as
// positional values in COLUMNS order (the SQLite insert, and the worker -> primary channel).
import { deserialize, serialize } from 'node:v8';
import type { CloseReason, EventType, FlowEvent, UdpCounts } from './event.js';
import { safeJson } from './format.js';

/** One row of the events table as the driver returns it. */
export interface EventRow {
  seq: number;
  id: string;
  type: string;
  opened_at: number;
  closed_at: number | null;
  sensor: string;
  listener: string;
  src_ip: string;
  src_port: number;
  dst_ip: string;
  dst_port: number;
  peer_ip: string | null;
  peer_port: number | null;
  proxy_header: string | null;
  route: string | null;
  action: string | null;
  backend: string | null;
  server: string | null;
  source_mode: string | null;
  bytes_in: number;
  bytes_out: number;
  duration_ms: number;
  close_reason: string | null;
  first_bytes: Buffer | null;
  protocol: string | null;
  protocol_fields: string | null;
  count: number;
  detail: string | null;
  src_country: string | null; // events.enrich (migration step 2)
  src_asn: number | null;
  src_as_org: string | null;
  targets: string | null; // JSON of FlowEvent.targets (rejected, scan)
  scan: string | null; // JSON of FlowEvent.scan
  transport: string | null; // null: tcp (rows from before UDP listeners)
  udp: string | null; // JSON UdpCounts of a UDP flow
  recording: string | null; // the session recording's id (src/record), when one was kept
}

// The order of eventValues(): positional parameters, since binding 27 named ones from an
// object costs the driver about twice as much.
export const COLUMNS = [
  ...[
    'id',
    'type',
    'opened_at',
    'closed_at',
    'sensor',
    'listener',
    'src_ip',
    'src_port',
    'dst_ip',
    'dst_port',
  ],
  ...['peer_ip', 'peer_port', 'proxy_header', 'route', 'action', 'backend', 'server', 'source_mode'],
  ...['bytes_in', 'bytes_out', 'duration_ms', 'close_reason', 'first_bytes', 'protocol', 'protocol_fields'],
  ...['count', 'detail'],
  ...['src_country', 'src_asn', 'src_as_org'],
  ...['targets', 'scan'],
  ...['transport', 'udp'],
  ...['recording'],
] as const satisfies readonly (keyof EventRow)[];

/** An event as the values of its row, in COLUMNS order. */
export type EventValues = unknown[];

// Built directly (no object to read back by name: that lookup was megamorphic). Defensive
// on every field: one malformed event must not fail its batch.
export function eventValues(e: FlowEvent): EventValues {
  const peer = e.peer;
  return [
    text(e.id),
    text(e.type),
    num(e.openedAt),
    e.closedAt == null ? null : num(e.closedAt),
    text(e.sensor),
    text(e.listener),
    text(e.src?.ip),
    num(e.src?.port),
    text(e.dst?.ip),
    num(e.dst?.port),
    peer ? text(peer.ip) : null,
    peer ? num(peer.port) : null,
    e.proxyHeader ?? null,
    e.route ?? null,
    e.action ?? null,
    e.backend ?? null,
    e.server ?? null,
    e.sourceMode ?? null,
    num(e.bytesIn),
    num(e.bytesOut),
    num(e.durationMs),
    e.closeReason ?? null,
    Buffer.isBuffer(e.firstBytes) ? e.firstBytes : Buffer.from(e.firstBytes ?? []),
    e.protocol ?? null,
    safeJson(e.protocolFields),
    num(e.count),
    e.detail ?? null,
    e.geo?.country ?? null,
    e.geo?.asn ?? null,
    e.geo?.asOrg ?? null,
    e.targets ? safeJson(e.targets) : null,
    e.scan ? safeJson(e.scan) : null,
    e.transport === 'udp' ? 'udp' : null,
    e.udp ? safeJson(e.udp as unknown as Record<string, unknown>) : null,
    typeof e.recording === 'string' ? e.recording : null,
  ];
}

/**
 * A worker's batch as one block: its events' rows through the V8 serializer. The primary
 * reads its events from it (unpackEvents) and hands the block itself to the store thread,
 * which reads the rows again there: no event is cloned on the primary's loop (a clone
 * costs ~1.5 µs an event, the primary's largest part; docs/performance.md).
 */
export function packEvents(events: readonly FlowEvent[]): Uint8Array {
  return serialize(events.map(eventValues));
}

/** Where an event read from a pack came from: the pack, and its row there. */
export interface Packed {
  pack: Uint8Array;
  index: number;
}

const PACKED: unique symbol = Symbol('honeygate.packed');

/** The events of a pack, each knowing its place in it (packedOf). Throws on a malformed pack. */
export function unpackEvents(pack: Uint8Array): FlowEvent[] {
  const rows = unpackRows(pack);
  const events: FlowEvent[] = new Array(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const e: FlowEvent & { [PACKED]?: Packed } = valuesToEvent(rows[i]!);
    e[PACKED] = { pack, index: i };
    events[i] = e;
  }
  return events;
}

/** The pack and row an event was read from (unpackEvents), or undefined. Symbol-keyed: JSON and clones leave it out. */
export function packedOf(e: FlowEvent): Packed | undefined {
  return (e as FlowEvent & { [PACKED]?: Packed })[PACKED];
}

/** The rows of a pack. */
export function unpackRows(pack: Uint8Array): EventValues[] {
  const rows = deserialize(pack) as EventValues[];
  if (!Array.isArray(rows)) throw new TypeError('not a pack of event rows');
  return rows;
}

/** The event eventValues() was given, as `honeygate events` would read it back. */
export function valuesToEvent(v: EventValues): FlowEvent {
  const [id, type, openedAt, closedAt, sensor, listener, srcIp, srcPort, dstIp, dstPort] = v;
  const [peerIp, peerPort, proxyHeader, route, action, backend, server, sourceMode] = v.slice(10, 18);
  const [bytesIn, bytesOut, durationMs, closeReason, firstBytes, protocol, fields, count, detail] = v.slice(
    18,
    27,
  );
  const [country, asn, asOrg] = v.slice(27, 30);
  const geo =
    country == null && asn == null && asOrg == null
      ? undefined
      : {
          country: (country as string | null) ?? null,
          asn: (asn as number | null) ?? null,
          asOrg: (asOrg as string | null) ?? null,
        };
  const [targets, scan] = v.slice(30, 32);
  const [transport, udp] = v.slice(32, 34);
  const recording = v[34];
  const e: FlowEvent = {
    id: id as string,
    type: type as EventType,
    openedAt: openedAt as number,
    closedAt: closedAt as number | null,
    sensor: sensor as string,
    listener: listener as string,
    src: { ip: srcIp as string, port: srcPort as number },
    dst: { ip: dstIp as string, port: dstPort as number },
    peer: peerIp == null ? null : { ip: peerIp as string, port: (peerPort as number | null) ?? 0 },
    proxyHeader: proxyHeader as FlowEvent['proxyHeader'],
    route: route as string | null,
    action: action as FlowEvent['action'],
    backend: backend as string | null,
    server: server as string | null,
    sourceMode: sourceMode as string | null,
    bytesIn: bytesIn as number,
    bytesOut: bytesOut as number,
    durationMs: durationMs as number,
    closeReason: closeReason as CloseReason | null,
    firstBytes: Buffer.isBuffer(firstBytes) ? firstBytes : Buffer.from((firstBytes as Uint8Array) ?? []),
    protocol: protocol as string | null,
    protocolFields: parseFields(fields as string | null),
    count: count as number,
    detail: detail as string | null,
    ...(geo ? { geo } : {}),
    ...(transport === 'udp' ? { transport: 'udp' as const, udp: parseUdp(udp) } : {}),
  };
  // Set only when present, so a flow reads back exactly as it was recorded.
  if (typeof targets === 'string') e.targets = parseFields(targets) as unknown as FlowEvent['targets'];
  if (typeof scan === 'string') e.scan = parseFields(scan) as unknown as FlowEvent['scan'];
  if (typeof recording === 'string') e.recording = recording;
  return e;
}

function parseUdp(v: unknown): UdpCounts | null {
  if (typeof v !== 'string') return null;
  const f = parseFields(v) as Partial<UdpCounts> | null;
  const n = (x: unknown) => (typeof x === 'number' && Number.isFinite(x) ? x : 0);
  return f
    ? {
        datagramsIn: n(f.datagramsIn),
        datagramsOut: n(f.datagramsOut),
        heldDatagrams: n(f.heldDatagrams),
        heldBytes: n(f.heldBytes),
      }
    : null;
}

// String() is a builtin call even for a string, which nearly every value here already is.
function text(x: unknown): string {
  return typeof x === 'string' ? x : String(x ?? '');
}

function num(x: unknown): number {
  return typeof x === 'number' && Number.isFinite(x) ? x : 0;
}

/** The FlowEvent a row was written from (a query's row; not on the data path). */
export function rowToEvent(r: EventRow): FlowEvent {
  return valuesToEvent(COLUMNS.map((c) => r[c]));
}

function parseFields(text: string | null): Record<string, unknown> | null {
  if (text === null) return null;
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    return { _unparsable: text };
  }
}
