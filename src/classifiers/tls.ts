// TLS: a handshake record carrying a ClientHello (RFC 8446 4.1.2, RFC 5246 7.4.1.2).
// Fields: the highest version offered (supported_versions wins over legacy_version), the
// server name (SNI), the ALPN list, and the client's JA4 fingerprint (ja4.ts). The
// ClientHello may span several records.
import { type HelloParts, isGrease, ja4 } from './ja4.js';
import { asciiText, type Classifier, matched, NEED_MORE, NO_MATCH, type Verdict } from './types.js';

const MAX_RECORD = 16384 + 2048; // TLSCiphertext limit; plaintext records are smaller still
const MAX_HELLO = 65536; // longer ClientHellos are not worth waiting for
const MAX_ALPN = 16;

const VERSIONS: Record<number, string> = {
  768: 'SSL3.0',
  769: 'TLS1.0',
  770: 'TLS1.1',
  771: 'TLS1.2',
  772: 'TLS1.3',
};

export const tls: Classifier = {
  protocol: 'tls',
  classify(buf: Buffer, final = false): Verdict {
    // Record header: type 22 (handshake), version 3.x, length
    if (buf.length >= 1 && buf[0] !== 0x16) return NO_MATCH;
    if (buf.length >= 2 && buf[1] !== 0x03) return NO_MATCH;
    if (buf.length >= 3 && buf[2]! > 0x04) return NO_MATCH;
    if (buf.length >= 5) {
      const len = buf.readUInt16BE(3);
      if (len === 0 || len > MAX_RECORD) return NO_MATCH;
    }
    if (buf.length >= 6 && buf[5] !== 0x01) return NO_MATCH; // handshake type ClientHello
    const hello = reassemble(buf);
    if (hello === 'no') return NO_MATCH;
    if (hello === 'more') {
      if (!final) return NEED_MORE;
      if (buf.length < 6) return NO_MATCH;
      const partial: Record<string, unknown> = {
        version: versionName(buf.readUInt16BE(1)),
        sni: null,
        alpn: null,
      };
      if (buf.length >= 11) partial.version = versionName(buf.readUInt16BE(9));
      partial.truncated = true;
      return matched('tls', partial);
    }
    const fields = parseClientHello(hello);
    return fields ? matched('tls', fields) : NO_MATCH;
  },
};

/** Joins the handshake fragments of consecutive records; returns the ClientHello body (after its 4-byte header). */
function reassemble(buf: Buffer): Buffer | 'more' | 'no' {
  const parts: Buffer[] = [];
  let have = 0;
  let need = -1; // handshake body length, once its header is in
  let pos = 0;
  while (true) {
    if (pos + 5 > buf.length) return 'more';
    if (buf[pos] !== 0x16 || buf[pos + 1] !== 0x03) return 'no';
    const len = buf.readUInt16BE(pos + 3);
    if (len === 0 || len > MAX_RECORD) return 'no';
    const end = Math.min(pos + 5 + len, buf.length);
    parts.push(buf.subarray(pos + 5, end));
    have += end - pos - 5;
    if (need < 0 && have >= 4) {
      const head = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      if (head[0] !== 0x01) return 'no';
      need = (head[1]! << 16) | (head[2]! << 8) | head[3]!;
      if (need < 38 || need > MAX_HELLO) return 'no'; // version + random + 2 length bytes at least
    }
    if (need >= 0 && have >= need + 4) return Buffer.concat(parts).subarray(4, need + 4);
    if (end < pos + 5 + len) return 'more'; // this record is still arriving
    pos = end;
  }
}

/** Bounds-checked big-endian reader: every read returns null past the end instead of throwing. */
class Reader {
  constructor(
    private readonly buf: Buffer,
    public pos = 0,
  ) {}
  get left(): number {
    return this.buf.length - this.pos;
  }
  u8(): number | null {
    return this.left >= 1 ? this.buf[this.pos++]! : null;
  }
  u16(): number | null {
    if (this.left < 2) return null;
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  bytes(n: number | null): Buffer | null {
    if (n === null || this.left < n) return null;
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
}

function parseClientHello(body: Buffer): Record<string, unknown> | null {
  const r = new Reader(body);
  const legacyVersion = r.u16();
  if (legacyVersion === null || legacyVersion >> 8 !== 0x03) return null;
  if (!r.bytes(32)) return null; // random
  const sessionLen = r.u8();
  if (sessionLen === null || sessionLen > 32 || !r.bytes(sessionLen)) return null;
  const suitesLen = r.u16();
  const suites = suitesLen === null || suitesLen === 0 || suitesLen % 2 !== 0 ? null : r.bytes(suitesLen);
  if (!suites) return null;
  const compressionLen = r.u8();
  if (!compressionLen || !r.bytes(compressionLen)) return null;

  const fields: Record<string, unknown> = { version: versionName(legacyVersion), sni: null, alpn: null };
  const parts: HelloParts = {
    legacyVersion,
    ciphers: u16List(suites),
    extensions: [],
    supportedVersions: null,
    alpnFirst: null,
    sigAlgs: [],
  };
  // Extensions are optional (SSL3-era hellos have none); a broken one ends the walk, keeping
  // what was read, but then there is no JA4: a fingerprint of part of a hello would mislead.
  if (r.left === 0) {
    fields.ja4 = ja4(parts);
    return fields;
  }
  const extensions = r.bytes(r.u16());
  if (!extensions) return fields;
  const ext = new Reader(extensions);
  let whole = true;
  while (ext.left > 0) {
    const type = ext.u16();
    const data = type === null ? null : ext.bytes(ext.u16());
    if (type === null || !data) {
      whole = false;
      break;
    }
    parts.extensions.push(type);
    if (type === 0x0000) fields.sni = serverName(data);
    else if (type === 0x0010) {
      fields.alpn = alpnList(data);
      parts.alpnFirst = firstAlpn(data);
    } else if (type === 0x000d) {
      const list = new Reader(data);
      parts.sigAlgs = u16List(list.bytes(list.u16()) ?? Buffer.alloc(0));
    } else if (type === 0x002b) {
      const list = supportedVersions(data);
      parts.supportedVersions = list;
      const best = highestVersion(list);
      if (best !== null) fields.version = versionName(best);
    }
  }
  if (whole) fields.ja4 = ja4(parts);
  return fields;
}

/** Big-endian 16-bit values of `buf` (an odd last byte is left out). */
function u16List(buf: Buffer): number[] {
  const out: number[] = [];
  for (let i = 0; i + 1 < buf.length; i += 2) out.push(buf.readUInt16BE(i));
  return out;
}

/** The raw bytes of the first protocol name in an ALPN extension, or null (none, or broken). */
function firstAlpn(data: Buffer): Buffer | null {
  const r = new Reader(data);
  const list = r.bytes(r.u16());
  if (!list) return null;
  const protos = new Reader(list);
  return protos.bytes(protos.u8());
}

function serverName(data: Buffer): string | null {
  const r = new Reader(data);
  const list = r.bytes(r.u16());
  if (!list) return null;
  const names = new Reader(list);
  while (names.left >= 3) {
    const type = names.u8();
    const name = names.bytes(names.u16());
    if (!name) return null;
    if (type === 0) return asciiText(name, 0, name.length, 255);
  }
  return null;
}

function alpnList(data: Buffer): string[] | null {
  const r = new Reader(data);
  const list = r.bytes(r.u16());
  if (!list) return null;
  const protos = new Reader(list);
  const out: string[] = [];
  while (protos.left >= 1 && out.length < MAX_ALPN) {
    const proto = protos.bytes(protos.u8());
    if (!proto) break;
    out.push(asciiText(proto, 0, proto.length, 255));
  }
  return out;
}

function supportedVersions(data: Buffer): number[] {
  const r = new Reader(data);
  const list = r.bytes(r.u8());
  return list ? u16List(list) : [];
}

function highestVersion(list: number[]): number | null {
  let best: number | null = null;
  for (const v of list) {
    if (isGrease(v)) continue;
    if (best === null || v > best) best = v;
  }
  return best;
}

function versionName(v: number): string {
  return VERSIONS[v] ?? `0x${v.toString(16).padStart(4, '0')}`;
}
