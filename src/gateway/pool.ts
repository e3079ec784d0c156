// One pool per backend: which of its servers are up, how many flows each carries, and
// which one the next flow goes to. Health checks (health.ts) flip `up`; the dialer picks,
// acquires and releases.
import type { BackendConfig, Endpoint } from '../config/types.js';
import { formatEndpoint } from '../net/address.js';

export interface Server {
  key: string; // "ip:port", "[v6]:port"
  endpoint: Endpoint;
  up: boolean;
  active: number; // open flows
}

export class Pool {
  readonly backend: BackendConfig;
  readonly servers: Server[];
  private readonly byKey = new Map<string, Server>();
  private cursor = 0; // next index to try for roundrobin and leastconn ties

  constructor(backend: BackendConfig) {
    this.backend = backend;
    this.servers = [];
    for (const endpoint of backend.servers) {
      const key = formatEndpoint(endpoint);
      if (this.byKey.has(key)) continue; // a server listed twice is one server
      const server: Server = { key, endpoint, up: true, active: 0 };
      this.servers.push(server);
      this.byKey.set(key, server);
    }
  }

  get(key: string): Server | undefined {
    return this.byKey.get(key);
  }

  /** Picks an up server for this attacker, skipping `exclude` (servers already tried for this flow); null when none is left. */
  pick(srcIp: string, exclude?: ReadonlySet<string>): Server | null {
    switch (this.backend.balance) {
      case 'source-hash':
        return this.pickHashed(srcIp, exclude);
      case 'leastconn':
        return this.pickLeast(exclude);
      default:
        return this.pickNext(exclude);
    }
  }

  acquire(s: Server): void {
    s.active++;
  }

  release(s: Server): void {
    if (s.active > 0) s.active--;
  }

  allDown(): boolean {
    return !this.servers.some((s) => s.up);
  }

  /** Marks a server up or down. Returns false when no server has this key. */
  setUp(key: string, up: boolean): boolean {
    const s = this.byKey.get(key);
    if (!s) return false;
    s.up = up;
    return true;
  }

  /**
   * Takes over the servers of an older pool of the same backend on config reload (matched
   * by key): the same objects, so flows still open under the old config release the
   * counts leastconn reads here, and health state carries over.
   */
  adopt(old: Pool): void {
    for (let i = 0; i < this.servers.length; i++) {
      const before = old.byKey.get(this.servers[i]!.key);
      if (!before) continue; // a new server starts up and idle
      this.servers[i] = before;
      this.byKey.set(before.key, before);
    }
    this.cursor = old.cursor % Math.max(1, this.servers.length);
  }

  private usable(s: Server, exclude?: ReadonlySet<string>): boolean {
    return s.up && !exclude?.has(s.key);
  }

  // Roundrobin: the first usable server at or after the cursor.
  private pickNext(exclude?: ReadonlySet<string>): Server | null {
    const n = this.servers.length;
    for (let i = 0; i < n; i++) {
      const index = (this.cursor + i) % n;
      const s = this.servers[index]!;
      if (this.usable(s, exclude)) {
        this.cursor = (index + 1) % n;
        return s;
      }
    }
    return null;
  }

  // Leastconn: the fewest active flows; among equals, the first at or after the cursor,
  // so idle servers take turns instead of the first one taking every short flow.
  private pickLeast(exclude?: ReadonlySet<string>): Server | null {
    const n = this.servers.length;
    let best: Server | null = null;
    let bestIndex = 0;
    for (let i = 0; i < n; i++) {
      const index = (this.cursor + i) % n;
      const s = this.servers[index]!;
      if (!this.usable(s, exclude)) continue;
      if (!best || s.active < best.active) {
        best = s;
        bestIndex = index;
      }
    }
    if (best) this.cursor = (bestIndex + 1) % n;
    return best;
  }

  // Source-hash: rendezvous (highest random weight) hashing. Each attacker ranks every
  // server by hash(src + server); only attackers whose top server went down move, and
  // they come back when it returns. Excluded servers just drop out of the ranking.
  private pickHashed(srcIp: string, exclude?: ReadonlySet<string>): Server | null {
    let best: Server | null = null;
    let bestWeight = -1;
    for (const s of this.servers) {
      if (!this.usable(s, exclude)) continue;
      const weight = hashWeight(`${srcIp}|${s.key}`);
      if (weight > bestWeight || (weight === bestWeight && best && s.key < best.key)) {
        best = s;
        bestWeight = weight;
      }
    }
    return best;
  }
}

/** FNV-1a 32 over the UTF-16 code units, then murmur3's finalizer so near-equal inputs spread. Unsigned 32-bit. */
export function hashWeight(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
