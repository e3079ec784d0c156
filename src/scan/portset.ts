// A set of TCP/UDP ports (0-65535) that stays small: a few ports are kept in a list, more in
// a bitmap of 8 KiB, however many of the 65,536 are touched. Written out as ranges
// ("22,80,8000-8099"), the form events carry and `PortSet.parse` reads back.

const BITMAP_BYTES = 65536 / 8;
/** Up to this many ports a sorted-on-demand list costs less than the 8 KiB bitmap. */
const LIST_MAX = 256;

export class PortSet {
  private list: number[] | null = [];
  private bits: Uint8Array | null = null;
  private n = 0;

  /** Adds `port` (an integer 0-65535; anything else is ignored). Returns true when it was new. */
  add(port: number): boolean {
    if (!Number.isInteger(port) || port < 0 || port > 65535) return false;
    if (this.list) {
      if (this.list.includes(port)) return false;
      if (this.list.length < LIST_MAX) {
        this.list.push(port);
        this.n++;
        return true;
      }
      this.bits = new Uint8Array(BITMAP_BYTES);
      for (const p of this.list) this.bits[p >> 3]! |= 1 << (p & 7);
      this.list = null;
    }
    const bits = this.bits!;
    const mask = 1 << (port & 7);
    if (bits[port >> 3]! & mask) return false;
    bits[port >> 3]! |= mask;
    this.n++;
    return true;
  }

  has(port: number): boolean {
    if (this.list) return this.list.includes(port);
    return (
      Number.isInteger(port) &&
      port >= 0 &&
      port <= 65535 &&
      (this.bits![port >> 3]! & (1 << (port & 7))) !== 0
    );
  }

  /** Adds every port of `other`. */
  addAll(other: PortSet): void {
    for (const p of other.ports()) this.add(p);
  }

  get size(): number {
    return this.n;
  }

  /** True while one more new port would turn the list into the 8 KiB bitmap. */
  get atListLimit(): boolean {
    return this.list !== null && this.list.length >= LIST_MAX;
  }

  /** The ports, ascending. */
  ports(): number[] {
    if (this.list) return [...this.list].sort((a, b) => a - b);
    const out: number[] = [];
    const bits = this.bits!;
    for (let i = 0; i < BITMAP_BYTES; i++) {
      const b = bits[i]!;
      if (b === 0) continue;
      for (let j = 0; j < 8; j++) if (b & (1 << j)) out.push(i * 8 + j);
    }
    return out;
  }

  /** The set as ascending ranges: "22,80,8000-8099" ("" when empty). */
  toString(): string {
    const ports = this.ports();
    const parts: string[] = [];
    for (let i = 0; i < ports.length; ) {
      let j = i;
      while (j + 1 < ports.length && ports[j + 1] === ports[j]! + 1) j++;
      parts.push(i === j ? `${ports[i]}` : `${ports[i]}-${ports[j]}`);
      i = j + 1;
    }
    return parts.join(',');
  }

  toJSON(): string {
    return this.toString();
  }

  /**
   * Reads ranges as `toString` writes them (spaces allowed, any order, overlaps merged).
   * Throws on anything else, naming the bad part.
   */
  static parse(text: string): PortSet {
    const set = new PortSet();
    const trimmed = text.trim();
    if (trimmed === '') return set;
    for (const part of trimmed.split(',')) {
      const m = /^\s*(\d{1,5})(?:\s*-\s*(\d{1,5}))?\s*$/.exec(part);
      const from = m ? Number(m[1]) : Number.NaN;
      const to = m?.[2] !== undefined ? Number(m[2]) : from;
      if (!m || from > 65535 || to > 65535 || to < from) {
        throw new Error(
          `invalid port range ${JSON.stringify(part.trim())} (expected PORT or FROM-TO, 0-65535)`,
        );
      }
      for (let p = from; p <= to; p++) set.add(p);
    }
    return set;
  }
}

/**
 * Distinct addresses: the first `max` seen are kept (and counted exactly); past them the
 * count is estimated from a 1 KiB bitmap of hashes (linear counting: within a few percent
 * up to some 20,000 addresses), so a sweep of a /16 costs one source no more than that.
 */
export class AddressSet {
  private readonly kept = new Set<string>();
  private sketch: Uint8Array | null = null;

  constructor(private readonly max: number) {}

  add(ip: string): void {
    if (this.kept.has(ip)) return;
    if (this.kept.size < this.max) {
      this.kept.add(ip);
      return;
    }
    if (!this.sketch) {
      this.sketch = new Uint8Array(SKETCH_BITS / 8);
      for (const k of this.kept) mark(this.sketch, k);
    }
    mark(this.sketch, ip);
  }

  /** Distinct addresses seen: exact up to max, estimated beyond. */
  get count(): number {
    if (!this.sketch) return this.kept.size;
    let zero = 0;
    for (const b of this.sketch) for (let j = 0; j < 8; j++) if (!(b & (1 << j))) zero++;
    const estimate =
      zero === 0 ? SKETCH_BITS * Math.log(SKETCH_BITS) : -SKETCH_BITS * Math.log(zero / SKETCH_BITS);
    return Math.max(this.kept.size, Math.round(estimate));
  }

  /** True when there were more than the list holds. */
  get truncated(): boolean {
    return this.sketch !== null;
  }

  /** The addresses kept, in the order first seen. */
  list(): string[] {
    return [...this.kept];
  }
}

const SKETCH_BITS = 8192;

/** Sets the bit of `ip`'s FNV-1a hash. */
function mark(sketch: Uint8Array, ip: string): void {
  let h = 0x811c9dc5;
  for (let i = 0; i < ip.length; i++) h = Math.imul(h ^ ip.charCodeAt(i), 0x01000193);
  const bit = (h >>> 0) % SKETCH_BITS;
  sketch[bit >> 3]! |= 1 << (bit & 7);
}
