// Redis: a RESP array of bulk strings ("*N\r\n$len\r\nCOMMAND\r\n...", what redis-cli and
// client libraries send) or an inline command typed by hand: PING, AUTH or INFO.
import { asciiText, type Classifier, matched, NEED_MORE, NO_MATCH, type Verdict } from './types.js';

const INLINE = ['PING', 'AUTH', 'INFO'];
const MAX_INLINE = 1024;
const MAX_ARGS = 8; // arguments kept after the command
const MAX_ARG = 128; // characters kept per argument
const MAX_BULK = 512 * 1024 * 1024; // Redis' own proto-max-bulk-len

export const redis: Classifier = {
  protocol: 'redis',
  classify(buf: Buffer, final = false): Verdict {
    if (buf.length === 0) return final ? NO_MATCH : NEED_MORE;
    return buf[0] === 0x2a ? resp(buf, final) : inline(buf, final);
  },
};

/** Reads "<prefix><digits>\r\n" at pos: the number and where the next element starts. */
function header(
  buf: Buffer,
  pos: number,
  prefix: number,
  max: number,
): { n: number; next: number } | 'more' | 'no' {
  if (pos >= buf.length) return 'more';
  if (buf[pos] !== prefix) return 'no';
  let i = pos + 1;
  let n = 0;
  while (i < buf.length && buf[i]! >= 0x30 && buf[i]! <= 0x39) {
    n = n * 10 + buf[i]! - 0x30;
    if (n > max) return 'no';
    i++;
  }
  if (i === buf.length) return 'more';
  if (i === pos + 1 || buf[i] !== 0x0d) return 'no';
  if (i + 1 === buf.length) return 'more';
  return buf[i + 1] === 0x0a ? { n, next: i + 2 } : 'no';
}

function resp(buf: Buffer, final: boolean): Verdict {
  const more = final ? NO_MATCH : NEED_MORE;
  const array = header(buf, 0, 0x2a, 1024 * 1024);
  if (array === 'no' || (typeof array === 'object' && array.n === 0)) return NO_MATCH;
  if (array === 'more') return more;
  const parts: string[] = [];
  let pos = array.next;
  while (parts.length < Math.min(array.n, MAX_ARGS + 1)) {
    const bulk = header(buf, pos, 0x24, MAX_BULK);
    if (bulk === 'no') return parts.length ? done(parts, array.n) : NO_MATCH;
    if (bulk === 'more' || bulk.next + bulk.n + 2 > buf.length) {
      // The command name must be in; arguments are taken as far as they arrived.
      return parts.length ? done(parts, array.n) : more;
    }
    const end = bulk.next + bulk.n;
    if (buf[end] !== 0x0d || buf[end + 1] !== 0x0a) return parts.length ? done(parts, array.n) : NO_MATCH;
    parts.push(asciiText(buf, bulk.next, end, MAX_ARG));
    pos = end + 2;
  }
  return done(parts, array.n);
}

function done(parts: string[], argc: number): Verdict {
  return matched('redis', { command: parts[0]!.toUpperCase(), args: parts.slice(1), argc, inline: false });
}

function inline(buf: Buffer, final: boolean): Verdict {
  const word = buf.toString('latin1', 0, Math.min(buf.length, 4)).toUpperCase();
  const known = INLINE.find((w) => w.startsWith(word));
  if (!known) return NO_MATCH;
  if (buf.length <= 4) return final ? NO_MATCH : NEED_MORE;
  // After the word: end of line, or a space and arguments up to the end of line.
  const sep = buf[4];
  if (sep !== 0x0d && sep !== 0x0a && sep !== 0x20) return NO_MATCH;
  const limit = Math.min(buf.length, MAX_INLINE);
  let i = 4;
  while (i < limit && buf[i] !== 0x0a && (buf[i] === 0x0d || (buf[i]! >= 0x20 && buf[i]! < 0x7f))) i++;
  if (i === buf.length) return final ? NO_MATCH : NEED_MORE;
  if (i === limit || buf[i] !== 0x0a) return NO_MATCH;
  const lineEnd = i > 4 && buf[i - 1] === 0x0d ? i - 1 : i;
  const args = buf.toString('latin1', 4, lineEnd).trim().split(/ +/).filter(Boolean).slice(0, MAX_ARGS);
  return matched('redis', {
    command: known,
    args: args.map((a) => a.slice(0, MAX_ARG)),
    argc: 1 + args.length,
    inline: true,
  });
}
