// Flow records of kernel routes, from conntrack: the flows nftables DNATs never reach
// honeygate's sockets, so their one event per flow comes from the kernel's own record of them.
//
// How: `conntrack -E -e NEW,DESTROY` (Debian package conntrack) in this network namespace,
// filtered in the kernel by the ct mark the kernel chain sets (firewall.kernelMark). NEW gives
// the open time, DESTROY the bytes and packets each way (nf_conntrack_acct, which `firewall
// apply` turns on) and the end. Why the tool and not netlink in the addon: it is the
// maintained libnetfilter_conntrack client, it forces its receive buffer past rmem_max
// (SO_RCVBUFFORCE, `-b`), and its text is cheap to parse; docs/kernel.md has the rates it
// kept up with. Its overrun message ("We have hit ENOBUFS") is counted and recorded as a
// `firewall` event: events were lost, and the operator must know.
//
// The kernel's conntrack garbage collector may wait up to a minute before it reaps an
// expired entry (and only then sends DESTROY); a dump evicts expired entries as it walks, so
// while kernel flows are open a sweep lists the marked CLOSE entries once a second.
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Config, Endpoint } from '../config/types.js';
import { blankEvent, type CloseReason, type FlowEvent } from '../events/event.js';
import { newEventId, type Recorder } from '../events/recorder.js';
import { flowEnd } from '../gateway/flow.js';
import type { Logger } from '../log.js';
import { anyContains } from '../net/address.js';
import { hasKernelRoutes, kernelMark, kernelRoutes } from './plan.js';

/** The netlink receive buffer asked for (the tool forces it; the kernel doubles it). */
export const BUFFER_BYTES = 16 * 1024 * 1024;
/** Open flows remembered from NEW; beyond, the oldest is forgotten (its DESTROY still records it). */
export const MAX_PENDING = 1_000_000;
const SWEEP_MS = 1000;

/** One conntrack event as the tool prints it with `-o id,timestamp,extended`. */
export interface CtEvent {
  kind: 'NEW' | 'DESTROY';
  at: number; // epoch ms of the event
  family: 4 | 6;
  state: string | null; // TCP state (DESTROY: the state it died in)
  id: string;
  mark: number;
  orig: { src: string; dst: string; sport: number; dport: number; packets: number; bytes: number };
  reply: { src: string; dst: string; sport: number; dport: number; packets: number; bytes: number };
  deltaS: number | null; // delta-time: seconds between start and stop (nf_conntrack_timestamp)
}

/**
 * Parses one line of `conntrack -E -o id,timestamp,extended`, e.g.
 * `[1796506314.395090]\t[DESTROY] ipv4 2 tcp 6 TIME_WAIT src=... dport=80 packets=5 bytes=268
 * src=... packets=4 bytes=235 [ASSURED] mark=8192 delta-time=5 id=1404333046`; null otherwise.
 */
export function parseCtLine(line: string): CtEvent | null {
  const head =
    /^\[(\d+(?:\.\d+)?)\]\s+\[(NEW|DESTROY)\]\s+(ipv4|ipv6)\s+\d+\s+tcp\s+\d+\s+(?:\d+\s+)?([A-Z_]+)?/.exec(
      line,
    );
  if (!head) return null;
  const dir = () => ({ src: '', dst: '', sport: 0, dport: 0, packets: 0, bytes: 0 });
  const orig = dir();
  const reply = dir();
  let cur = orig;
  let seenSrc = 0;
  let mark = 0;
  let id = '';
  let deltaS: number | null = null;
  for (const tok of line.slice(head[0].length).split(/\s+/)) {
    const eq = tok.indexOf('=');
    if (eq < 0) continue;
    const k = tok.slice(0, eq);
    const v = tok.slice(eq + 1);
    if (k === 'src') {
      seenSrc++;
      cur = seenSrc === 1 ? orig : reply;
      cur.src = v;
    } else if (k === 'dst') cur.dst = v;
    else if (k === 'sport') cur.sport = Number(v);
    else if (k === 'dport') cur.dport = Number(v);
    else if (k === 'packets') cur.packets = Number(v);
    else if (k === 'bytes') cur.bytes = Number(v);
    else if (k === 'mark') mark = Number(v);
    else if (k === 'id') id = v;
    else if (k === 'delta-time') deltaS = Number(v);
  }
  if (!id || !orig.src || !reply.src) return null;
  return {
    kind: head[2] as 'NEW' | 'DESTROY',
    at: Math.round(Number(head[1]) * 1000),
    family: head[3] === 'ipv6' ? 6 : 4,
    state: head[4] ?? null,
    id,
    mark,
    orig,
    reply,
    deltaS,
  };
}

/** The tool's overrun warning: the kernel dropped events the socket had no room for. */
export function isOverrun(stderrLine: string): boolean {
  return /ENOBUFS/.test(stderrLine);
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
    const l = k.listeners.find((x) => {
      const d = x.tproxy!.divert!;
      if (d.addresses && !anyContains(d.addresses, dst.host)) return false;
      if (d.exclude.some((r) => dst.port >= r.from && dst.port <= r.to)) return false;
      return d.ports.some((r) => dst.port >= r.from && dst.port <= r.to);
    });
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
export function flowEvent(config: Config, e: CtEvent, openedAt: number | null): FlowEvent {
  const who = attribute(config, e);
  const started = openedAt ?? (e.deltaS !== null ? e.at - e.deltaS * 1000 : e.at);
  const server = e.family === 6 ? `[${e.reply.src}]:${e.reply.sport}` : `${e.reply.src}:${e.reply.sport}`;
  return {
    ...blankEvent({
      id: newEventId(),
      type: 'flow',
      openedAt: started,
      closedAt: Math.max(e.at, started),
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
  overruns: number; // ENOBUFS reported by the tool: events lost
  unparsed: number; // lines that were not an event
  pending: number; // NEW seen, DESTROY not yet
}

const totals = { flows: 0, overruns: 0, unparsed: 0 };

/** Counters of every recorder in this process (for /metrics). */
export function conntrackTotals(): Readonly<typeof totals> {
  return totals;
}

/**
 * Records a flow event for every kernel-routed flow of this namespace. start() resolves once
 * the subscription is open; stop() ends it (flows still open stay in the kernel, and are
 * recorded by the next run that sees their DESTROY).
 */
export class ConntrackRecorder {
  private child: ChildProcess | null = null;
  private sweeper: NodeJS.Timeout | null = null;
  private sweeping = false;
  private readonly pending = new Map<string, number>(); // conntrack id -> opened at
  private stopping = false;
  private restarts = 0;
  readonly stats: ConntrackStats = { running: false, flows: 0, overruns: 0, unparsed: 0, pending: 0 };

  constructor(
    private config: Config,
    private readonly log: Logger,
    private readonly recorder: Recorder,
    private readonly tool = 'conntrack',
  ) {}

  /** True when the config has kernel routes to record. */
  static wanted(config: Config): boolean {
    return hasKernelRoutes(config);
  }

  async start(): Promise<void> {
    if (this.child) return;
    const mark = `0x${kernelMark(this.config).toString(16)}`;
    const args = ['-E', '-e', 'NEW,DESTROY', '-o', 'id,timestamp,extended', '-p', 'tcp'];
    args.push('-m', `${mark}/${mark}`, '-b', String(BUFFER_BYTES));
    const PATH = [process.env.PATH, '/usr/sbin', '/sbin'].filter(Boolean).join(':');
    // The tool writes to a pipe, so stdio buffers it by 4 KiB: the last events of a quiet
    // moment would wait there. stdbuf (coreutils) makes it line-buffered.
    const child = spawn('stdbuf', ['-oL', this.tool, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PATH },
    });
    this.child = child;
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', () => resolve());
      child.once('error', (err: NodeJS.ErrnoException) => {
        this.child = null;
        reject(
          new Error(
            err.code === 'ENOENT'
              ? '`conntrack` not found: kernel routes record their flows with it (apt-get install conntrack)'
              : `cannot run conntrack: ${err.message}`,
          ),
        );
      });
    });
    this.stats.running = true;
    createInterface({ input: child.stdout! }).on('line', (line) => this.onLine(line));
    createInterface({ input: child.stderr! }).on('line', (line) => this.onStderr(line));
    child.on('exit', (code, signal) => {
      this.stats.running = false;
      this.child = null;
      if (this.stopping) return;
      // Lost events are the one thing this must never hide: say so, then subscribe again.
      this.log.error(
        { code: 'HG_ERR_FIREWALL' },
        `conntrack -E exited (${signal ?? code}); subscribing again`,
      );
      this.note(`conntrack -E exited (${signal ?? code}): flows that ended meanwhile are not recorded`);
      if (this.restarts++ < 10) setTimeout(() => void this.start().catch(() => {}), 1000).unref();
    });
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweeper.unref();
  }

  /** A reload: new flows are attributed to the new config's routes. */
  reload(config: Config): void {
    this.config = config;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
    const child = this.child;
    if (!child) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
  }

  private onLine(line: string): void {
    const e = parseCtLine(line);
    if (!e) {
      if (line.trim()) {
        this.stats.unparsed++;
        totals.unparsed++;
      }
      return;
    }
    if (e.kind === 'NEW') {
      if (this.pending.size >= MAX_PENDING) {
        const oldest = this.pending.keys().next().value;
        if (oldest !== undefined) this.pending.delete(oldest);
      }
      this.pending.set(e.id, e.at);
    } else {
      const opened = this.pending.get(e.id) ?? null;
      this.pending.delete(e.id);
      const event = flowEvent(this.config, e, opened);
      this.recorder.record(event);
      // counted in honeygate_flows_total like the flows user space carries
      if (flowEnd.hasSubscribers) flowEnd.publish(event);
      this.stats.flows++;
      totals.flows++;
    }
    this.stats.pending = this.pending.size;
  }

  private onStderr(line: string): void {
    if (isOverrun(line)) {
      this.stats.overruns++;
      totals.overruns++;
      this.log.warn({ code: 'HG_ERR_FIREWALL' }, `conntrack events lost: ${line.trim()}`);
      this.note(
        `conntrack events lost (ENOBUFS, ${this.stats.overruns} so far): some kernel flows are not recorded`,
      );
      return;
    }
    if (/^NOTICE|flow events have been shown|^conntrack v/.test(line)) return;
    if (line.trim()) this.log.warn({ code: 'HG_ERR_FIREWALL' }, `conntrack: ${line.trim()}`);
  }

  /** A dump evicts expired entries, so DESTROY comes when the flow ended, not at the next GC. */
  private sweep(): void {
    if (this.sweeping || this.pending.size === 0) return;
    this.sweeping = true;
    const mark = `0x${kernelMark(this.config).toString(16)}`;
    const PATH = [process.env.PATH, '/usr/sbin', '/sbin'].filter(Boolean).join(':');
    const p = spawn(this.tool, ['-L', '-p', 'tcp', '-m', `${mark}/${mark}`, '--state', 'CLOSE'], {
      stdio: 'ignore',
      env: { ...process.env, PATH },
    });
    const done = () => {
      this.sweeping = false;
    };
    p.once('error', done);
    p.once('exit', done);
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

  constructor(
    private readonly log: Logger,
    private readonly recorder: Recorder,
  ) {}

  /** Subscribes when `config` has kernel routes; throws when conntrack cannot run. */
  async apply(config: Config): Promise<void> {
    if (this.recorderOf) {
      this.recorderOf.reload(config);
      return;
    }
    if (!ConntrackRecorder.wanted(config)) return;
    const r = new ConntrackRecorder(config, this.log, this.recorder);
    await r.start();
    this.recorderOf = r;
    this.log.info('recording kernel routes from conntrack events');
  }

  get stats(): ConntrackStats | null {
    return this.recorderOf?.stats ?? null;
  }

  async stop(): Promise<void> {
    await this.recorderOf?.stop();
    this.recorderOf = null;
  }
}
