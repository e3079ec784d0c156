// Egress events: honeygate reads the counters of the dynamic sets its contain chains update
// (`nft -j list table inet honeygate`, its egress_* sets) every contain.recordInterval and
// turns each (honeypot, destination, protocol, port or ICMP type) whose packet count grew
// into one `egress` event with the growth as its count. The volume is bounded by the
// interval and by the sets' size, whatever the honeypot sends.
import type { Config } from '../config/types.js';
import { blankEvent, type FlowEvent } from '../events/event.js';
import { newEventId, type Recorder } from '../events/recorder.js';
import { runTool } from '../firewall/apply.js';
import { type NftRuleset, parseNftJson } from '../firewall/nft-json.js';
import { FAMILY, TABLE } from '../firewall/render.js';
import type { Logger } from '../log.js';
import { EGRESS_SETS } from './render.js';
import { EgressSink, type SinkOptions } from './sink.js';

/** One element of an egress set. */
export interface EgressCount {
  honeypot: string;
  dst: string;
  protocol: string; // tcp, udp, icmp, ipv6-icmp, or a number
  port: number; // 0 for protocols without ports
  icmpType: number | null; // ICMP and ICMPv6 only
  packets: number;
  bytes: number;
}

// nft's names of the ICMP (icmp_type) and ICMPv6 (icmpv6_type) types; it prints others as numbers.
const ICMP_TYPES: Record<string, number> = {
  'echo-reply': 0,
  'destination-unreachable': 3,
  'source-quench': 4,
  redirect: 5,
  'echo-request': 8,
  'router-advertisement': 9,
  'router-solicitation': 10,
  'time-exceeded': 11,
  'parameter-problem': 12,
  'timestamp-request': 13,
  'timestamp-reply': 14,
  'info-request': 15,
  'info-reply': 16,
  'address-mask-request': 17,
  'address-mask-reply': 18,
};
const ICMPV6_TYPES: Record<string, number> = {
  'destination-unreachable': 1,
  'packet-too-big': 2,
  'time-exceeded': 3,
  'parameter-problem': 4,
  'echo-request': 128,
  'echo-reply': 129,
  'mld-listener-query': 130,
  'mld-listener-report': 131,
  'mld-listener-done': 132,
  'mld-listener-reduction': 132,
  'nd-router-solicit': 133,
  'nd-router-advert': 134,
  'nd-neighbor-solicit': 135,
  'nd-neighbor-advert': 136,
  'nd-redirect': 137,
  'router-renumbering': 138,
  'ind-neighbor-solicit': 141,
  'ind-neighbor-advert': 142,
  'mld2-listener-report': 143,
};

/** An ICMP type as nft prints it (a name or a number) -> its number; null when unknown. */
export function icmpTypeNumber(v: unknown, family: 4 | 6): number | null {
  if (typeof v === 'number') return v;
  if (typeof v !== 'string') return null;
  if (/^\d+$/.test(v)) return Number(v);
  return (family === 4 ? ICMP_TYPES : ICMPV6_TYPES)[v] ?? null;
}

/** The name of an ICMP type number, as nft names it; the number when it has none. */
export function icmpTypeName(type: number, family: 4 | 6): string {
  const names = family === 4 ? ICMP_TYPES : ICMPV6_TYPES;
  return Object.keys(names).find((k) => names[k] === type) ?? String(type);
}

/** The elements of the egress sets in a listing (of the table or of sets); others are skipped. */
export function egressCounts(rs: NftRuleset): EgressCount[] {
  const out: EgressCount[] = [];
  for (const set of rs.sets) {
    if (set.table !== undefined && set.table !== TABLE) continue;
    const shape = EGRESS_SETS.find((s) => s.name === set.name);
    if (!shape) continue;
    for (const raw of set.elem) {
      const e = (raw as { elem?: { val?: unknown; counter?: { packets?: number; bytes?: number } } }).elem;
      const concat = (e?.val as { concat?: unknown[] } | undefined)?.concat;
      if (!e || !Array.isArray(concat) || concat.length < 3) continue;
      const [honeypot, dst, third, fourth] = concat;
      if (typeof honeypot !== 'string' || typeof dst !== 'string') continue;
      const icmp = shape.kind === 'icmp';
      out.push({
        honeypot,
        dst,
        protocol: icmp ? (shape.family === 4 ? 'icmp' : 'ipv6-icmp') : String(third),
        port: shape.kind === 'ports' && typeof fourth === 'number' ? fourth : 0,
        icmpType: icmp ? icmpTypeNumber(third, shape.family) : null,
        packets: e.counter?.packets ?? 0,
        bytes: e.counter?.bytes ?? 0,
      });
    }
  }
  return out;
}

/** egressCounts of nft's JSON text; throws when it is not JSON. */
export function parseEgressSets(json: string): EgressCount[] {
  const rs = parseNftJson(json);
  if (!rs) throw new Error('nft printed no JSON');
  return egressCounts(rs);
}

const key = (c: EgressCount) => `${c.honeypot}|${c.dst}|${c.protocol}|${c.port}|${c.icmpType ?? ''}`;

/**
 * What grew since the last read: `before` is the previous read's counters by key. An element
 * whose counter went down was created again (the table was re-applied, or it expired and
 * came back): its whole count is new.
 */
export function egressDeltas(before: Map<string, EgressCount>, now: EgressCount[]): EgressCount[] {
  const out: EgressCount[] = [];
  for (const c of now) {
    const prev = before.get(key(c));
    const grown =
      !prev || c.packets < prev.packets
        ? c
        : { ...c, packets: c.packets - prev.packets, bytes: c.bytes - prev.bytes };
    if (grown.packets > 0) out.push(grown);
  }
  return out;
}

/** The event of one delta over the interval [from, to]. */
export function egressEvent(c: EgressCount, sensor: string, from: number, to: number): FlowEvent {
  const family = c.honeypot.includes(':') ? 6 : 4;
  const what = c.icmpType === null ? c.protocol : `${c.protocol} ${icmpTypeName(c.icmpType, family)}`;
  return blankEvent({
    id: newEventId(),
    type: 'egress',
    openedAt: from,
    closedAt: to,
    sensor,
    src: { ip: c.honeypot, port: 0 },
    dst: { ip: c.dst, port: c.port },
    action: 'drop',
    bytesIn: c.bytes,
    closeReason: 'dropped',
    protocol: c.protocol,
    protocolFields: {
      packets: c.packets,
      bytes: c.bytes,
      ...(c.icmpType === null
        ? {}
        : { icmpType: c.icmpType, icmpTypeName: icmpTypeName(c.icmpType, family) }),
    },
    count: c.packets,
    detail: `contained: ${c.packets} packet${c.packets === 1 ? '' : 's'} from honeypot ${c.honeypot} to ${c.dst}${c.port ? ` port ${c.port}` : ''} (${what}) dropped`,
  });
}

/**
 * Reads the egress sets every contain.recordInterval while `run` runs, and runs contain.sink's
 * listener when it is configured. Only start() throws: when the sink cannot listen.
 */
export class EgressRecorder {
  private timer: NodeJS.Timeout | null = null;
  private reading: Promise<void> = Promise.resolve();
  private last = new Map<string, EgressCount>();
  private lastAt = Date.now();
  private warned = false;
  private sink: EgressSink | null = null;
  private queued = false; // a timed read runs or waits

  constructor(
    private config: Config,
    private readonly log: Logger,
    private readonly recorder: Recorder,
  ) {}

  async start(): Promise<void> {
    if (!this.config.contain) return;
    this.lastAt = Date.now();
    this.timer = setInterval(() => this.tick(), this.config.contain.recordIntervalMs);
    this.timer.unref();
    await this.startSink();
  }

  async reload(config: Config): Promise<void> {
    this.config = config;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const opts = this.sinkOptions();
    if (this.sink && opts) {
      await this.sink.reload(opts);
    } else if (this.sink) {
      await this.sink.stop();
      this.sink = null;
    }
    if (!this.config.contain) return;
    this.lastAt = Date.now();
    this.timer = setInterval(() => this.tick(), this.config.contain.recordIntervalMs);
    this.timer.unref();
    if (!this.sink) await this.startSink();
  }

  /** Stops reading after one last read, so the last interval's attempts are recorded too. */
  async stop(): Promise<void> {
    await this.sink?.stop();
    this.sink = null;
    if (!this.timer) return this.reading; // never started
    clearInterval(this.timer);
    this.timer = null;
    this.reading = this.reading.then(() => this.read());
    await this.reading;
  }

  /** A timed read, unless one still runs (a read slower than the interval must not pile up). */
  private tick(): void {
    if (this.queued) return;
    this.queued = true;
    this.reading = this.reading
      .then(() => this.read())
      .finally(() => {
        this.queued = false;
      });
  }

  private sinkOptions(): SinkOptions | null {
    const sink = this.config.contain?.sink;
    if (!sink) return null;
    return { sink, firstBytes: this.config.limits.firstBytes, sensor: this.config.events.sensor };
  }

  private async startSink(): Promise<void> {
    const opts = this.sinkOptions();
    if (!opts) return;
    const sink = new EgressSink(opts, this.log, this.recorder);
    await sink.start();
    this.sink = sink;
  }

  /** One read: the table's egress sets, then one event per grown element. */
  async read(): Promise<void> {
    if (!this.config.contain) return;
    const now = Date.now();
    let counts: EgressCount[];
    try {
      const r = await runTool('nft', ['-j', 'list', 'table', FAMILY, TABLE]);
      if (r.code !== 0) throw new Error(`nft -j list table ${FAMILY} ${TABLE}: ${r.stderr.trim()}`);
      counts = parseEgressSets(r.stdout);
      this.warned = false;
    } catch (err) {
      // the firewall watch reports missing rules; this says once why no egress is recorded
      if (!this.warned)
        this.log.warn({ code: 'HG_ERR_FIREWALL' }, `egress counters: ${(err as Error).message}`);
      this.warned = true;
      return;
    }
    for (const c of egressDeltas(this.last, counts)) {
      this.recorder.record(egressEvent(c, this.config.events.sensor, this.lastAt, now));
    }
    this.last = new Map(counts.map((c) => [key(c), c]));
    this.lastAt = now;
  }
}
