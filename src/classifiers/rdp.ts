// RDP: a TPKT header (RFC 1006: 03 00 length) around an X.224 Connection Request
// (code 0xE0), optionally carrying "Cookie: mstshash=NAME\r\n" and an RDP_NEG_REQ
// ([MS-RDPBCGR] 2.2.1.1). Scanners and mstsc both send this first.
import { asciiText, type Classifier, matched, NEED_MORE, NO_MATCH, type Verdict } from './types.js';

const MIN_LEN = 11; // TPKT 4 + X.224 CR fixed part 7
const MAX_LEN = 4096; // a Connection Request is small; anything bigger is not one
const COOKIE = 'Cookie: mstshash=';
const NEG_REQ = 0x01;

const PROTOCOLS: [number, string][] = [
  [0x01, 'ssl'],
  [0x02, 'hybrid'],
  [0x04, 'rdstls'],
  [0x08, 'hybrid-ex'],
];

export const rdp: Classifier = {
  protocol: 'rdp',
  classify(buf: Buffer, final = false): Verdict {
    if (buf.length >= 1 && buf[0] !== 0x03) return NO_MATCH;
    if (buf.length >= 2 && buf[1] !== 0x00) return NO_MATCH;
    const len = buf.length >= 4 ? buf.readUInt16BE(2) : -1;
    if (len >= 0 && (len < MIN_LEN || len > MAX_LEN)) return NO_MATCH;
    const li = buf.length >= 5 ? buf[4]! : -1;
    if (li >= 0 && (li < 6 || li > len - 5)) return NO_MATCH; // length indicator counts the bytes after it
    if (buf.length >= 6 && (buf[5]! & 0xf0) !== 0xe0) return NO_MATCH; // CR TPDU
    if (buf.length < len || len < 0) {
      if (!final) return NEED_MORE;
      return buf.length >= 6
        ? matched('rdp', { cookie: null, requestedProtocols: null, truncated: true })
        : NO_MATCH;
    }
    return matched('rdp', userData(buf.subarray(MIN_LEN, 5 + li)));
  },
};

// The variable part after the fixed X.224 header: an optional cookie line, then an optional RDP_NEG_REQ.
function userData(data: Buffer): Record<string, unknown> {
  const fields: Record<string, unknown> = { cookie: null, requestedProtocols: null };
  let pos = 0;
  if (data.length >= COOKIE.length && data.toString('latin1', 0, COOKIE.length) === COOKIE) {
    const end = data.indexOf('\r\n', COOKIE.length, 'latin1');
    const stop = end < 0 ? data.length : end;
    fields.cookie = asciiText(data, COOKIE.length, stop, 128);
    pos = end < 0 ? data.length : end + 2;
  } else if (data.length >= 8 && data.toString('latin1', 0, 8) === 'Cookie: ') {
    const end = data.indexOf('\r\n', 8, 'latin1'); // a routing token ("msts=..."): skip it
    pos = end < 0 ? data.length : end + 2;
  }
  if (data.length - pos >= 8 && data[pos] === NEG_REQ && data.readUInt16LE(pos + 2) === 8) {
    const requested = data.readUInt32LE(pos + 4);
    fields.requestedProtocols =
      requested === 0 ? ['rdp'] : PROTOCOLS.filter(([bit]) => requested & bit).map(([, n]) => n);
  }
  return fields;
}
