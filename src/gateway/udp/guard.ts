// The amplification guard: what may go back to one UDP source address. A UDP source can be
// spoofed, so every reply (a capture's, a honeypot's) is a datagram aimed at whoever the
// attacker named; the guard keeps honeygate from being the amplifier. Per source address,
// across all its flows:
//
//   - a reply budget: each datagram from the source adds ratio x its bytes, and raises the
//     budget to at least `allowance` bytes (512). An honest DNS or SNMP answer repeats the
//     request and adds a little (dnsmasq answers a 54-byte query with 58 bytes): the
//     allowance lets it go, where a bare ratio of 1 would cut it. What does not fit the
//     budget is held: a 3 KB answer to a 60-byte query, a memcached `stats`, an NTP monlist
//     beyond its first datagram. Over a run of datagrams, bytes sent <= ratio x bytes
//     received + allowance x datagrams received, and never more than the caps below;
//   - at most bytesPerSecond and packetsPerSecond (token buckets, one second of burst);
//   - replies never outnumber the source's datagrams by more than `unanswered`: each datagram
//     allows one reply, and `unanswered` more may follow (a victim that never talks gets no
//     stream of them, whatever a honeypot keeps sending). Unused replies are kept for at
//     most packetsPerSecond datagrams: a resolver that sends 50 queries at once gets its 50
//     answers.
//
// allow() says whether one reply may go; the caller counts what it held back in the flow.
import type { AmplificationGuard as GuardConfig } from '../../config/types.js';

interface Source {
  budget: number; // reply bytes it may still be sent
  tokenBytes: number;
  tokenPackets: number;
  refilledAt: number; // ms
  unanswered: number; // replies sent minus datagrams received (down to -packetsPerSecond)
  seenAt: number; // ms: its last datagram or reply
}

/** Why allow() held a reply back (the flow's event says which, the first time). */
export type Held = 'ratio' | 'bytes-per-second' | 'packets-per-second' | 'unanswered';

/** Sources remembered at most; the least recently active goes first (its counts restart from zero, which only makes it stricter). */
const MAX_SOURCES = 100_000;

export class AmplificationGuard {
  private readonly sources = new Map<string, Source>();

  constructor(private config: GuardConfig) {}

  setConfig(config: GuardConfig): void {
    this.config = config;
  }

  get size(): number {
    return this.sources.size;
  }

  private source(ip: string, now: number): Source {
    let s = this.sources.get(ip);
    if (s) {
      // Map order is insertion order: move it to the back, so eviction takes the idlest; once
      // a millisecond is enough for that, and spares a delete and set on most datagrams.
      if (s.seenAt === now) return s;
      this.sources.delete(ip);
    } else {
      s = {
        budget: 0,
        tokenBytes: this.config.bytesPerSecond,
        tokenPackets: this.config.packetsPerSecond,
        refilledAt: now,
        unanswered: 0,
        seenAt: now,
      };
      if (this.sources.size >= MAX_SOURCES) {
        const oldest = this.sources.keys().next().value;
        if (oldest !== undefined) this.sources.delete(oldest);
      }
    }
    this.sources.set(ip, s);
    s.seenAt = now;
    return s;
  }

  /** A datagram of `bytes` arrived from `ip`. */
  received(ip: string, bytes: number, now = Date.now()): void {
    const s = this.source(ip, now);
    s.budget = Math.max(s.budget + bytes * this.config.ratio, this.config.allowance);
    s.unanswered = Math.max(s.unanswered - 1, -this.config.packetsPerSecond);
  }

  /** Whether a reply of `bytes` to `ip` may go (and if so, counts it); the reason when not. */
  allow(ip: string, bytes: number, now = Date.now()): Held | null {
    const c = this.config;
    const s = this.source(ip, now);
    if (!c.enabled) return null;
    const elapsed = Math.max(0, now - s.refilledAt) / 1000;
    s.refilledAt = now;
    s.tokenBytes = Math.min(c.bytesPerSecond, s.tokenBytes + elapsed * c.bytesPerSecond);
    s.tokenPackets = Math.min(c.packetsPerSecond, s.tokenPackets + elapsed * c.packetsPerSecond);
    if (s.unanswered >= c.unanswered) return 'unanswered';
    if (bytes > s.budget) return 'ratio';
    if (s.tokenPackets < 1) return 'packets-per-second';
    if (s.tokenBytes < bytes) return 'bytes-per-second';
    s.tokenPackets -= 1;
    s.tokenBytes -= bytes;
    s.budget -= bytes;
    s.unanswered++;
    return null;
  }

  /** Forgets sources idle for `idleMs` (their flows are gone). */
  sweep(idleMs: number, now = Date.now()): void {
    for (const [ip, s] of this.sources) {
      if (now - s.seenAt < idleMs) break; // insertion order = activity order
      this.sources.delete(ip);
    }
  }
}
