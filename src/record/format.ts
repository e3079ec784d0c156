// The recording file (<id>.hgrec): a header, then one record per chunk or end, in the
// order honeygate saw them. Little-endian throughout.
//
//   "HGREC1\n" | u32 header length | header (JSON: RecordingHeader)
//   then records: u8 kind | f64 seconds since the header's startedAt | u32 length | bytes
//
// Kinds: 1 attacker -> gateway data, 2 gateway -> attacker data, 3 the attacker's FIN,
// 4 our FIN to the attacker, 5 truncated here (maxBytes, budget or disk; the data says why).
import type { Address } from '../events/event.js';

export const MAGIC = Buffer.from('HGREC1\n', 'latin1');
export const RECORD_HEAD = 13; // kind + time + length

export const KIND = { in: 1, out: 2, finIn: 3, finOut: 4, truncated: 5 } as const;
export type Kind = (typeof KIND)[keyof typeof KIND];

export interface RecordingHeader {
  id: string; // the flow's event id; the file is <id>.hgrec
  startedAt: number; // epoch ms of the first record's time 0
  src: Address; // the attacker
  dst: Address; // where the attacker connected to
  listener: string;
  route: string | null;
  action: string | null; // forward or capture
  backend: string | null;
}

export interface Chunk {
  kind: Kind;
  t: number; // seconds since startedAt
  data: Buffer;
}

export function encodeHeader(h: RecordingHeader): Buffer {
  const json = Buffer.from(JSON.stringify(h), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length);
  return Buffer.concat([MAGIC, len, json]);
}

/** One record's head; the data follows it unchanged (no copy of the payload). */
export function encodeHead(kind: Kind, t: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(RECORD_HEAD);
  b.writeUInt8(kind, 0);
  b.writeDoubleLE(t, 1);
  b.writeUInt32LE(length, 9);
  return b;
}

export class FormatError extends Error {}

/**
 * Parses a whole file. A file cut short (honeygate killed mid-write, the disk full) yields
 * the records before the cut and `complete: false`; a foreign file throws FormatError.
 */
export function decode(buf: Buffer): { header: RecordingHeader; chunks: Chunk[]; complete: boolean } {
  if (buf.length < MAGIC.length + 4 || !buf.subarray(0, MAGIC.length).equals(MAGIC))
    throw new FormatError('not a honeygate recording (no HGREC1 header)');
  const hlen = buf.readUInt32LE(MAGIC.length);
  const hend = MAGIC.length + 4 + hlen;
  if (hend > buf.length) throw new FormatError('recording header cut short');
  let header: RecordingHeader;
  try {
    header = JSON.parse(buf.subarray(MAGIC.length + 4, hend).toString('utf8')) as RecordingHeader;
  } catch {
    throw new FormatError('recording header is not JSON');
  }
  const chunks: Chunk[] = [];
  let off = hend;
  while (off + RECORD_HEAD <= buf.length) {
    const kind = buf.readUInt8(off) as Kind;
    if (kind < 1 || kind > 5) throw new FormatError(`unknown record kind ${kind} at offset ${off}`);
    const t = buf.readDoubleLE(off + 1);
    const len = buf.readUInt32LE(off + 9);
    if (off + RECORD_HEAD + len > buf.length) break;
    chunks.push({ kind, t, data: buf.subarray(off + RECORD_HEAD, off + RECORD_HEAD + len) });
    off += RECORD_HEAD + len;
  }
  return { header, chunks, complete: off === buf.length };
}
