// SSH: the client's identification string (RFC 4253 4.2), sent before anything else:
// "SSH-protoversion-softwareversion SP comments CR LF", at most 255 bytes. When the bytes
// go on to the client's SSH_MSG_KEXINIT (a client sends it once it has the server's line,
// so a peek rarely sees it; a capture with a banner, or a forwarded flow's first bytes,
// do), its HASSH too (hassh.ts).
import { hasshOf } from './hassh.js';
import { type Classifier, isPrefixOf, matched, NEED_MORE, NO_MATCH, type Verdict } from './types.js';

const MAX_LINE = 255;

export const ssh: Classifier = {
  protocol: 'ssh',
  complete(buf: Buffer, fields: Record<string, unknown>): Record<string, unknown> | null {
    if ('hassh' in fields || buf.length === 0) return null;
    const v = this.classify(buf, true);
    return 'match' in v && v.match && 'hassh' in v.fields ? { ...fields, ...v.fields } : null;
  },
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
      else {
        // The binary packets start after the line's LF.
        const lf = buf[lineEnd] === 0x0a ? lineEnd + 1 : lineEnd + 2;
        const h = hasshOf(buf, lf);
        if (h) {
          out.hassh = h.hassh;
          out.hasshAlgorithms = h.algorithms;
        }
      }
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
