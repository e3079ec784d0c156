// NTP (RFC 5905) and its control (mode 6) and private (mode 7, ntpd's `monlist` of
// amplification fame) messages. The first byte's version (1-4) and mode decide; lengths
// keep random bytes from matching.
import { type Classifier, matched, NO_MATCH, type Verdict } from './types.js';

const MODES = [
  'reserved',
  'symmetric-active',
  'symmetric-passive',
  'client',
  'server',
  'broadcast',
  'control',
  'private',
];
const PRIVATE_REQUESTS: Record<number, string> = {
  42: 'monlist',
  20: 'monlist-old',
  0: 'peer-list',
  4: 'sys-info',
  12: 'sys-stats',
};

function ntpFields(buf: Buffer): Record<string, unknown> | null {
  if (buf.length < 4) return null;
  const version = (buf[0]! >> 3) & 7;
  const mode = buf[0]! & 7;
  if (version < 1 || version > 4 || mode === 0) return null;
  if (mode === 7) {
    // Private: R bit 0 (a request), implementation 0 (univ), 2 (xntpd old) or 3 (xntpd).
    if (buf[0]! & 0x80 || buf.length < 8 || ![0, 2, 3].includes(buf[2]!)) return null;
    return { version, mode: MODES[mode], request: PRIVATE_REQUESTS[buf[3]!] ?? `code-${buf[3]}` };
  }
  if (mode === 6) {
    // Control: R bit 0 (a request), opcode 1-31, 12-byte header.
    if (buf.length < 12 || buf[1]! & 0x80 || (buf[1]! & 0x1f) === 0) return null;
    return { version, mode: MODES[mode], opcode: buf[1]! & 0x1f };
  }
  if (buf.length < 48) return null;
  return { version, mode: MODES[mode], stratum: buf[1]! };
}

export const ntp: Classifier = {
  protocol: 'ntp',
  classify(buf: Buffer): Verdict {
    const f = ntpFields(buf);
    return f ? matched('ntp', f) : NO_MATCH;
  },
};
