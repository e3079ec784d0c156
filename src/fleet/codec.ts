// Events as NATS messages: JSON `{"v":2,"rows":[[...],...]}`, each row's values in COLUMNS
// order (row.ts), first bytes in base64; a message carries up to MESSAGE_BYTES of events.
// One publish per event cost the sink 80 µs of CPU an event, half a flow's whole cost; with a
// message per batch the sink costs 15 µs an event (docs/performance.md). An older sensor's `{"v":1,"row":[...]}` (one event) still decodes.
// The collector decodes with checks: anything else on the subject (another tool's message, a
// truncated body, one bad row) is rejected with a reason, never stored.
import type { FlowEvent } from '../events/event.js';
import { COLUMNS, eventValues, valuesToEvent } from '../events/row.js';

export const CODEC_VERSION = 2;
/** A message's size at most, unless one event alone is larger: far under NATS's default max_payload (1 MiB). */
export const MESSAGE_BYTES = 64 * 1024;
const FIRST_BYTES = COLUMNS.indexOf('first_bytes');
/** The shortest row accepted: an older sensor's, from before the enrichment columns (src_country, ...). Every column since is nullable. */
const ROW_BEFORE_ENRICH = COLUMNS.indexOf('src_country');
const TYPES = new Set(['flow', 'update', 'rejected', 'firewall', 'egress', 'scan']);
const TEXT = new Set<string>(['id', 'type', 'sensor', 'listener', 'src_ip', 'dst_ip']);
const INT = new Set<string>([
  'opened_at',
  'src_port',
  'dst_port',
  'bytes_in',
  'bytes_out',
  'duration_ms',
  'count',
]);

/**
 * The message id of an event: its id, and for an `update` (which shares the flow's id with the
 * final record) the id plus its duration, so each update is its own message. JetStream drops a
 * second message with the same id inside the stream's duplicate window; the collector, forever.
 */
export function messageId(e: Pick<FlowEvent, 'id' | 'type' | 'durationMs'>): string {
  return e.type === 'update' ? `${e.id}.u${e.durationMs}` : e.id;
}

/**
 * The id the collector keeps an event under (fleet_received): the recording gateway's subject
 * token and messageId, `fra1:<id>`. A sensor and its hub record a tunneled flow under one id
 * (docs/tunnel.md), and the hub's event names the sensor in `sensor`: only the gateway that
 * sent it tells the two records apart. `gateway` null (a v1 message, from a sensor before
 * batching): the bare messageId, as collectors have kept those.
 */
export function recordKey(e: Pick<FlowEvent, 'id' | 'type' | 'durationMs'>, gateway: string | null): string {
  return gateway === null ? messageId(e) : `${gateway}:${messageId(e)}`;
}

/** One message of the outbox: its JetStream message id, its body, and how many events it carries. */
export interface Message {
  msgId: string;
  data: Uint8Array;
  n: number;
}

/**
 * Encodes a batch as messages of at most MESSAGE_BYTES. A message's id names the gateway that
 * sends it, its first event and its count: fixed when the outbox stores it, so a retry after a
 * lost acknowledgement carries the same id and JetStream keeps it once.
 */
export function encodeEvents(events: FlowEvent[], gateway: string): Message[] {
  const out: Message[] = [];
  let rows: string[] = [];
  let bytes = 0;
  let first: FlowEvent | null = null;
  const emit = () => {
    if (first === null) return;
    out.push({
      msgId: `${gateway}/${messageId(first)}/${rows.length}`,
      data: Buffer.from(`{"v":${CODEC_VERSION},"rows":[${rows.join(',')}]}`),
      n: rows.length,
    });
    rows = [];
    bytes = 0;
    first = null;
  };
  for (const e of events) {
    const row = eventValues(e);
    row[FIRST_BYTES] = (row[FIRST_BYTES] as Buffer).toString('base64');
    const text = JSON.stringify(row);
    const size = Buffer.byteLength(text) + 1;
    if (bytes + size > MESSAGE_BYTES) emit();
    first ??= e;
    rows.push(text);
    bytes += size;
  }
  emit();
  return out;
}

export type Decoded =
  | { ok: true; events: FlowEvent[]; version: 1 | 2 } // version: the body's v
  | { ok: false; reason: string };

export function decodeMessage(data: Uint8Array): Decoded {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  const v = doc && typeof doc === 'object' ? (doc as { v?: unknown }).v : undefined;
  let rows: unknown;
  if (v === 1) rows = [(doc as { row?: unknown }).row];
  else if (v === CODEC_VERSION) rows = (doc as { rows?: unknown }).rows;
  else return { ok: false, reason: `not a honeygate event (v1 or v${CODEC_VERSION})` };
  if (!Array.isArray(rows) || rows.length === 0) return { ok: false, reason: 'rows is not a list of events' };
  const events: FlowEvent[] = [];
  for (const row of rows) {
    const reason = checkRow(row);
    if (reason !== null)
      return { ok: false, reason: rows.length > 1 ? `row ${events.length}: ${reason}` : reason };
    events.push(valuesToEvent(row as unknown[]));
  }
  return { ok: true, events, version: v === 1 ? 1 : 2 };
}

/** Null when `row` is an event's values (first bytes decoded in place), else what is wrong. */
function checkRow(row: unknown): string | null {
  if (!Array.isArray(row) || row.length < ROW_BEFORE_ENRICH || row.length > COLUMNS.length)
    return 'row has the wrong shape';
  while (row.length < COLUMNS.length) row.push(null);
  for (let i = 0; i < COLUMNS.length; i++) {
    const col = COLUMNS[i]!;
    const v = row[i];
    if (TEXT.has(col) && typeof v !== 'string') return `${col} is not text`;
    if (INT.has(col) && !(typeof v === 'number' && Number.isFinite(v))) return `${col} is not a number`;
    if (!TEXT.has(col) && !INT.has(col) && v !== null && typeof v === 'object')
      return `${col} is not a value`;
  }
  if (!/^[0-9a-f]{1,64}$/.test(row[0] as string)) return 'id is not hex';
  if (!TYPES.has(row[1] as string)) return `unknown type ${JSON.stringify(row[1]).slice(0, 40)}`;
  if (typeof row[FIRST_BYTES] !== 'string') return 'first_bytes is not base64';
  row[FIRST_BYTES] = Buffer.from(row[FIRST_BYTES], 'base64');
  return null;
}
