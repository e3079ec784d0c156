// Egress events: honeygate reads the counters of the dynamic sets its contain chains update
// (`nft -j list set inet honeygate egress_v4`, ...) every contain.recordInterval and turns
// each (honeypot, destination, protocol, port) whose packet count grew into one `egress`
// event with the growth as its count. The volume is bounded by the interval and by the
// sets' size, whatever the honeypot sends.
import type { Config } from '../config/types.js';
import type { FlowEvent } from '../events/event.js';
import { newEventId, type Recorder } from '../events/recorder.js';
import { runTool } from '../firewall/apply.js';
import { FAMILY, TABLE } from '../firewall/render.js';
import type { Logger } from '../log.js';
import { EGRESS_SETS } from './render.js';

/** One element of an egress set as nft's JSON prints it. */
export interface EgressCount {
  honeypot: string;
  dst: string;
  protocol: string; // tcp, udp, icmp, ipv6-icmp, or a number
  port: number; // 0 for protocols without ports
  packets: number;
  bytes: number;
}

interface NftSetJson {
  nftables?: { set?: { name?: string; elem?: unknown[] } }[];
}

/** The elements of `nft -j list set` output (any number of sets); unknown shapes are skipped. */
export function parseEgressSets(json: string): EgressCount[] {
  const doc = JSON.parse(json) as NftSetJson;
  const out: EgressCount[] = [];
  for (const o of doc.nftables ?? []) {
    for (const raw of o.set?.elem ?? []) {
      const e = (raw as { elem?: { val?: unknown; counter?: { packets?: number; bytes?: number } } }).elem;
      const concat = (e?.val as { concat?: unknown[] } | undefined)?.concat;
      if (!e || !Array.isArray(concat) || concat.length < 3) continue;
      const [honeypot, dst, protocol, port] = concat;
      if (typeof honeypot !== 'string' || typeof dst !== 'string') continue;
      out.push({
        honeypot,
        dst,
        protocol: String(protocol),
        port: typeof port === 'number' ? port : 0,
        packets: e.counter?.packets ?? 0,
        bytes: e.counter?.bytes ?? 0,
      });
    }
  }
  return out;
}

const key = (c: EgressCount) => `${c.honeypot}|${c.dst}|${c.protocol}|${c.port}`;

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
  return {
    id: newEventId(),
    type: 'egress',
    openedAt: from,
    closedAt: to,
    sensor,
    listener: '',
    src: { ip: c.honeypot, port: 0 },
    dst: { ip: c.dst, port: c.port },
    peer: null,
    proxyHeader: null,
    route: null,
    action: 'drop',
    backend: null,
    server: null,
    sourceMode: null,
    bytesIn: c.bytes,
    bytesOut: 0,
    durationMs: to - from,
    closeReason: 'dropped',
    firstBytes: Buffer.alloc(0),
    protocol: c.protocol,
    protocolFields: { packets: c.packets, bytes: c.bytes },
    count: c.packets,
    detail: `contained: ${c.packets} packet${c.packets === 1 ? '' : 's'} from honeypot ${c.honeypot} to ${c.dst}${c.port ? ` port ${c.port}` : ''} (${c.protocol}) dropped`,
  };
}

/** Reads the egress sets every contain.recordInterval while `run` runs; never throws. */
export class EgressRecorder {
  private timer: NodeJS.Timeout | null = null;
  private reading: Promise<void> = Promise.resolve();
  private last = new Map<string, EgressCount>();
  private lastAt = Date.now();
  private warned = false;

  constructor(
    private config: Config,
    private readonly log: Logger,
    private readonly recorder: Recorder,
  ) {}

  start(): void {
    if (!this.config.contain) return;
    this.lastAt = Date.now();
    this.timer = setInterval(() => {
      this.reading = this.reading.then(() => this.read());
    }, this.config.contain.recordIntervalMs);
    this.timer.unref();
  }

  reload(config: Config): void {
    this.config = config;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.start();
  }

  /** Stops reading after one last read, so the last interval's attempts are recorded too. */
  async stop(): Promise<void> {
    if (!this.timer) return this.reading; // never started
    clearInterval(this.timer);
    this.timer = null;
    this.reading = this.reading.then(() => this.read());
    await this.reading;
  }

  /** One read: every set, then one event per grown element. */
  async read(): Promise<void> {
    if (!this.config.contain) return;
    const now = Date.now();
    let counts: EgressCount[];
    try {
      counts = [];
      for (const s of EGRESS_SETS) {
        const r = await runTool('nft', ['-j', 'list', 'set', FAMILY, TABLE, s.name]);
        if (r.code !== 0) throw new Error(`nft -j list set ${FAMILY} ${TABLE} ${s.name}: ${r.stderr.trim()}`);
        counts.push(...parseEgressSets(r.stdout));
      }
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
