// HASSH, the SSH client fingerprint (Salesforce, BSD-3-Clause; github.com/salesforce/hassh):
// the MD5 of "kex;encryption;mac;compression", the client-to-server name-lists of the
// client's SSH_MSG_KEXINIT (RFC 4253 7.1) as sent. hasshAlgorithms is that string.
import { createHash } from 'node:crypto';

const MSG_KEXINIT = 20;
const MAX_PACKET = 35_000; // RFC 4253 6.1: implementations must accept 35,000-byte packets; KEXINITs are ~1.5 KB

/**
 * The HASSH of the KEXINIT that starts at `buf[start]` (an unencrypted binary packet:
 * uint32 length, padding length, payload), or null when the bytes there are not a whole,
 * well-formed KEXINIT. Reads nothing past `buf`; never throws.
 */
export function hasshOf(buf: Buffer, start: number): { hassh: string; algorithms: string } | null {
  if (start < 0 || start + 6 > buf.length) return null;
  const length = buf.readUInt32BE(start);
  const padding = buf[start + 4]!;
  if (length < 2 || length > MAX_PACKET || start + 4 + length > buf.length) return null;
  if (padding + 1 > length || buf[start + 5] !== MSG_KEXINIT) return null;
  const payloadEnd = start + 4 + length - padding;
  // message id, 16-byte cookie, then ten name-lists
  let pos = start + 6 + 16;
  const lists: string[] = [];
  for (let i = 0; i < 10; i++) {
    if (pos + 4 > payloadEnd) return null;
    const n = buf.readUInt32BE(pos);
    if (n > payloadEnd - pos - 4) return null;
    lists.push(buf.toString('latin1', pos + 4, pos + 4 + n));
    pos += 4 + n;
  }
  // kex, host key, enc c->s, enc s->c, mac c->s, mac s->c, comp c->s, comp s->c, lang, lang
  const algorithms = [lists[0], lists[2], lists[4], lists[6]].join(';');
  return { hassh: hasshOfAlgorithms(algorithms), algorithms };
}

/** The MD5 of a hasshAlgorithms string, lowercase hex. */
export function hasshOfAlgorithms(algorithms: string): string {
  return createHash('md5').update(algorithms, 'latin1').digest('hex');
}
