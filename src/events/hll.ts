// Distinct counts that merge: a HyperLogLog sketch of source addresses per rollup bucket
// (rollup.ts SKETCH_SPANS), so the dashboard's "distinct sources" of a week is the union of
// a few day, hour and minute sketches instead of a pass over every flow.
//
// Stored as a BLOB, one of two forms:
// - sparse (byte 0 = 1): the distinct 32-bit hashes, 4 bytes each, up to SPARSE_MAX. Its
//   count is exact (up to a hash collision: about 1 in 10,000 at 1,000 sources). Most
//   buckets are this: a port's sources in one minute.
// - dense (byte 0 = 2): 2^P one-byte registers (4 KiB, the size of a full sparse form).
//   The estimate's standard error is 1.04 / sqrt(2^P) = 1.6% (P = 12).
// Union: sparse sets join (dense once over SPARSE_MAX); dense registers take the max.

export const P = 12;
const M = 1 << P;
/** The largest sparse form: as many hashes as fit in the dense form's size. */
export const SPARSE_MAX = M / 4;
/** The dense estimate's relative standard error (shown in docs/api.md). */
export const STANDARD_ERROR = 1.04 / Math.sqrt(M);
const SPARSE = 1;
const DENSE = 2;

/** MurmurHash3 (x86, 32 bits) of a string's UTF-16 code units (addresses are ASCII). */
export function hash32(s: string): number {
  let h = 0x9747b28c;
  const n = s.length;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    let k =
      (s.charCodeAt(i) & 0xff) |
      ((s.charCodeAt(i + 1) & 0xff) << 8) |
      ((s.charCodeAt(i + 2) & 0xff) << 16) |
      ((s.charCodeAt(i + 3) & 0xff) << 24);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  let k = 0;
  switch (n - i) {
    // biome-ignore lint/suspicious/noFallthroughSwitchClause: murmur3's tail
    case 3:
      k ^= (s.charCodeAt(i + 2) & 0xff) << 16;
    // biome-ignore lint/suspicious/noFallthroughSwitchClause: murmur3's tail
    case 2:
      k ^= (s.charCodeAt(i + 1) & 0xff) << 8;
    case 1:
      k ^= s.charCodeAt(i) & 0xff;
      k = Math.imul(k, 0xcc9e2d51);
      k = (k << 15) | (k >>> 17);
      k = Math.imul(k, 0x1b873593);
      h ^= k;
  }
  h ^= n;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A sketch being built or merged: a set of hashes until it grows past SPARSE_MAX, then registers. */
export class Sketch {
  private set: Set<number> | null = new Set();
  private regs: Uint8Array | null = null;

  /** The sketch stored in `blob` (an unknown or empty blob is an empty sketch). */
  static from(blob: Uint8Array | null | undefined): Sketch {
    const s = new Sketch();
    if (blob?.length) s.merge(blob);
    return s;
  }

  /** Adds one hash (hash32 of the address); whether the stored form changed. */
  add(h: number): boolean {
    if (this.set) {
      const n = this.set.size;
      this.set.add(h >>> 0);
      if (this.set.size === n) return false;
      if (this.set.size > SPARSE_MAX) this.densify();
      return true;
    }
    return addReg(this.regs!, h);
  }

  /** Merges a stored sketch in. */
  merge(blob: Uint8Array): void {
    if (blob[0] === SPARSE) {
      const view = new DataView(blob.buffer, blob.byteOffset, blob.length);
      for (let o = 1; o + 4 <= blob.length; o += 4) this.add(view.getUint32(o, true));
    } else if (blob[0] === DENSE && blob.length === M + 1) {
      if (this.set) this.densify();
      const r = this.regs!;
      for (let j = 0; j < M; j++) {
        const v = blob[j + 1]!;
        if (v > r[j]!) r[j] = v;
      }
    }
  }

  /** Whether the count is an estimate (the dense form) rather than the number of distinct hashes. */
  get dense(): boolean {
    return this.regs !== null;
  }

  /** The distinct count: exact while sparse, the HyperLogLog estimate once dense. */
  count(): number {
    if (this.set) return this.set.size;
    const r = this.regs!;
    let sum = 0;
    let zeros = 0;
    for (let j = 0; j < M; j++) {
      sum += 2 ** -r[j]!;
      if (r[j] === 0) zeros++;
    }
    const alpha = 0.7213 / (1 + 1.079 / M);
    const e = (alpha * M * M) / sum;
    // Small ranges: linear counting over the empty registers is the better estimate.
    if (e <= 2.5 * M && zeros > 0) return Math.round(M * Math.log(M / zeros));
    return Math.round(e);
  }

  /** The stored form. */
  toBlob(): Buffer {
    if (this.set) {
      const out = Buffer.allocUnsafe(1 + 4 * this.set.size);
      out[0] = SPARSE;
      let o = 1;
      for (const h of this.set) {
        out.writeUInt32LE(h, o);
        o += 4;
      }
      return out;
    }
    const out = Buffer.allocUnsafe(M + 1);
    out[0] = DENSE;
    out.set(this.regs!, 1);
    return out;
  }

  private densify(): void {
    const r = new Uint8Array(M);
    for (const h of this.set!) addReg(r, h);
    this.set = null;
    this.regs = r;
  }
}

function addReg(r: Uint8Array, h: number): boolean {
  const j = h >>> (32 - P);
  // The rank of the first 1 in the remaining 32 - P bits (32 - P + 1 when they are all 0).
  const rest = (h << P) >>> 0;
  const rank = rest === 0 ? 32 - P + 1 : Math.clz32(rest) + 1;
  if (rank <= r[j]!) return false;
  r[j] = rank;
  return true;
}
