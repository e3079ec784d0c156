// HTTP/1.x: the request line "METHOD SP target SP HTTP/x.y CRLF" (RFC 9112 3), then
// headers. The verdict waits for the end of the headers (up to a cap) so that Host and
// User-Agent make it into the fields. HTTP/2 prior knowledge ("PRI * HTTP/2.0") fits too.
import { type Classifier, matched, NEED_MORE, NO_MATCH, type Verdict } from './types.js';

const MAX_METHOD = 24;
const MAX_TARGET = 8192;
const MAX_HEAD = 16384; // stop waiting for the blank line after this many bytes
const MAX_FIELD = 1024; // longest header value kept

export const http: Classifier = {
  protocol: 'http',
  classify(buf: Buffer, final = false): Verdict {
    const line = requestLine(buf);
    if (line === 'no') return NO_MATCH;
    if (line === 'more') return final ? NO_MATCH : NEED_MORE;
    const v = line.targetEnd + 6; // "x.y" after "HTTP/"
    const fields: Record<string, unknown> = {
      method: buf.toString('latin1', 0, line.methodEnd),
      path: buf.toString('latin1', line.methodEnd + 1, line.targetEnd),
      version: buf[v] === 0x31 && buf[v + 2] === 0x31 ? '1.1' : buf.toString('latin1', v, v + 3),
    };
    const complete = readHeaders(buf, line.next, fields);
    if (!complete && !final && buf.length < MAX_HEAD) return NEED_MORE;
    return matched('http', fields);
  },
};

type LineResult = 'no' | 'more' | { methodEnd: number; targetEnd: number; next: number };

function requestLine(buf: Buffer): LineResult {
  let i = 0;
  while (i < buf.length && i < MAX_METHOD && isMethodChar(buf[i]!, i)) i++;
  if (i === buf.length) return 'more';
  if (i === 0 || buf[i] !== 0x20) return 'no';
  const methodEnd = i++;

  const targetStart = i;
  while (i < buf.length && i - targetStart < MAX_TARGET && buf[i]! > 0x20 && buf[i] !== 0x7f) i++;
  if (i === buf.length) return 'more';
  if (i === targetStart || buf[i] !== 0x20) return 'no';
  const targetEnd = i++;

  // "HTTP/" DIGIT "." DIGIT, then CRLF (a bare LF is tolerated, as servers do)
  const version = buf.subarray(i, i + 8);
  for (let k = 0; k < version.length; k++) {
    const b = version[k]!;
    const ok = k < 5 ? b === 'HTTP/'.charCodeAt(k) : k === 6 ? b === 0x2e : b >= 0x30 && b <= 0x39;
    if (!ok) return 'no';
  }
  if (version.length < 8) return 'more';
  i += 8;
  if (i === buf.length) return 'more';
  if (buf[i] === 0x0a) return { methodEnd, targetEnd, next: i + 1 };
  if (buf[i] !== 0x0d) return 'no';
  if (i + 1 === buf.length) return 'more';
  return buf[i + 1] === 0x0a ? { methodEnd, targetEnd, next: i + 2 } : 'no';
}

function isMethodChar(b: number, index: number): boolean {
  if (b >= 0x41 && b <= 0x5a) return true; // A-Z
  return index > 0 && (b === 0x2d || b === 0x5f || (b >= 0x30 && b <= 0x39));
}

/** Copies Host and User-Agent from the header lines starting at `start` into `fields`; true when the blank line ending them is in buf. */
function readHeaders(buf: Buffer, start: number, fields: Record<string, unknown>): boolean {
  let i = start;
  const stop = Math.min(buf.length, MAX_HEAD);
  while (i < stop) {
    const end = buf.indexOf(0x0a, i);
    if (end < 0 || end >= stop) return false;
    const lineEnd = end > i && buf[end - 1] === 0x0d ? end - 1 : end;
    if (lineEnd === i) return true; // blank line: end of the headers
    const colon = buf.indexOf(0x3a, i);
    if (colon > i && colon < lineEnd) {
      // Compared in place: a string per header name cost more than the rest of the parse.
      const key = isName(buf, i, colon, 'host')
        ? 'host'
        : isName(buf, i, colon, 'user-agent')
          ? 'userAgent'
          : null;
      if (key && !(key in fields)) {
        const value = buf.toString('latin1', colon + 1, Math.min(lineEnd, colon + 1 + MAX_FIELD)).trim();
        fields[key] = value;
      }
    }
    i = end + 1;
  }
  return false;
}

/** Whether buf[start, end) is `lower` in any case (ASCII). */
function isName(buf: Buffer, start: number, end: number, lower: string): boolean {
  if (end - start !== lower.length) return false;
  for (let k = 0; k < lower.length; k++) {
    const b = buf[start + k]!;
    if ((b >= 0x41 && b <= 0x5a ? b | 0x20 : b) !== lower.charCodeAt(k)) return false;
  }
  return true;
}
