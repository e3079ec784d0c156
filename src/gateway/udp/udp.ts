// The UDP side of the gateway: binds UDP listeners, turns datagrams into flows (flow.ts),
// runs their actions (actions.ts) behind the amplification guard (guard.ts), and ends
// flows that went idle. Gateway (../gateway.ts) owns one and forwards start, reload and stop.
//
// `bind` listeners: one socket per address and port, and a reply leaves from the socket the
// datagram came to, so from the address the attacker aimed at. With the addon they read and
// write in batches (port.ts: recvmmsg, sendmmsg, one JS call per batch); with
// HONEYGATE_RELAY=off or no addon, through Node's dgram, a syscall and a callback per
// datagram. A `tproxy` listener needs the addon (the original destination of each datagram,
// and a transparent socket to answer from it): see bindTproxy() in tproxy.ts.
import dgram from 'node:dgram';
import { closeSync } from 'node:fs';
import { AMPLIFICATION_DEFAULTS } from '../../config/schema.js';
import type { Config, ListenerConfig, UdpLimits } from '../../config/types.js';
import { newEventId, type Recorder } from '../../events/recorder.js';
import type { Logger } from '../../log.js';
import { formatEndpoint, normalizeIp, socketIp } from '../../net/address.js';
import { socketName, udpSocket } from '../../net/native.js';
import { Admission } from '../admit.js';
import type { BoundSocket } from '../listener.js';
import { listeningRuns } from '../listening.js';
import { relayWanted } from '../relay.js';
import { routeWithoutPeek } from '../route.js';
import type { Runtime } from '../runtime.js';
import { reply, runUdpAction } from './actions.js';
import { type Downstream, type OnDatagram, UdpFlow } from './flow.js';
import { AmplificationGuard } from './guard.js';
import { UdpBatchPort } from './port.js';
import { bindTproxy } from './tproxy.js';

export const UDP_DEFAULTS: UdpLimits = {
  idleTimeoutMs: 30_000,
  maxFlows: 20_000,
  amplification: { ...AMPLIFICATION_DEFAULTS },
};

/** The sweep runs this often at most (and at least once per idle timeout / 4). */
const SWEEP_MS = 1000;

function udpLimits(config: Config): UdpLimits {
  return config.limits.udp ?? UDP_DEFAULTS;
}

/** The socket key of a UDP endpoint (its own namespace beside the TCP sockets' keys). */
function udpKey(listener: string, host: string, port: number, tproxy: boolean): string {
  const e = formatEndpoint({ host, port });
  return port === 0 || tproxy ? `udp|${listener}|${e}${tproxy ? '|tproxy' : ''}` : `udp:${e}`;
}

export function udpEndpointKeys(l: ListenerConfig): string[] {
  if (l.transport !== 'udp') return [];
  if (l.tproxy) return l.tproxy.addresses.map((a) => udpKey(l.name, a, l.tproxy!.port, true));
  return l.bind.map((e) => udpKey(l.name, e.host, e.port, false));
}

/** Binds one dgram socket; resolves when it is bound, rejects with the bind error. */
function bindDgram(
  l: ListenerConfig,
  host: string,
  port: number,
  onDatagram: OnDatagram,
): Promise<BoundSocket> {
  return new Promise((resolve, reject) => {
    const v6 = host.includes(':');
    const socket = dgram.createSocket(v6 ? { type: 'udp6', ipv6Only: true } : { type: 'udp4' });
    const bound: BoundSocket = {
      key: udpKey(l.name, host, port, false),
      listener: l.name,
      close: () => socket.close(),
      address: '',
      local: null,
    };
    const send: Downstream = {
      send: (payload, to) => socket.send(payload, to.port, to.ip, () => {}),
    };
    const downstream = () => send;
    socket.once('error', reject);
    socket.on('message', (msg, rinfo) => {
      const ip = socketIp(rinfo.address) ?? rinfo.address;
      onDatagram(bound, msg, { ip, port: rinfo.port }, bound.local!, downstream);
    });
    socket.bind(port, host, () => {
      socket.off('error', reject);
      // A socket error after bind (ICMP errors are not reported for unconnected sockets) is ours.
      socket.on('error', () => {});
      const a = socket.address();
      bound.address = formatEndpoint({ host, port: a.port });
      bound.local = { ip: normalizeIp(host) ?? host, port: a.port };
      resolve(bound);
    });
  });
}

/** Binds one batched socket (the addon's); throws HG_ERR_SOCKET naming the failed call. */
function bindBatched(l: ListenerConfig, host: string, port: number, onDatagram: OnDatagram): BoundSocket {
  const fd = udpSocket(host, port, {});
  const ip = normalizeIp(host) ?? host;
  let actual = port;
  try {
    if (port === 0) actual = socketName(fd).port;
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  const local = { ip, port: actual };
  const bound: BoundSocket = {
    key: udpKey(l.name, host, port, false),
    listener: l.name,
    close: () => socket.close(),
    address: formatEndpoint({ host, port: actual }),
    local,
  };
  const send: Downstream = { send: (payload, to) => socket.send(payload, to) };
  const downstream = () => send;
  const socket = new UdpBatchPort(
    fd,
    (numbers, hosts, payload) => {
      for (let i = 0; i < hosts.length / 2; i++) {
        const h = hosts[i * 2]!;
        const src = { ip: socketIp(h) ?? h, port: numbers[i * 4]! };
        onDatagram(bound, payload.subarray(numbers[i * 4 + 2]!, numbers[i * 4 + 3]!), src, local, downstream);
      }
    },
    false,
  );
  return bound;
}

export class UdpGateway {
  private readonly sockets = new Map<string, BoundSocket>();
  private readonly flows = new Map<string, UdpFlow>();
  readonly admission: Admission;
  readonly guard: AmplificationGuard;
  private sweepTimer: NodeJS.Timeout | null = null;
  private stopping = false;

  constructor(
    private runtime: () => Runtime,
    private readonly log: Logger,
    private readonly recorder: Recorder,
  ) {
    const config = runtime().config;
    const udp = udpLimits(config);
    this.admission = new Admission({ ...config.limits, maxConnections: udp.maxFlows });
    this.guard = new AmplificationGuard(udp.amplification);
  }

  get openFlows(): number {
    return this.flows.size;
  }

  listening(): { listener: string; address: string }[] {
    return [...this.sockets.values()].map((b) => ({ listener: b.listener, address: b.address }));
  }

  /** Binds the UDP listeners of `config` not bound yet (keys in `have`); all or nothing. */
  private async bindAll(listeners: ListenerConfig[], have: Set<string>): Promise<BoundSocket[]> {
    const out: BoundSocket[] = [];
    try {
      for (const l of listeners) {
        if (l.transport !== 'udp') continue;
        if (l.tproxy) {
          for (const host of l.tproxy.addresses) {
            if (have.has(udpKey(l.name, host, l.tproxy.port, true))) continue;
            out.push(bindTproxy(l, host, l.tproxy.port, this.onDatagram, this.log));
          }
          continue;
        }
        for (const e of l.bind) {
          if (e.port !== 0 && have.has(udpKey(l.name, e.host, e.port, false))) continue;
          out.push(
            relayWanted()
              ? bindBatched(l, e.host, e.port, this.onDatagram)
              : await bindDgram(l, e.host, e.port, this.onDatagram),
          );
        }
      }
    } catch (err) {
      for (const b of out) b.close();
      throw err;
    }
    return out;
  }

  private logListening(bound: BoundSocket[]): void {
    for (const run of listeningRuns(bound)) this.log.info({ ...run, transport: 'udp' }, 'listening');
  }

  async start(): Promise<void> {
    const bound = await this.bindAll(this.runtime().config.listeners, new Set());
    for (const b of bound) this.sockets.set(b.key, b);
    this.logListening(bound);
    this.startSweep();
  }

  /** Binds what the new config adds, closes what it drops; open flows keep their runtime. */
  async reload(config: Config): Promise<() => void> {
    const keep = new Map(config.listeners.flatMap((l) => udpEndpointKeys(l).map((k) => [k, l.name])));
    const bound = await this.bindAll(config.listeners, new Set(this.sockets.keys()));
    const udp = udpLimits(config);
    this.admission.setLimits({ ...config.limits, maxConnections: udp.maxFlows });
    this.guard.setConfig(udp.amplification);
    return () => {
      for (const b of bound) this.sockets.set(b.key, b);
      this.logListening(bound);
      for (const [key, b] of this.sockets) {
        const owner = keep.get(key);
        if (owner !== undefined) {
          b.listener = owner;
          continue;
        }
        b.close();
        this.sockets.delete(key);
        this.log.info({ listener: b.listener, address: b.address, transport: 'udp' }, 'stopped listening');
      }
      this.startSweep();
    };
  }

  /** Closes the sockets, ends every flow as `shutdown`. */
  stop(): void {
    this.stopping = true;
    for (const b of this.sockets.values()) b.close();
    this.sockets.clear();
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    for (const flow of this.flows.values()) flow.finish('shutdown');
    this.flows.clear();
  }

  /** Rejection tallies of UDP admission, for the gateway's tally timer. */
  drainTallies(sensor: string): ReturnType<Admission['drain']> {
    return this.admission.drain(sensor, newEventId);
  }

  private startSweep(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    const idle = udpLimits(this.runtime().config).idleTimeoutMs;
    this.sweepTimer = setInterval(() => this.sweep(), Math.max(10, Math.min(SWEEP_MS, idle / 4)));
    this.sweepTimer.unref();
  }

  /** Ends flows idle past the timeout or open past maxDuration; forgets idle guard sources. */
  private sweep(): void {
    const now = performance.now();
    const config = this.runtime().config;
    const idle = udpLimits(config).idleTimeoutMs;
    for (const [key, flow] of this.flows) {
      const limits = flow.runtime.config.limits;
      const flowIdle = (limits.udp ?? UDP_DEFAULTS).idleTimeoutMs;
      if (flow.idleMs(now) >= flowIdle) {
        this.flows.delete(key);
        flow.finish('idle-timeout');
      } else if (flow.durationMs() >= limits.maxDurationMs) {
        this.flows.delete(key);
        flow.closeReason = 'max-duration';
        flow.finish('max-duration');
      }
    }
    // A source's counts outlive its flows a while: a new flow from it starts where it left off.
    this.guard.sweep(Math.max(idle * 2, 60_000));
  }

  private readonly onDatagram: OnDatagram = (bound, payload, src, dst, downstream) => {
    if (this.stopping) return;
    const key = `${bound.listener}|${src.ip}|${src.port}|${dst.ip}|${dst.port}`;
    let flow = this.flows.get(key);
    if (flow) {
      this.guard.received(src.ip, payload.length);
      flow.received(payload);
      flow.onDatagram?.(payload);
      return;
    }
    const rt = this.runtime();
    const listener = rt.listener(bound.listener);
    if (!listener) return;
    const refusal = this.admission.checkGlobal() ?? this.admission.checkSource(src.ip);
    if (refusal) {
      this.admission.refused(src.ip, refusal, listener.name, dst);
      return;
    }
    flow = new UdpFlow(listener, rt, src, dst, downstream());
    const journal = this.recorder.journal;
    if (journal) flow.journaled = journal.start(flow.id, flow.openedAt, listener.name, src, dst);
    flow.defer(this.admission.hold());
    flow.defer(this.admission.holdSource(src.ip));
    this.flows.set(key, flow);
    const f = flow;
    flow.defer(() => {
      if (this.flows.get(key) === f) this.flows.delete(key);
    });
    this.guard.received(src.ip, payload.length);
    flow.received(payload);
    const route = routeWithoutPeek(flow, rt.config.routes);
    if (!route) return flow.finish('no-route');
    flow.route = route;
    try {
      runUdpAction(flow, route.action, this.guard);
      if (!flow.closed) flow.onDatagram?.(payload);
    } catch (err) {
      flow.finish('error', String(err));
    }
  };
}

export { reply };
