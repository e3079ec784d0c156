// DNS over UDP (RFC 1035): a 12-byte header and the first question. A query has QR 0, a
// standard opcode, at least one question and a name of labels (no compression in a
// question); anything else is not DNS as a client sends it.
import { asciiText, type Classifier, matched, NO_MATCH, type Verdict } from './types.js';

const TYPES: Record<number, string> = {
  1: 'A',
  2: 'NS',
  5: 'CNAME',
  6: 'SOA',
  12: 'PTR',
  15: 'MX',
  16: 'TXT',
  28: 'AAAA',
  33: 'SRV',
  35: 'NAPTR',
  43: 'DS',
  46: 'RRSIG',
  48: 'DNSKEY',
  65: 'HTTPS',
  252: 'AXFR',
  255: 'ANY',
  257: 'CAA',
};

const CLASS_NAMES: Record<number, string> = { 1: 'IN', 3: 'CH', 4: 'HS', 254: 'NONE', 255: 'ANY' };
const CLASSES = new Set([1, 3, 4, 254, 255]);

/** The question's name, type and class, or null when the bytes are not a DNS query. */
function question(buf: Buffer): Record<string, unknown> | null {
  if (buf.length < 17) return null; // header + root name + type + class
  const flags = buf.readUInt16BE(2);
  const opcode = (flags >> 11) & 0xf;
  if (flags & 0x8000 || opcode > 5 || opcode === 3) return null; // a response, or no such opcode
  if (flags & 0x0040) return null; // the Z bit, zero (AD and CD may be set: dig sets AD)
  const qdcount = buf.readUInt16BE(4);
  if (qdcount === 0 || qdcount > 16) return null;
  const labels: string[] = [];
  let at = 12;
  let nameLength = 0;
  for (;;) {
    if (at >= buf.length) return null;
    const len = buf[at]!;
    if (len === 0) break;
    if (len > 63) return null; // a pointer or reserved label type: not in a query's question
    nameLength += len + 1;
    if (nameLength > 255 || at + 1 + len > buf.length) return null;
    labels.push(asciiText(buf, at + 1, at + 1 + len, 63));
    at += 1 + len;
  }
  if (at + 5 > buf.length) return null;
  const qtype = buf.readUInt16BE(at + 1);
  const qclass = buf.readUInt16BE(at + 3);
  if (qtype === 0 || !CLASSES.has(qclass & 0x7fff)) return null; // the top bit: mDNS "unicast response"

  return {
    id: buf.readUInt16BE(0),
    opcode,
    name: labels.length ? `${labels.join('.')}.` : '.',
    type: TYPES[qtype] ?? `TYPE${qtype}`,
    class: CLASS_NAMES[qclass & 0x7fff] ?? `CLASS${qclass & 0x7fff}`,
    recursion: (flags & 0x0100) !== 0,
    questions: qdcount,
    additional: buf.readUInt16BE(10),
  };
}

export const dns: Classifier = {
  protocol: 'dns',
  classify(buf: Buffer): Verdict {
    const q = question(buf);
    return q ? matched('dns', q) : NO_MATCH;
  },
};
