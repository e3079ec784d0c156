// SSH: the client's identification string (RFC 4253 4.2), sent before anything else:
// "SSH-protoversion-softwareversion SP comments CR LF", at most 255 bytes.
import { type Classifier, isPrefixOf, matched, NEED_MORE, NO_MATCH, type Verdict } from './types.js';

const MAX_LINE = 255;

export const ssh: Classifier = {
  protocol: 'ssh',
  classify(buf: Buffer, final = false): Verdict {
    if (buf.length < 4) return isPrefixOf(buf, 'SSH-') && !final ? NEED_MORE : NO_MATCH;
    if (!isPrefixOf(buf.subarray(0, 4), 'SSH-')) return NO_MATCH;

    // protoversion: digits and dots ("2.0", "1.99"), then '-'
    let i = 4;
    while (i < buf.length && i < 4 + 8 && isVersionChar(buf[i]!)) i++;
    if (i === buf.length) return final ? NO_MATCH : NEED_MORE;
    if (i === 4 || buf[i] !== 0x2d) return NO_MATCH;
    const protoVersion = buf.toString('latin1', 4, i);
    const softwareStart = ++i;

    // softwareversion: printable, no spaces (RFC says no '-' either; real clients disagree)
    while (i < buf.length && i < MAX_LINE && buf[i]! > 0x20 && buf[i]! < 0x7f) i++;
    const softwareEnd = i;
    let commentsStart = -1;
    if (i < buf.length && i < MAX_LINE && buf[i] === 0x20 && softwareEnd > softwareStart) {
      commentsStart = ++i;
      while (i < buf.length && i < MAX_LINE && ((buf[i]! >= 0x20 && buf[i]! < 0x7f) || buf[i] === 0x09)) i++;
    }
    const lineEnd = i;
    const fields = (truncated: boolean): Record<string, unknown> => {
      const out: Record<string, unknown> = {
        clientVersion: buf.toString('latin1', 0, lineEnd),
        protoVersion,
        software: buf.toString('latin1', softwareStart, softwareEnd),
      };
      if (commentsStart >= 0) out.comments = buf.toString('latin1', commentsStart, lineEnd);
      if (truncated) out.truncated = true;
      return out;
    };

    if (softwareEnd === softwareStart && i < buf.length) return NO_MATCH; // "SSH-2.0-" then junk
    if (i === buf.length) {
      if (!final) return NEED_MORE;
      return softwareEnd > softwareStart ? matched('ssh', fields(true)) : NO_MATCH;
    }
    if (i >= MAX_LINE) return matched('ssh', fields(true)); // over-long: still someone speaking SSH
    const b = buf[i]!;
    if (b === 0x0a) return matched('ssh', fields(false));
    if (b !== 0x0d) return NO_MATCH;
    if (i + 1 === buf.length) return final ? matched('ssh', fields(true)) : NEED_MORE;
    return buf[i + 1] === 0x0a ? matched('ssh', fields(false)) : NO_MATCH;
  },
};

function isVersionChar(b: number): boolean {
  return (b >= 0x30 && b <= 0x39) || b === 0x2e;
}
