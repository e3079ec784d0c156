// Flow records of kernel routes, from conntrack: the flows nftables DNATs never reach
// honeygate's sockets, so their one event per flow comes from the kernel's own record of them.
//
// How: the addon's ConntrackReader (native/conntrack_reader.cc) subscribes this network
// namespace's conntrack DESTROY events over netlink, filtered in the kernel (a socket filter)
// by the ct mark the kernel chain sets (firewall.kernelMark), and reads them on a thread of
// its own, parsing each by hand (native/conntrack.cc). A DESTROY has everything a record
// needs: both tuples, the bytes and packets each way (nf_conntrack_acct, which `firewall
// apply` turns on), the start and stop times (nf_conntrack_timestamp) and the TCP state.
//
// Overruns: the socket asks for NETLINK_BROADCAST_ERROR, so a DESTROY event the receive
// buffer had no room for stays with the kernel, which delivers it again (conntrackd's
// "reliable events"); the ENOBUFS the next read returns is still counted and recorded as a
// `firewall` event. docs/kernel.md has the rates measured.
//
// The kernel's conntrack garbage collector may wait up to a minute before it reaps an
// expired entry (and only then sends DESTROY); a dump evicts expired entries as it walks, so
// two to four times a second the reader asks for a dump that matches nothing.
import type { Config, Endpoint } from '../config/types.js';
import { blankEvent, type CloseReason, type FlowEvent } from '../events/event.js';
import { newEventId, type Recorder } from '../events/recorder.js';
import { flowEnd } from '../gateway/flow.js';
import type { Logger } from '../log.js';
import { anyContains } from '../net/address.js';
import { CONNTRACK_FIELDS, type ConntrackReader, conntrackReader } from '../net/native.js';
import { divertedTo, hasKernelRoutes, kernelMark, kernelRoutes } from './plan.js';
import { KernelRefusals } from './refusals.js';

/** The netlink receive buffer asked for (forced past rmem_max; the kernel doubles it). */
export const BUFFER_BYTES = 64 * 1024 * 1024;
/**
 * How often expired entries are evicted (see sweep()): every 250 ms while kernel flows are being
 * recorded (within SWEEP_BUSY_MS of the last), every 500 ms otherwise. With the 1 s close timeouts
 * of render.ts a closed flow's record comes 1-1.25 s after its close (1-1.5 s for the first after
 * a quiet spell). A sweep walks the whole conntrack hash (every namespace's buckets, 262,144 here)
 * in the sending thread, this one: about 3 ms of kernel time each on the loaded 2-core machine.
 */
const SWEEP_MS = { busy: 250, quiet: 500 };
const SWEEP_BUSY_MS = 5_000;
const TCP_STATES = [
  'NONE',
  'SYN_SENT',
  'SYN_RECV',
  'ESTABLISHED',
  'FIN_WAIT',
  'CLOSE_WAIT',
  'LAST_ACK',
  'TIME_WAIT',
  'CLOSE',
  'SYN_SENT2',
];

/** One conntrack DESTROY event, as the reader decodes it. */
export interface CtEvent {
  at: number; // epoch ms the event was read
  family: 4 | 6;
  state: string | null; // the TCP state the flow died in
  id: string; // conntrack id (a hash: unique among live entries, reused over time)
  mark: number;
  orig: { src: string; dst: string; sport: number; dport: number; packets: number; bytes: number };
  reply: { src: string; dst: string; sport: number; dport: number; packets: number; bytes: number };
  start: number | null; // epoch ms the flow began (nf_conntrack_timestamp), null without
  stop: number | null; // epoch ms conntrack forgot it
}

/** One record of a reader's batch. overrun, malformed and dropped carry totals so far. */
export type CtRecord =
  | { kind: 'flow'; event: CtEvent }
  | { kind: 'overrun' | 'malformed' | 'dropped'; total: number };

const KINDS = ['flow', 'overrun', 'malformed', 'dropped'] as const;

/** Decodes a ConntrackReader batch (native/conntrack_reader.cc's layout); unknown kinds are skipped. */
export function decodeBatch(numbers: Float64Array, hosts: string[]): CtRecord[] {
  const out: CtRecord[] = [];
  const n = Math.floor(numbers.length / CONNTRACK_FIELDS);
  for (let i = 0; i < n; i++) {
    const r = numbers.subarray(i * CONNTRACK_FIELDS, (i + 1) * CONNTRACK_FIELDS);
    const kind = KINDS[r[0]!];
    if (!kind) continue;
    if (kind !== 'flow') {
      out.push({ kind, total: r[1]! });
      continue;
    }
    const h = hosts.slice(i * 4, i * 4 + 4);
    out.push({
      kind,
      event: {
        at: r[17]!,
        family: r[1] === 6 ? 6 : 4,
        state: r[3]! >= 0 ? (TCP_STATES[r[3]!] ?? null) : null,
        id: String(r[4]),
        mark: r[5]!,
        orig: {
          src: h[0] ?? '',
          dst: h[1] ?? '',
          sport: r[7]!,
          dport: r[8]!,
          packets: r[11]!,
          bytes: r[12]!,
        },
        reply: {
          src: h[2] ?? '',
          dst: h[3] ?? '',
          sport: r[9]!,
          dport: r[10]!,
          packets: r[13]!,
          bytes: r[14]!,
        },
        start: r[15]! > 0 ? Math.round(r[15]!) : null,
        stop: r[16]! > 0 ? Math.round(r[16]!) : null,
      },
    });
  }
  return out;
}

/** The listener, route and backend a kernel flow was DNATed by: the first kernel route that fits. */
export function attribute(
  config: Config,
  e: CtEvent,
): { listener: string; route: string; backend: string } | null {
  const dst = { host: e.orig.dst, port: e.orig.dport };
  const server: Endpoint = { host: e.reply.src, port: e.reply.sport };
  for (const k of kernelRoutes(config)) {
    const m = k.route.match;
    if (m?.dstPorts && !m.dstPorts.some((r) => dst.port >= r.from && dst.port <= r.to)) continue;
    if (m?.dstAddresses && !anyContains(m.dstAddresses, dst.host)) continue;
    if (m?.srcAddresses && !anyContains(m.srcAddresses, e.orig.src)) continue;
    if (!k.backend.servers.some((s) => s.host === server.host && s.port === server.port)) continue;
    const l = divertedTo(k.listeners, dst);
    if (!l) continue;
    return { listener: l.name, route: k.route.name, backend: k.backend.name };
  }
  return null;
}

const STATE_REASON: Record<string, CloseReason> = {
  SYN_SENT: 'server-unavailable', // the honeypot never answered
  SYN_RECV: 'server-unavailable',
  ESTABLISHED: 'idle-timeout', // conntrack's established timeout ran out
};

/** The flow record of a DESTROY: `action: forward`, `engine: kernel`. */
export function flowEvent(config: Config, e: CtEvent): FlowEvent {
  const who = attribute(config, e);
  const ended = e.stop ?? e.at;
  const started = Math.min(e.start ?? ended, ended);
  const server = e.family === 6 ? `[${e.reply.src}]:${e.reply.sport}` : `${e.reply.src}:${e.reply.sport}`;
  return {
    ...blankEvent({
      id: newEventId(),
      type: 'flow',
      openedAt: started,
      closedAt: ended,
      sensor: config.events.sensor,
    }),
    listener: who?.listener ?? '',
    src: { ip: e.orig.src, port: e.orig.sport },
    dst: { ip: e.orig.dst, port: e.orig.dport },
    route: who?.route ?? null,
    action: 'forward',
    backend: who?.backend ?? null,
    server,
    sourceMode: 'transparent',
    bytesIn: e.orig.bytes,
    bytesOut: e.reply.bytes,
    closeReason: (e.state && STATE_REASON[e.state]) || null,
    detail:
      `kernel (nftables DNAT): conntrack id ${e.id}, ${e.orig.packets} packets in, ${e.reply.packets} out, ` +
      `ended in ${e.state ?? 'an unknown state'}; bytes are IP bytes (headers included)`,
    engine: 'kernel',
  };
}

export interface ConntrackStats {
  running: boolean;
  flows: number; // flow events recorded
  overruns: number; // ENOBUFS on the socket: the kernel had no room (DESTROY events come again)
  malformed: number; // events that did not parse, skipped
  dropped: number; // flows the reader could not hand to JS (its queue was full): not recorded
}

const totals = { flows: 0, overruns: 0, malformed: 0, dropped: 0 };

/** Counters of every recorder in this process (for /metrics). */
export function conntrackTotals(): Readonly<typeof totals> {
  return totals;
}

/**
 * Records a flow event for every kernel-routed flow of this namespace. start() subscribes
 * (CAP_NET_ADMIN, so before privileges are dropped); stop() ends it (flows still open stay in
 * the kernel, and are recorded by the next run that sees their DESTROY).
 */
export class ConntrackRecorder {
  private reader: ConntrackReader | null = null;
  private sweeper: NodeJS.Timeout | null = null;
  private sweepRefused = false;
  private lastFlowAt = 0;
  readonly stats: ConntrackStats = { running: false, flows: 0, overruns: 0, malformed: 0, dropped: 0 };

  constructor(
    private config: Config,
    private readonly log: Logger,
    private readonly recorder: Recorder,
  ) {}

  /** True when the config has kernel routes to record. */
  static wanted(config: Config): boolean {
    return hasKernelRoutes(config);
  }

  start(): void {
    if (this.reader) return;
    const mark = kernelMark(this.config);
    this.reader = conntrackReader({ mark, rcvbuf: BUFFER_BYTES }, (numbers, hosts) =>
      this.onBatch(decodeBatch(numbers, hosts)),
    );
    this.stats.running = true;
    this.schedule();
  }

  /** A reload: new flows are attributed to the new config's routes. */
  reload(config: Config): void {
    this.config = config;
  }

  stop(): void {
    if (this.sweeper) clearTimeout(this.sweeper);
    this.sweeper = null;
    this.reader?.close();
    this.reader = null;
    this.stats.running = false;
  }

  /** One batch of the reader's records: flows recorded, overruns and losses counted and noted. */
  onBatch(records: CtRecord[]): void {
    for (const r of records) {
      if (r.kind === 'flow') {
        const event = flowEvent(this.config, r.event);
        this.recorder.record(event);
        // counted in honeygate_flows_total like the flows user space carries
        if (flowEnd.hasSubscribers) flowEnd.publish(event);
        this.stats.flows++;
        totals.flows++;
        this.lastFlowAt = r.event.at;
      } else if (r.kind === 'overrun') {
        totals.overruns += r.total - this.stats.overruns;
        this.stats.overruns = r.total;
        this.log.warn(
          { code: 'HG_ERR_FIREWALL', overruns: r.total },
          'conntrack events lost: the receive buffer overran (ENOBUFS)',
        );
        this.note(
          `conntrack events lost: the receive buffer overran (ENOBUFS, ${r.total} so far); ` +
            'the kernel delivers flow ends again, so records may come late',
        );
      } else if (r.kind === 'malformed') {
        totals.malformed += r.total - this.stats.malformed;
        this.stats.malformed = r.total;
        this.log.warn({ code: 'HG_ERR_FIREWALL', malformed: r.total }, 'conntrack events that do not parse');
      } else {
        totals.dropped += r.total - this.stats.dropped;
        this.stats.dropped = r.total;
        this.log.error(
          { code: 'HG_ERR_FIREWALL', dropped: r.total },
          'conntrack events lost: honeygate fell behind',
        );
        this.note(`conntrack events lost: honeygate fell behind (${r.total} flows not recorded so far)`);
      }
    }
  }

  /** A dump evicts expired entries, so DESTROY comes when the flow ended, not at the next GC. */
  private schedule(): void {
    const busy = Date.now() - this.lastFlowAt < SWEEP_BUSY_MS;
    this.sweeper = setTimeout(
      () => {
        this.sweep();
        if (this.reader) this.schedule();
      },
      busy ? SWEEP_MS.busy : SWEEP_MS.quiet,
    );
    this.sweeper.unref();
  }

  private sweep(): void {
    if (this.reader?.sweep() !== false || this.sweepRefused) return;
    this.sweepRefused = true; // once: without it the kernel's garbage collector still reaps, later
    this.log.warn(
      { code: 'HG_ERR_FIREWALL' },
      'cannot sweep conntrack (CAP_NET_ADMIN?): kernel flow records may come up to a minute late',
    );
  }

  private note(detail: string): void {
    const now = Date.now();
    this.recorder.record(
      blankEvent({
        id: newEventId(),
        type: 'firewall',
        openedAt: now,
        closedAt: now,
        sensor: this.config.events.sensor,
        detail,
      }),
    );
  }
}

/**
 * The recorder as `run` holds it: started when the config has kernel routes (also by a reload
 * that adds the first), told about reloads, stopped at exit. One per network namespace: only
 * the process that owns the firewall (a single `run`, or the workers' primary) holds it.
 */
export class KernelFlows {
  private recorderOf: ConntrackRecorder | null = null;
  private refusals: KernelRefusals | null = null;

  constructor(
    private readonly log: Logger,
    private readonly recorder: Recorder,
  ) {}

  /** Subscribes when `config` has kernel routes; throws HG_ERR_SOCKET when the addon cannot. */
  async apply(config: Config): Promise<void> {
    if (this.recorderOf) {
      this.recorderOf.reload(config);
      this.refusals?.reload(config);
      return;
    }
    if (!ConntrackRecorder.wanted(config)) return;
    const r = new ConntrackRecorder(config, this.log, this.recorder);
    r.start();
    this.recorderOf = r;
    this.refusals = new KernelRefusals(config, this.log, this.recorder);
    this.refusals.start();
    this.log.info('recording kernel routes from conntrack events, and their refusals from nft counters');
  }

  get stats(): ConntrackStats | null {
    return this.recorderOf?.stats ?? null;
  }

  /** Records the kernel's refusals counted so far: before the firewall's table goes at exit. */
  async settle(): Promise<void> {
    await this.refusals?.settle();
  }

  async stop(): Promise<void> {
    await this.refusals?.stop();
    this.refusals = null;
    this.recorderOf?.stop();
    this.recorderOf = null;
  }
}
