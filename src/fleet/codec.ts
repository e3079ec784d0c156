// One event as one NATS message: JSON `{"v":1,"row":[...]}`, the row's values in COLUMNS
// order (row.ts), first bytes in base64. The collector decodes with checks: anything else on
// the subject (another tool's message, a truncated body) is rejected with a reason, never stored.
import type { FlowEvent } from '../events/event.js';
import { COLUMNS, eventValues, valuesToEvent } from '../events/row.js';

export const CODEC_VERSION = 1;
const FIRST_BYTES = COLUMNS.indexOf('first_bytes');
const BASE_COLUMNS = COLUMNS.indexOf('transport'); // the row's length before UDP flows
const TYPES = new Set(['flow', 'update', 'rejected', 'firewall', 'egress']);
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

export function encodeEvent(e: FlowEvent): Uint8Array {
  const row = eventValues(e);
  row[FIRST_BYTES] = (row[FIRST_BYTES] as Buffer).toString('base64');
  return Buffer.from(JSON.stringify({ v: CODEC_VERSION, row }));
}

export type Decoded = { ok: true; event: FlowEvent } | { ok: false; reason: string };

export function decodeEvent(data: Uint8Array): Decoded {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  if (!doc || typeof doc !== 'object' || (doc as { v?: unknown }).v !== CODEC_VERSION) {
    return { ok: false, reason: `not a honeygate event (v${CODEC_VERSION})` };
  }
  const row = (doc as { row?: unknown }).row;
  // A sensor from before the trailing columns (transport, udp) sends fewer: they are null.
  if (!Array.isArray(row) || row.length < BASE_COLUMNS || row.length > COLUMNS.length)
    return { ok: false, reason: 'row has the wrong shape' };
  while (row.length < COLUMNS.length) row.push(null);
  for (let i = 0; i < COLUMNS.length; i++) {
    const col = COLUMNS[i]!;
    const v = row[i];
    if (TEXT.has(col) && typeof v !== 'string') return { ok: false, reason: `${col} is not text` };
    if (INT.has(col) && !(typeof v === 'number' && Number.isFinite(v)))
      return { ok: false, reason: `${col} is not a number` };
    if (!TEXT.has(col) && !INT.has(col) && v !== null && typeof v === 'object')
      return { ok: false, reason: `${col} is not a value` };
  }
  if (!/^[0-9a-f]{1,64}$/.test(row[0] as string)) return { ok: false, reason: 'id is not hex' };
  if (!TYPES.has(row[1] as string))
    return { ok: false, reason: `unknown type ${JSON.stringify(row[1]).slice(0, 40)}` };
  if (typeof row[FIRST_BYTES] !== 'string') return { ok: false, reason: 'first_bytes is not base64' };
  row[FIRST_BYTES] = Buffer.from(row[FIRST_BYTES], 'base64');
  return { ok: true, event: valuesToEvent(row) };
}
