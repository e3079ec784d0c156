// Admission: the cheap checks that run before a flow costs anything. Over a limit, the
// connection is reset at once and counted; the counts become one 'rejected' event per
// source and reason per interval, so a flood cannot fill the disk.
import type { Limits } from '../config/types.js';
import { type Address, blankEvent, type CloseReason, type FlowEvent } from '../events/event.js';
import { FD_RESERVE } from '../net/fd-limit.js';
import { AddressSet, PortSet } from '../scan/portset.js';

export type Refusal = Extract<
  CloseReason,
  'limit-global' | 'limit-per-source' | 'limit-rate' | 'fd-exhausted'
>;

/** Every reason admission refuses a flow for: the label set of the refusal metrics. */
export const REFUSALS: readonly Refusal[] = [
  'limit-global',
  'limit-per-source',
  'limit-rate',
  'fd-exhausted',
];

/** Flows (two descriptors each) kept free below the count at which descriptors ran out. */
const FD_HEADROOM = FD_RESERVE / 2;
/** How often the cap learned from running out of descriptors is raised again by FD_HEADROOM. */
const FD_RECOVERY_MS = 1000;

/** Distinct (source, reason) pairs kept per interval; beyond it, one "*" entry takes the rest. */
const MAX_TALLIES = 10_000;
/** Destination addresses listed in one tally (the count goes on). */
const TALLY_ADDRESSES = 256;
/**
 * Tallies per interval whose port set may grow past its list into the 8 KiB bitmap (16 MiB
 * in all); the others keep their first 256 ports and say that the set is cut short.
 */
const MAX_BITMAPS = 2048;

interface Tally {
  ip: string;
  reason: Refusal;
  count: number;
  first: number;
  last: number;
  listener: string;
  dst: Address;
  ports: PortSet;
  addresses: AddressSet;
  portsTruncated: boolean;
}

export class Admission {
  private total = 0;
  private readonly perSource = new Map<string, number>();
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private tallies = new Map<string, Tally>();
  private bitmaps = 0; // tallies of this interval whose port set is a bitmap
  refusedTotal = 0;
  /** refusedTotal by reason. */
  readonly refusedBy: Record<Refusal, number> = Object.fromEntries(REFUSALS.map((r) => [r, 0])) as Record<
    Refusal,
    number
  >;

  private fdCap = Number.POSITIVE_INFINITY;
  /** Learned when descriptors actually ran out (EMFILE, ENFILE): below what was open then. */
  private shortCap = Number.POSITIVE_INFINITY;
  private shortAt = 0;

  constructor(private limits: Limits) {}

  setLimits(limits: Limits): void {
    this.limits = limits;
  }

  /**
   * The flows the open-file limit leaves room for. Over it, new flows are refused at accept,
   * so open ones never starve for descriptors and the admin API keeps its reserve.
   */
  setFdCap(flows: number): void {
    this.fdCap = flows;
  }

  /** The global limit in force: limits.maxConnections, or fewer where open files are short. */
  get maxFlows(): number {
    return Math.min(this.limits.maxConnections, this.fdCap);
  }

  get active(): number {
    return this.total;
  }

  /**
   * Descriptors ran out with `active` flows open: new flows are refused (fd-exhausted) until
   * FD_HEADROOM of those have closed, so the open ones and the admin API get the descriptors
   * that free up. The cap rises again by FD_HEADROOM each FD_RECOVERY_MS without another shortage.
   */
  fdExhausted(): void {
    this.shortCap = Math.max(0, Math.min(this.shortCap, this.total - FD_HEADROOM));
    this.shortAt = Date.now();
  }

  /** The global limit, checked at accept before anything else. */
  checkGlobal(): Refusal | null {
    if (this.total >= this.shortCap && !this.recovered()) return 'fd-exhausted';
    return this.total >= this.maxFlows ? 'limit-global' : null;
  }

  /** Raises the learned cap once FD_RECOVERY_MS passed since the last shortage; true when it is gone. */
  private recovered(): boolean {
    const now = Date.now();
    if (now - this.shortAt < FD_RECOVERY_MS) return false;
    this.shortAt = now;
    this.shortCap += FD_HEADROOM;
    if (this.shortCap < this.maxFlows) return this.total < this.shortCap;
    this.shortCap = Number.POSITIVE_INFINITY;
    return true;
  }

  /** Per-source concurrency and rate for `ip`; takes a rate token when admitted. */
  checkSource(ip: string): Refusal | null {
    if ((this.perSource.get(ip) ?? 0) >= this.limits.perSource) return 'limit-per-source';
    const { count, perMs } = this.limits.perSourceRate;
    const now = Date.now();
    const b = this.buckets.get(ip) ?? { tokens: count, at: now };
    b.tokens = Math.min(count, b.tokens + ((now - b.at) * count) / perMs);
    b.at = now;
    this.buckets.set(ip, b);
    if (b.tokens < 1) return 'limit-rate';
    b.tokens -= 1;
    return null;
  }

  /** Counts a flow as open; returns the release to call when it closes (idempotent). */
  hold(): () => void {
    this.total++;
    return once(() => {
      this.total--;
    });
  }

  /** Counts a flow as open for its source; returns its release. */
  holdSource(ip: string): () => void {
    this.perSource.set(ip, (this.perSource.get(ip) ?? 0) + 1);
    return once(() => {
      const n = (this.perSource.get(ip) ?? 1) - 1;
      if (n <= 0) this.perSource.delete(ip);
      else this.perSource.set(ip, n);
    });
  }

  /** Tallies `n` refused flows (the kernel's counters hand over several at once: src/kernel/refusals.ts). */
  refused(ip: string, reason: Refusal, listener: string, dst: Address, n = 1): void {
    this.refusedTotal += n;
    this.refusedBy[reason] += n;
    let key = `${ip}|${reason}`;
    if (!this.tallies.has(key) && this.tallies.size >= MAX_TALLIES) key = `*|${reason}`;
    const now = Date.now();
    let t = this.tallies.get(key);
    if (t) {
      t.count += n;
      t.last = now;
    } else {
      t = {
        ip: key.startsWith('*') ? '*' : ip,
        reason,
        count: n,
        first: now,
        last: now,
        listener,
        dst,
        ports: new PortSet(),
        addresses: new AddressSet(TALLY_ADDRESSES),
        portsTruncated: false,
      };
      this.tallies.set(key, t);
    }
    if (t.ports.atListLimit && !t.ports.has(dst.port)) {
      if (this.bitmaps >= MAX_BITMAPS) t.portsTruncated = true;
      else if (t.ports.add(dst.port)) this.bitmaps++;
    } else t.ports.add(dst.port);
    t.addresses.add(dst.ip);
  }

  /** Turns the interval's tallies into events and forgets rate buckets that refilled. */
  drain(sensor: string, newId: () => string): FlowEvent[] {
    const now = Date.now();
    const events: FlowEvent[] = [];
    for (const t of this.tallies.values()) {
      events.push(
        blankEvent({
          id: newId(),
          type: 'rejected',
          openedAt: t.first,
          closedAt: now,
          sensor,
          listener: t.listener,
          src: { ip: t.ip, port: 0 },
          dst: t.dst,
          action: 'close',
          closeReason: t.reason,
          count: t.count,
          targets: {
            ports: t.ports.toString(),
            portCount: t.ports.size,
            addresses: t.addresses.list(),
            addressCount: t.addresses.count,
            lastAt: t.last,
            ...(t.portsTruncated ? { portsTruncated: true } : {}),
          },
          detail: `${t.count} flows refused (${t.reason}) on ${portsText(t)}`,
        }),
      );
    }
    this.tallies = new Map();
    this.bitmaps = 0;
    const { count, perMs } = this.limits.perSourceRate;
    for (const [ip, b] of this.buckets) {
      if (b.tokens + ((now - b.at) * count) / perMs >= count) this.buckets.delete(ip);
    }
    return events;
  }
}

/** "port 22", "3 ports", "at least 256 ports" for a tally's detail. */
function portsText(t: Tally): string {
  const n = t.ports.size;
  if (t.portsTruncated) return `at least ${n} ports`;
  return n === 1 ? `port ${t.ports.toString()}` : `${n} ports`;
}

function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    fn();
  };
}
