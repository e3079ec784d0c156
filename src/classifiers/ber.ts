// A few BER (ASN.1) reads for the UDP classifiers that speak it (SNMP, CLDAP). Each takes
// hostile bytes: it reads only inside `buf`, returns null on anything malformed, never throws.

export interface Tlv {
  tag: number;
  start: number; // first byte of the value
  end: number; // one past the value (<= buf.length)
}

/** The TLV at `at`: definite lengths only (short form, or long form of 1-4 bytes); null if malformed or truncated. */
export function readTlv(buf: Buffer, at: number, limit = buf.length): Tlv | null {
  if (at + 2 > limit) return null;
  const tag = buf[at]!;
  if ((tag & 0x1f) === 0x1f) return null; // multi-byte tags: no protocol here uses them
  let len = buf[at + 1]!;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > limit) return null;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[start + i]!;
    start += n;
  }
  const end = start + len;
  return end <= limit ? { tag, start, end } : null;
}

/** A small non-negative INTEGER's value (at most 4 bytes), or null. */
export function intValue(buf: Buffer, t: Tlv): number | null {
  const n = t.end - t.start;
  if (t.tag !== 0x02 || n < 1 || n > 4) return null;
  let v = 0;
  for (let i = t.start; i < t.end; i++) v = v * 256 + buf[i]!;
  return v;
}
