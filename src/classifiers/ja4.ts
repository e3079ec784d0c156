// JA4, the TLS client fingerprint (FoxIO, BSD-3-Clause; github.com/FoxIO-LLC/ja4,
// technical_details/JA4.md). From a ClientHello, "t13d1516h2_8daaf6152771_e5627efa2ab1":
//   a: "t" (TLS over TCP), the version ("13"; supported_versions' highest, else the
//      legacy version), "d" with an SNI extension or "i" without, the number of ciphers
//      and of extensions (two digits, at most 99), the first and last characters of the
//      first ALPN value ("00" without one);
//   b: sha256 of the ciphers as 4-digit hex, sorted, comma-joined: its first 12 hex digits;
//   c: likewise of the extensions, sorted, SNI (0000) and ALPN (0010) left out, then "_"
//      and the signature algorithms in their order (no "_" when there are none).
// GREASE values (RFC 8701) are left out everywhere. An empty list hashes to 12 zeros.
import { createHash } from 'node:crypto';

/** What JA4 reads of a ClientHello (tls.ts parses it). */
export interface HelloParts {
  legacyVersion: number;
  ciphers: number[]; // in the order sent
  extensions: number[]; // types, in the order sent
  supportedVersions: number[] | null; // the supported_versions extension's list, if sent
  alpnFirst: Buffer | null; // the first ALPN protocol name's bytes
  sigAlgs: number[]; // the signature_algorithms extension's list, in order
}

const VERSIONS: Record<number, string> = {
  772: '13',
  771: '12',
  770: '11',
  769: '10',
  768: 's3',
  2: 's2',
  65279: 'd1',
  65277: 'd2',
  65276: 'd3',
};

/** GREASE values (RFC 8701): 0x0a0a, 0x1a1a, ... 0xfafa. */
export function isGrease(v: number): boolean {
  return (v & 0x0f0f) === 0x0a0a && v >> 8 === (v & 0xff);
}

/** The JA4 fingerprint of a parsed ClientHello. Bounded: sorts and hashes lists of at most 32K values. */
export function ja4(h: HelloParts): string {
  return `${ja4a(h)}_${hash12(list(h.ciphers.filter(keep).sort(byValue)))}_${extensionHash(h)}`;
}

/** JA4_r: the same with the lists before hashing ("t13d1516h2_002f,0035,..._0005,...,ff01_0403,...") */
export function ja4Raw(h: HelloParts): string {
  return `${ja4a(h)}_${list(h.ciphers.filter(keep).sort(byValue))}_${extensionText(h)}`;
}

function ja4a(h: HelloParts): string {
  const versions = h.supportedVersions?.filter(keep) ?? [];
  const version = versions.length ? Math.max(...versions) : h.legacyVersion;
  const sni = h.extensions.includes(0x0000) ? 'd' : 'i';
  const count = (n: number) => String(Math.min(n, 99)).padStart(2, '0');
  const ciphers = h.ciphers.filter(keep).length;
  const extensions = h.extensions.filter(keep).length;
  return `t${VERSIONS[version] ?? '00'}${sni}${count(ciphers)}${count(extensions)}${alpnChars(h.alpnFirst)}`;
}

/**
 * The first and last characters of the first ALPN value: "h2" for "h2", "h1" for
 * "http/1.1", "aa" for "a"; "00" for none or an empty one. When either end is not an ASCII
 * letter or digit, the first and last characters of the value's hex instead ("0xAB" -> "ab").
 */
export function alpnChars(alpn: Buffer | null): string {
  if (!alpn || alpn.length === 0) return '00';
  const first = alpn[0]!;
  const last = alpn[alpn.length - 1]!;
  if (isAlnum(first) && isAlnum(last)) return String.fromCharCode(first, last);
  const hex = alpn.toString('hex');
  return hex[0]! + hex[hex.length - 1]!;
}

function extensionText(h: HelloParts): string {
  const exts = h.extensions.filter((e) => keep(e) && e !== 0x0000 && e !== 0x0010).sort(byValue);
  const sigs = h.sigAlgs.filter(keep);
  return sigs.length ? `${list(exts)}_${list(sigs)}` : list(exts);
}

function extensionHash(h: HelloParts): string {
  const exts = h.extensions.filter((e) => keep(e) && e !== 0x0000 && e !== 0x0010);
  return exts.length ? hash12(extensionText(h)) : '000000000000';
}

function isAlnum(b: number): boolean {
  return (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a);
}

const keep = (v: number) => !isGrease(v);
const byValue = (a: number, b: number) => a - b;
const list = (values: number[]) => values.map((v) => v.toString(16).padStart(4, '0')).join(',');

/** The first 12 hex digits of the sha256 of `text`; 12 zeros for an empty list. */
export function hash12(text: string): string {
  if (text === '') return '000000000000';
  return createHash('sha256').update(text).digest('hex').slice(0, 12);
}
