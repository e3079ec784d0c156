// `capture: { maxBytes, timeout, banner }`: stand where a honeypot would, record the
// attacker's first bytes, close (src/actions/capture.ts).
import { z } from 'zod';
import { conv, formatDuration, obj, parseSize, positiveDuration, text } from '../../config/zod.js';
import { defineAction } from './types.js';

export interface CaptureOptions {
  maxBytes: number; // read at most this much, then close
  timeoutMs: number; // close after this long even if the attacker sent less
  banner: string | null; // sent on accept (e.g. a fake SSH banner), or nothing
  reply?: Buffer; // UDP flows: sent back to each datagram (through the amplification guard)
}

export type CaptureAction = { type: 'capture'; capture: CaptureOptions };

/** What `capture: {}` means; also the capture a backend falls back to (with firstBytes as its size). */
export const CAPTURE_DEFAULTS: CaptureOptions = { maxBytes: 4096, timeoutMs: 10_000, banner: null };

/** "00 01 ab", "0001ab": bytes as hex, whitespace ignored; at most 1400 bytes (one datagram on any path). */
function hexBytes(v: unknown): Buffer {
  const s = text(v).replace(/\s+/g, '');
  if (!/^([0-9a-fA-F]{2})+$/.test(s) || s.length > 2800)
    throw new Error('expected hex bytes like "00 01 ab", at most 1400 of them');
  return Buffer.from(s, 'hex');
}

/** `capture: {}`, `capture: true` and a bare `capture:` all mean "capture with defaults". */
const flag = (v: unknown) => (v === true || v === null ? {} : v);

export const captureSchema = z.preprocess(
  flag,
  obj({
    maxBytes: conv(parseSize).default(CAPTURE_DEFAULTS.maxBytes),
    timeout: conv(positiveDuration).default(CAPTURE_DEFAULTS.timeoutMs),
    banner: conv(text).optional(),
    reply: conv(hexBytes).optional(),
  }),
);

export const capture = defineAction({
  type: 'capture',
  schema: captureSchema,
  assemble: (c): CaptureAction => ({
    type: 'capture',
    capture: {
      maxBytes: c.maxBytes,
      timeoutMs: c.timeout,
      banner: c.banner ?? null,
      ...(c.reply ? { reply: c.reply } : {}),
    },
  }),
  describe: ({ capture: c }) => {
    const bytes = Buffer.byteLength(c.banner ?? '');
    const banner = c.banner === null ? '' : `send a banner (${bytes} byte${bytes === 1 ? '' : 's'}), `;
    const reply = c.reply ? `answer UDP datagrams with ${c.reply.length} bytes, ` : '';
    return `${banner}${reply}capture up to ${c.maxBytes} bytes for ${formatDuration(c.timeoutMs)}, then close`;
  },
});
