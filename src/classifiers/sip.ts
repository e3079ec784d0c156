// SIP (RFC 3261) requests: `METHOD URI SIP/2.0`, then headers. The request line and the
// User-Agent name the scanner (sipvicious says so itself).
import { type Classifier, matched, NO_MATCH, type Verdict } from './types.js';

const REQUEST =
  /^(INVITE|REGISTER|OPTIONS|ACK|BYE|CANCEL|SUBSCRIBE|NOTIFY|MESSAGE|INFO|PRACK|UPDATE|REFER|PUBLISH) (\S{1,512}) SIP\/2\.0\r?\n/;

/** The first 2 KiB as text, every byte outside printable ASCII but CR and LF as "." (fields stay printable). */
export function textHead(buf: Buffer): string {
  return buf.toString('latin1', 0, Math.min(buf.length, 2048)).replace(/[^\x20-\x7e\r\n]/g, '.');
}

/** A header's value from the first `max` bytes, or undefined. */
export function headerValue(head: string, names: string[]): string | undefined {
  for (const line of head.split(/\r?\n/).slice(1, 64)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    if (names.includes(line.slice(0, colon).trim().toLowerCase()))
      return line
        .slice(colon + 1)
        .trim()
        .slice(0, 256);
  }
  return undefined;
}

export const sip: Classifier = {
  protocol: 'sip',
  classify(buf: Buffer): Verdict {
    const head = textHead(buf);
    const m = REQUEST.exec(head);
    if (!m) return NO_MATCH;
    const fields: Record<string, unknown> = { method: m[1], uri: m[2] };
    const ua = headerValue(head, ['user-agent']);
    if (ua !== undefined) fields.userAgent = ua;
    const from = headerValue(head, ['from', 'f']);
    if (from !== undefined) fields.from = from;
    return matched('sip', fields);
  },
};
