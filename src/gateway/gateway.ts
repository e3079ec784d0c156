// The wiring: the only module that knows every stage. A connection goes
//   listener -> admit -> [inbound PROXY header] -> route (peeks if asked) -> action -> event
// and the gateway owns what outlives a config: sockets, admission counts, the recorder,
// the relay and the deadline sweep.
import { closeSync } from 'node:fs';
import net from 'node:net';
import { runAction } from '../actions/index.js';
import type { Config, Endpoint, Route } from '../config/types.js';
import { HoneygateError } from '../errors.js';
import type { Address } from '../events/event.js';
import { newEventId, type Recorder } from '../events/recorder.js';
import type { Logger } from '../log.js';
import { anyContains, normalizeIp, socketIp } from '../net/address.js';
import { flowsWithin, openFileLimit } from '../net/fd-limit.js';
import { originalDst, socketFd, upstreamSocket } from '../net/native.js';
import { type RecordStats, RecordStore, recordsAnything } from '../record/store.js';
import { type HubStats, type OnTunneled, type TunnelStats, Tunnels } from '../tunnel/index.js';
import { Admission, type Refusal } from './admit.js';
import { Deadlines } from './deadlines.js';
import { Flow } from './flow.js';
import { readProxyHeader } from './header.js';
import { type Acceptor, type BoundSocket, bindAll, endpointsOf, socketKey } from './listener.js';
import { logListening } from './listening.js';
import { Slots } from './live.js';
import { isFdExhaustion, Relay, type RelayConn, relayWanted } from './relay.js';
import { NEEDS_PEEK, routeAfterPeek, routeByAddress, routeWithoutPeek } from './route.js';
import { Runtime } from './runtime.js';
import { UdpGateway } from './udp/udp.js';

/** The listeners Node's net (or the relay) binds: TCP ones; UDP listeners are UdpGateway's. */
function tcpListeners(config: Config): Config['listeners'] {
  return config.listeners.filter((l) => l.transport !== 'udp');
}

/** How long stop() goes on accepting what Node's listeners have queued, at most. */
const DRAIN_MS = 2000;

export interface GatewayStats {
  openFlows: number;
  refused: number; // flows refused by admission limits since start
  refusedBy?: Partial<Record<Refusal, number>>; // the same by reason
  recordings?: RecordStats; // session recordings (src/record/), when a route or backend records
  listeners: { listener: string; address: string }[];
  backends: { backend: string; servers: { server: string; up: boolean; active: number }[] }[];
  hubs?: HubStats[]; // a hub's tunnel listeners and the sensors connected to each (src/tunnel)
  tunnels?: TunnelStats[]; // a sensor's tunnels to its hubs
}

/** Where a REDIRECTed or DNATed flow was headed (conntrack's original destination); null when untracked. */
function natDestination(socket: net.Socket): { ip: string; port: number } | null {
  try {
    const fd = socketFd(socket);
    const d = fd === null ? null : originalDst(fd);
    return d ? { ip: normalizeIp(d.host) ?? d.host, port: d.port } : null;
  } catch {
    return null; // the attacker reset already (ENOTCONN): the local address will do
  }
}

/** The socket's own address (getsockname): a wildcard or transparent listener's flow's dst. */
function localAddress(socket: net.Socket): { ip: string; port: number } {
  const local = socket.localAddress;
  return { ip: (local ? socketIp(local) : null) ?? '', port: socket.localPort ?? 0 };
}

/**
 * A transparent backend fails only when its first flow dials; find out at start instead
 * (no addon, no CAP_NET_ADMIN) by opening and closing one such socket.
 */
function checkTransparentCapable(config: Config): void {
  const tried = new Set<4 | 6>();
  for (const transparent of config.backends.values()) {
    if (transparent.source !== 'transparent') continue;
    for (const s of transparent.servers) {
      const family = s.host.includes(':') ? 6 : 4;
      if (tried.has(family)) continue;
      tried.add(family);
      try {
        closeSync(upstreamSocket(family, { transparent: true }));
      } catch (err) {
        const why = (err as Error).message;
        throw new HoneygateError(
          'HG_ERR_SOCKET',
          `backend ${transparent.name} (source: transparent): ${why}`,
          {
            cause: err,
          },
        );
      }
    }
  }
}

export class Gateway {
  private runtime: Runtime;
  private readonly sockets = new Map<string, BoundSocket>();
  private readonly open = new Slots<Flow>();
  private readonly admission: Admission;
  // The deadline sweep is the gateway's, not a Runtime's: a reload swaps the Runtime while
  // open flows, relayed ones included, keep the one they were accepted under. One sweep that
  // outlives every Runtime covers every live flow with one timer, and no Runtime's stop()
  // can leave a flow unwatched.
  private readonly deadlines = new Deadlines();
  private tallyTimer: NodeJS.Timeout | null = null;
  private stopping = false;
  private connections = 0; // accepted by Node's listeners (stop() drains them by this count)
  private readonly relay: Relay | null;
  private readonly acceptor: Acceptor;
  private recordings: RecordStore | null = null;
  private readonly tunnels: Tunnels;
  private readonly udp: UdpGateway;

  /** `shared`: bind with SO_REUSEPORT (a worker process; its siblings bind the same addresses). */
  constructor(
    config: Config,
    private readonly log: Logger,
    private readonly recorder: Recorder,
    opts: { shared?: boolean } = {},
  ) {
    this.tunnels = new Tunnels(log, this.onTunneled);
    this.runtime = new Runtime(
      config,
      log,
      recorder,
      this.deadlines,
      this.recordingsFor(config),
      this.tunnels,
    );
    this.admission = new Admission(config.limits);
    this.udp = new UdpGateway(() => this.runtime, log, recorder);
    this.relay = relayWanted() ? new Relay(this.onRelayAccept, log, () => this.fdExhausted()) : null;
    this.acceptor = {
      onConnection: this.onConnection,
      relay: this.relay,
      shared: opts.shared ?? false,
      onAcceptError: this.onAcceptError,
    };
  }

  get config(): Config {
    return this.runtime.config;
  }

  /**
   * The one store of session recordings, made when a config first records something; it
   * outlives reloads (its directory and budget are the first such config's).
   */
  private recordingsFor(config: Config): RecordStore | null {
    if (!recordsAnything(config)) return null;
    this.recordings ??= new RecordStore(config.events.recordings!, this.log);
    return this.recordings;
  }

  get openFlows(): number {
    return this.open.size + this.udp.openFlows;
  }

  /** A snapshot for the admin API and metrics. */
  stats(): GatewayStats {
    return {
      openFlows: this.open.size + this.udp.openFlows,
      refused: this.admission.refusedTotal,
      refusedBy: { ...this.admission.refusedBy },
      ...(this.recordings ? { recordings: this.recordings.stats() } : {}),
      listeners: [
        ...[...this.sockets.values()].map((b) => ({ listener: b.listener, address: b.address })),
        ...this.udp.listening(),
      ],
      backends: [...this.runtime.pools.values()].map((p) => ({
        backend: p.backend.name,
        servers: p.servers.map((s) => ({ server: s.key, up: s.up, active: s.active })),
      })),
      ...this.tunnels.stats(),
    };
  }

  /** Binds every listener (all or nothing), starts health checks. */
  async start(): Promise<void> {
    checkTransparentCapable(this.config);
    if (this.runtime.recordings) await this.runtime.recordings.ready();
    const bound = await bindAll(tcpListeners(this.config), new Set(), this.acceptor);
    try {
      await this.udp.start();
    } catch (err) {
      for (const b of bound) b.close();
      throw err;
    }
    for (const b of bound) this.addSocket(b);
    logListening(this.log, bound);
    try {
      for (const run of await this.tunnels.apply(this.config)) this.log.info(run, 'listening');
    } catch (err) {
      for (const b of bound) b.close();
      this.sockets.clear();
      this.udp.stop();
      throw err;
    }
    this.fitToOpenFiles();
    this.runtime.start();
    this.startTallies();
  }

  /** Caps concurrent flows to what the open-file limit holds beside the bound sockets. */
  private fitToOpenFiles(): void {
    const limit = openFileLimit();
    if (limit === null) return;
    const flows = flowsWithin(limit, this.sockets.size);
    this.admission.setFdCap(flows);
    if (flows < this.config.limits.maxConnections) {
      this.log.warn(
        { maxConnections: this.config.limits.maxConnections, openFileLimit: limit, flows },
        `limits.maxConnections is more than ${limit} open files hold: at most ${flows} flows at once, ` +
          'more are refused as limit-global (raise LimitNOFILE= or ulimit -n)',
      );
    }
  }

  private startTallies(): void {
    if (this.tallyTimer) clearInterval(this.tallyTimer);
    this.tallyTimer = setInterval(() => this.flushTallies(), this.config.limits.rejectLogIntervalMs);
    this.tallyTimer.unref();
  }

  /** True unless a health check of the current config took the server out (kernel maps). */
  serverUp(backend: string, server: Endpoint): boolean {
    return this.runtime.serverUp(backend, server);
  }

  /**
   * Swaps in a new config: binds its new sockets first (so a failure changes nothing),
   * then closes sockets it no longer has. Open flows keep their old runtime.
   */
  async reload(config: Config, beforeClosing: () => Promise<void> = async () => {}): Promise<void> {
    const owners = new Map(
      tcpListeners(config).flatMap((l) =>
        endpointsOf(l).map(({ e, transparent }) => [socketKey(l.name, e, transparent), l.name]),
      ),
    );
    const bound = await bindAll(tcpListeners(config), new Set(this.sockets.keys()), this.acceptor);
    let tunneled: { listener: string; address: string; ports: number }[];
    let udpSwap: () => void;
    try {
      tunneled = await this.tunnels.apply(config);
      udpSwap = await this.udp.reload(config);
    } catch (err) {
      for (const b of bound) b.close();
      throw err;
    }
    const next = new Runtime(
      config,
      this.log,
      this.recorder,
      this.deadlines,
      this.recordingsFor(config),
      this.tunnels,
    );
    if (next.recordings) await next.recordings.ready();
    next.adopt(this.runtime);
    const old = this.runtime;
    this.runtime = next;
    old.stop();
    next.start();
    this.admission.setLimits(config.limits);
    if (config.limits.rejectLogIntervalMs !== old.config.limits.rejectLogIntervalMs) this.startTallies();
    for (const b of bound) this.addSocket(b);
    logListening(this.log, bound);
    for (const run of tunneled) this.log.info(run, 'listening');
    udpSwap();
    // The firewall points at the new sockets before the old ones close (a tproxy port change).
    await beforeClosing();
    for (const [key, b] of this.sockets) {
      const owner = owners.get(key);
      if (owner !== undefined) {
        b.listener = owner; // an address may be kept under a renamed listener
        continue;
      }
      b.close();
      this.sockets.delete(key);
      this.log.info({ listener: b.listener, address: b.address }, 'stopped listening');
    }
    this.fitToOpenFiles();
  }

  /**
   * Stops accepting, lets open flows finish within graceMs, closes the rest. What the kernel
   * had queued on the listeners is accepted first and recorded as `shutdown`: closing a
   * listener resets those connections, which their clients saw accepted.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    // Node's listeners: libuv accepts in its poll phase (here one connection per loop turn),
    // so turn the loop until two turns in a row brought none: each queue is drained through
    // onConnection. Bounded: a flood that keeps the queues full must not hold the stop.
    if (!this.relay) {
      const until = Date.now() + DRAIN_MS;
      for (let quiet = 0; quiet < 2 && Date.now() < until; ) {
        const before = this.connections;
        await new Promise((r) => setImmediate(r));
        quiet = this.connections === before ? quiet + 1 : 0;
      }
    }
    // The relay's: unlisten() accepts and reports the queue before it closes the socket.
    for (const b of this.sockets.values()) b.close();
    this.sockets.clear();
    this.tunnels.stopAccepting();
    this.udp.stop();
    this.runtime.stop();
    const deadline = Date.now() + this.config.limits.graceMs;
    while (this.open.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    for (const flow of this.open.values()) flow.finish('shutdown');
    this.tunnels.close();
    this.relay?.destroy();
    this.recordings?.stop();
    if (this.tallyTimer) clearInterval(this.tallyTimer);
    this.flushTallies();
  }

  private addSocket(b: BoundSocket): void {
    this.sockets.set(b.key, b);
  }

  private flushTallies(): void {
    for (const e of this.admission.drain(this.config.events.sensor, newEventId)) this.recorder.record(e);
    for (const e of this.udp.drainTallies(this.config.events.sensor)) this.recorder.record(e);
  }

  private readonly onConnection = (socket: net.Socket, bound: BoundSocket): void => {
    this.connections++;
    socket.on('error', () => socket.destroy()); // until the flow takes over
    const listener = this.runtime.listener(bound.listener);
    const remote = socket.remoteAddress;
    const srcIp = remote ? socketIp(remote) : null;
    const src = srcIp ? { ip: srcIp, port: socket.remotePort ?? 0 } : null;
    const dst =
      (listener?.originalDst ? natDestination(socket) : null) ?? bound.local ?? localAddress(socket);
    this.accept(socket, bound, src, dst);
  };

  private readonly onRelayAccept = (
    conn: RelayConn,
    bound: BoundSocket,
    src: Address,
    dst: Address | null,
    shed: boolean,
  ) => {
    this.accept(conn, bound, src, dst ?? bound.local ?? { ip: '', port: 0 }, shed);
  };

  /** Descriptors ran out (an accept, a dial): new flows wait until some close (Admission.fdExhausted). */
  private fdExhausted(): void {
    this.admission.fdExhausted();
  }

  private lastAcceptWarning = 0;

  /**
   * Node's listener failed to accept. Out of descriptors, libuv has already accepted and
   * closed what was queued (its own reserve descriptor), without telling us who it was.
   */
  private readonly onAcceptError = (err: NodeJS.ErrnoException, bound: BoundSocket): void => {
    const exhausted = isFdExhaustion(err);
    if (exhausted) this.fdExhausted();
    const now = Date.now();
    if (now - this.lastAcceptWarning < 10_000) return;
    this.lastAcceptWarning = now;
    this.log.warn(
      { code: 'HG_ERR_LISTEN', listener: bound.listener, address: bound.address, err: err.message },
      exhausted
        ? 'out of file descriptors: connections queued on this listener were closed unrecorded; ' +
            'new flows are refused as fd-exhausted until some close (raise LimitNOFILE= or ulimit -n)'
        : `cannot accept more connections (${err.message})`,
    );
  };

  /**
   * A new connection from either acceptor; `src` null: reset before we accepted it. `shed`:
   * accepted on the relay's reserve descriptor when descriptors ran out.
   */
  private accept(
    client: net.Socket | RelayConn,
    bound: BoundSocket,
    src: Address | null,
    dst: Address,
    shed = false,
  ): void {
    const listenerName = bound.listener;
    const rt = this.runtime;
    const listener = rt.listener(listenerName);
    if (!listener) {
      if (client instanceof net.Socket)
        client.destroy(); // a listener being removed
      else client.close(true);
      return;
    }
    if (this.stopping) {
      // Queued in the kernel when the stop came (the listeners' last accepts): recorded, closed.
      const flow = new Flow(client, listener, rt, src ?? { ip: '', port: 0 }, dst);
      return flow.finish('shutdown', 'queued when honeygate stopped: closed unserved');
    }
    if (!src) {
      // Reset before Node accepted it (nmap -sT does this): libuv's accept() does not return
      // the peer address and getpeername() now fails, so the source is unknown. Still a flow.
      const flow = new Flow(client, listener, rt, { ip: '', port: 0 }, dst);
      flow.route = routeWithoutPeek(flow, rt.config.routes);
      flow.action = flow.route?.action.type ?? null;
      return flow.finish('client-reset', 'reset before accept; source address unavailable');
    }
    // A proxy peer speaks for many attackers: their per-source limits wait for its header.
    const viaProxyPeer = listener.acceptProxy !== null && anyContains(listener.acceptProxy.from, src.ip);
    const refusal = shed
      ? 'fd-exhausted'
      : (this.admission.checkGlobal() ?? (viaProxyPeer ? null : this.admission.checkSource(src.ip)));
    if (refusal) {
      this.admission.refused(src.ip, refusal, listenerName, dst);
      if (client instanceof net.Socket) client.resetAndDestroy();
      else client.close(true);
      return;
    }
    const flow = new Flow(client, listener, rt, src, dst);
    // Before anything can end it: a crash from here on leaves this start line behind.
    const journal = this.recorder.journal;
    if (journal) flow.journaled = journal.start(flow.id, flow.openedAt, listenerName, src, dst);
    const slot = this.open.add(flow);
    flow.defer(() => {
      this.open.remove(slot, flow);
      // A dial that found no descriptor (forward.ts): new flows wait for open ones to close.
      if (flow.closeReason === 'fd-exhausted') this.fdExhausted();
    });
    flow.defer(this.admission.hold());
    if (!viaProxyPeer) flow.defer(this.admission.holdSource(src.ip));
    // Synchronous unless a stage must wait for the attacker's bytes (PROXY header, peek):
    // the common flow leaves no promise behind.
    try {
      const waiting = listener.acceptProxy ? this.afterHeader(flow, viaProxyPeer) : this.dispatch(flow);
      waiting?.catch((err) => this.failed(flow, err));
    } catch (err) {
      this.failed(flow, err);
    }
  }

  /**
   * A hub's tunneled stream (src/tunnel/hub.ts), its PROXY v2 header read: admitted per
   * attacker source (not per sensor), then routed like any flow. A stream whose header was
   * bad is recorded under the sensor's name and ends. Returns the flow, or null.
   */
  private readonly onTunneled: OnTunneled = (stream, listenerName, start) => {
    const rt = this.runtime;
    const listener = rt.listener(listenerName);
    if (!listener) {
      stream.destroy();
      return null;
    }
    if (!start.ok) {
      const flow = new Flow(stream, listener, rt, start.peer, { ip: '', port: 0 });
      flow.sensor = start.sensor;
      if (start.bytes.length > 0) flow.received(start.bytes); // evidence
      flow.finish(start.reason, start.detail);
      return null;
    }
    const refusal = this.stopping
      ? 'limit-global'
      : (this.admission.checkGlobal() ?? this.admission.checkSource(start.src.ip));
    if (refusal) {
      this.admission.refused(start.src.ip, refusal, listenerName, start.dst);
      stream.resetAndDestroy();
      return null;
    }
    const flow = new Flow(stream, listener, rt, start.src, start.dst, start.id ?? undefined);
    flow.sensor = start.sensor;
    flow.peer = start.peer;
    flow.proxyHeader = 'v2';
    if (start.claimed !== null && start.claimed !== start.sensor)
      flow.detail = `the stream names sensor "${start.claimed}"; its certificate ${start.sensor}`;
    const journal = this.recorder.journal;
    if (journal) flow.journaled = journal.start(flow.id, flow.openedAt, listenerName, flow.src, flow.dst);
    const slot = this.open.add(flow);
    flow.defer(() => this.open.remove(slot, flow));
    flow.defer(this.admission.hold());
    flow.defer(this.admission.holdSource(flow.src.ip));
    for (const chunk of start.rest) {
      flow.received(chunk);
      flow.pending.push(chunk);
    }
    try {
      this.dispatch(flow)?.catch((err) => this.failed(flow, err));
    } catch (err) {
      this.failed(flow, err);
    }
    return flow;
  };

  private failed(flow: Flow, err: unknown): void {
    flow.log.error({ err }, 'flow failed');
    flow.finish('error', String(err));
  }

  private async afterHeader(flow: Flow, viaProxyPeer: boolean): Promise<void> {
    const { listener } = flow;
    if (!(await readProxyHeader(flow, listener.acceptProxy!, viaProxyPeer))) return;
    if (viaProxyPeer && flow.peer) {
      const refusal = this.admission.checkSource(flow.src.ip);
      if (refusal) {
        this.admission.refused(flow.src.ip, refusal, listener.name, flow.dst);
        flow.silent = true;
        flow.reset();
        return flow.finish(refusal);
      }
      flow.defer(this.admission.holdSource(flow.src.ip));
    }
    await this.dispatch(flow);
  }

  /** Routes the flow and runs its action; a promise only when routing must peek. */
  private dispatch(flow: Flow): Promise<void> | undefined {
    const routes = flow.runtime.config.routes;
    const route = routeByAddress(flow, routes);
    if (route !== NEEDS_PEEK) return act(flow, route);
    return routeAfterPeek(flow, routes).then((peeked) => act(flow, peeked));
  }
}

function act(flow: Flow, route: Route | null): undefined {
  if (flow.closed) return;
  if (!route) {
    flow.finish('no-route');
    return;
  }
  flow.route = route;
  runAction(flow, route.action);
}
