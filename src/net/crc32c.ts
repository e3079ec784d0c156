// CRC32C (Castagnoli), as RFC 4960 appendix B and the PROXY v2 CRC32C TLV use it:
// reflected polynomial 0x82F63B78, initial value and final xor 0xFFFFFFFF.
// A 256-entry table is plenty for headers of at most 64 KiB.

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/**
 * Returns the CRC32C of `buf` as an unsigned 32-bit number. `seed` is the result of a
 * previous call, so crc32c(b, crc32c(a)) === crc32c(concat(a, b)).
 */
export function crc32c(buf: Buffer, seed = 0): number {
  let crc = (seed ^ 0xffffffff) >>> 0;
  for (let i = 0; i < buf.length; i++) {
    crc = TABLE[(crc ^ buf[i]!) & 0xff]! ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}
