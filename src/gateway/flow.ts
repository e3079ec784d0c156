// A flow: one accepted connection from accept to close, and the context every stage fills
// in. Its states, in order (a flow may skip to closed from any of them):
//
//   accepted -> [header: inbound PROXY] -> [peek: protocol] -> routed -> acting -> closed
//
// Every byte the attacker sends through Node goes through `received()`, so counters and
// first bytes are right whichever stage read them; a flow the native relay forwards gets
// them from the relay (its counters while open, its first bytes at the end).
import diagnostics from 'node:diagnostics_channel';
import type net from 'node:net';
import { Duplex } from 'node:stream';
import { classify, completeFields } from '../classifiers/index.js';
import type { ListenerConfig, Route } from '../config/types.js';
import type { Address, CloseReason, FlowEvent } from '../events/event.js';
import { newEventId } from '../events/recorder.js';
import type { Logger } from '../log.js';
import { socketFd } from '../net/native.js';
import type { Recording } from '../record/store.js';
import type { RelayConn, RelayEnd, RelayOwner } from './relay.js';
import type { Runtime } from './runtime.js';

/** Published with the final FlowEvent of every flow; free when nobody subscribes. */
export const flowEnd = diagnostics.channel('honeygate:flow:end');

const NOTHING_BEFORE = Object.freeze({ bytesIn: 0, bytesOut: 0, first: Buffer.alloc(0) });

/** Socket errors an attacker or honeypot causes by resetting; they end a flow, they are not faults. */
function isReset(err: NodeJS.ErrnoException): boolean {
  return err.code === 'ECONNRESET' || err.code === 'EPIPE' || err.code === 'ECONNABORTED';
}

/** The 'error' handler for one side of a flow: a reset ends it as `<side>-reset`, anything else as an error. */
export function failOn(flow: Flow, side: 'client' | 'server') {
  return (err: NodeJS.ErrnoException): void => {
    const reason: CloseReason = isReset(err) ? `${side}-reset` : 'error';
    flow.finish(reason, reason === 'error' ? `${side}: ${err.message}` : undefined);
  };
}

export class Flow implements RelayOwner {
  readonly id: string;
  readonly openedAt = Date.now();
  private readonly started = performance.now(); // monotonic, as a double: no BigInt per flow
  src: Address;
  dst: Address;
  peer: Address | null = null;
  proxyHeader: FlowEvent['proxyHeader'] = null;
  route: Route | null = null;
  action: FlowEvent['action'] = null;
  backend: string | null = null;
  server: string | null = null;
  sourceMode: string | null = null;
  bytesIn = 0;
  bytesOut = 0;
  protocol: string | null = null;
  protocolFields: Record<string, unknown> | null = null;
  closeReason: CloseReason | null = null;
  detail: string | null = null;
  closed = false;
  /** Attacker bytes read by an earlier stage and not yet handed to the action. */
  pending: Buffer[] = [];
  private first: Buffer[] = [];
  private firstLength = 0;
  private logger: Logger | null = null;
  private cleanups: (() => void)[] = [];
  /** Set when the flow must leave no flow event (admission counts it instead). */
  silent = false;
  /** The session recording, when the route or backend records (src/record/); Node copies such flows. */
  recording: Recording | null = null;
  /** The start journal's generation of this flow's start line (src/events/writeahead.ts); -1: none. */
  journaled = -1;
  /** A hub's tunneled flow: the sensor's name from its certificate (the event's `sensor`). */
  sensor: string | null = null;

  /** The attacker's socket once Node has it; until then the relay holds it (`conn`). */
  private socket: net.Socket | null = null;
  conn: RelayConn | null = null;
  /** What Node counted before handing the flow back to the relay (handBack). */
  private relayBase: { bytesIn: number; bytesOut: number; first: Buffer } = NOTHING_BEFORE;

  constructor(
    client: net.Socket | RelayConn,
    readonly listener: ListenerConfig,
    readonly runtime: Runtime,
    src: Address,
    dst: Address,
    id?: string, // a tunneled flow keeps its sensor's id (src/tunnel/hub.ts)
  ) {
    this.id = id ?? newEventId();
    this.src = src;
    this.dst = dst;
    // Not the relay's: a socket, or a tunnel's stream dressed as one (src/tunnel/session.ts).
    if (client instanceof Duplex) {
      this.adopt(client);
    } else {
      this.conn = client;
      client.owner = this;
    }
  }

  /** The attacker's socket; a flow the relay holds is handed to Node on first use. */
  get downstream(): net.Socket {
    return this.socket ?? this.adopt(this.conn!.take());
  }

  /** True while the relay holds the attacker's socket (it can still forward natively). */
  get relayed(): boolean {
    return this.socket === null;
  }

  private adopt(socket: net.Socket): net.Socket {
    this.socket = socket;
    socket.removeAllListeners('error');
    socket.on('error', failOn(this, 'client'));
    socket.setNoDelay(true);
    return socket;
  }

  /**
   * Gives a flow Node has read from (a peek, a PROXY header) back to the relay, so that
   * forward copies it natively; its pending bytes go to the server first. False (the flow
   * stays Node's) without a relay, or when Node still owes the attacker bytes.
   */
  handBack(): boolean {
    const socket = this.socket;
    const relay = this.conn?.relay;
    if (!socket || !relay || socket.destroyed || socket.writableLength > 0) return false;
    const fd = socketFd(socket);
    const conn = fd === null ? null : relay.adopt(fd);
    if (!conn) return false;
    // Bytes Node read past the pause are payload too.
    for (let chunk = socket.read() as Buffer | null; chunk; chunk = socket.read() as Buffer | null) {
      this.received(chunk);
      this.pending.push(chunk);
    }
    this.relayBase = { bytesIn: this.bytesIn, bytesOut: this.bytesOut, first: this.firstBytes() };
    socket.removeAllListeners();
    socket.on('error', () => {});
    socket.destroy(); // closes Node's fd only: the relay's duplicate keeps the connection
    this.socket = null;
    this.conn = conn;
    conn.owner = this;
    return true;
  }

  /** The byte caps left for the relay, after what Node already counted. */
  relayCaps(limits: { firstBytes: number; maxBytesIn: number; maxBytesOut: number }) {
    const left = (cap: number, used: number) => (cap > 0 ? Math.max(1, cap - used) : 0);
    return {
      firstBytes: Math.max(0, limits.firstBytes - this.relayBase.first.length),
      maxBytesIn: left(limits.maxBytesIn, this.relayBase.bytesIn),
      maxBytesOut: left(limits.maxBytesOut, this.relayBase.bytesOut),
    };
  }

  /** Ends the attacker's connection with a reset (a refused or rejected flow). */
  reset(): void {
    if (this.socket) this.socket.resetAndDestroy();
    else this.conn!.close(true);
  }

  /** The relay's counters of a flow it forwards (the deadline sweep reads them). */
  syncCounters(): void {
    const c = this.socket ? null : this.conn!.counters();
    if (!c) return;
    this.bytesIn = this.relayBase.bytesIn + c[0];
    this.bytesOut = this.relayBase.bytesOut + c[1];
  }

  /** Node's first bytes (before a handBack), then the relay's. */
  private relayFirst(fromRelay: Buffer | null): Buffer {
    const base = this.relayBase.first;
    return fromRelay ? (base.length ? Buffer.concat([base, fromRelay]) : fromRelay) : base;
  }

  private setRelayFirst(fromRelay: Buffer | null): void {
    const all = this.relayFirst(fromRelay);
    this.first = all.length ? [all] : [];
    this.firstLength = all.length;
  }

  /** The relay ended the flow (RelayOwner). */
  relayEnded(end: RelayEnd): void {
    this.bytesIn = this.relayBase.bytesIn + end.bytesIn;
    this.bytesOut = this.relayBase.bytesOut + end.bytesOut;
    this.setRelayFirst(end.firstBytes);
    this.finish(end.reason, end.detail ?? undefined);
  }

  /** A child logger carrying the flow id, made on first use (most flows never log). */
  get log(): Logger {
    this.logger ??= this.runtime.log.child({ flow: this.id, src: `${this.src.ip}:${this.src.port}` });
    return this.logger;
  }

  /** Counts attacker payload and keeps the first bytes for the event. */
  received(chunk: Buffer): void {
    this.bytesIn += chunk.length;
    const room = this.runtime.config.limits.firstBytes - this.firstLength;
    if (room > 0) {
      const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
      // Copy: the chunk's memory may be a slice of a larger pooled buffer.
      this.first.push(Buffer.from(part));
      this.firstLength += part.length;
    }
  }

  firstBytes(): Buffer {
    // An open relayed flow (an update event): the relay has the rest.
    if (!this.socket && !this.closed) return this.relayFirst(this.conn!.firstBytes());
    if (this.first.length > 1) this.first = [Buffer.concat(this.first)];
    return this.first[0] ?? Buffer.alloc(0);
  }

  /** Registers a release step; finish() runs them in reverse order of registration. */
  defer(fn: () => void): void {
    this.cleanups.push(fn);
  }

  /** Ends the flow once: releases what stages acquired, closes the attacker's socket, records the event. */
  finish(reason: CloseReason, detail?: string): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReason ??= reason;
    if (detail) this.detail ??= detail;
    for (let i = this.cleanups.length - 1; i >= 0; i--) {
      try {
        this.cleanups[i]!();
      } catch (err) {
        this.log.warn({ err }, 'flow cleanup failed');
      }
    }
    this.cleanups = [];
    this.recording?.close();
    if (this.socket) {
      if (!this.socket.destroyed) this.socket.destroy();
    } else if (!this.conn!.closed) {
      // Ended from JS (a timeout, shutdown): take the relay's counts before it forgets the flow.
      this.syncCounters();
      this.setRelayFirst(this.conn!.firstBytes());
      this.conn!.close();
    }
    if (this.silent) {
      this.runtime.recorder.settle(this.id, this.journaled);
      return;
    }
    if (this.protocol === null && this.bytesIn > 0) {
      const v = classify(this.firstBytes(), true);
      if ('match' in v && v.match) {
        this.protocol = v.protocol;
        this.protocolFields = v.fields;
      }
    } else if (this.bytesIn > 0) {
      // What the peek could not see yet (an SSH client's KEXINIT): from the first bytes.
      this.protocolFields = completeFields(this.protocol, this.protocolFields, () => this.firstBytes());
    }
    const event = this.toEvent('flow');
    this.runtime.recorder.record(event, this.journaled);
    if (flowEnd.hasSubscribers) flowEnd.publish(event);
  }

  takePending(): Buffer[] {
    const p = this.pending;
    this.pending = [];
    return p;
  }

  durationMs(): number {
    return Math.floor(performance.now() - this.started);
  }

  toEvent(type: 'flow' | 'update'): FlowEvent {
    const event = flowEvent(this, type, this.sensor ?? this.runtime.config.events.sensor);
    if (this.recording) event.recording = this.recording.id;
    return event;
  }
}

/** What a flow gives its event: a TCP Flow, or a UDP flow (udp/flow.ts). */
export interface EventFields {
  readonly id: string;
  readonly openedAt: number;
  readonly listener: ListenerConfig;
  readonly src: Address;
  readonly dst: Address;
  readonly peer: Address | null;
  readonly proxyHeader: FlowEvent['proxyHeader'];
  readonly route: Route | null;
  readonly action: FlowEvent['action'];
  readonly backend: string | null;
  readonly server: string | null;
  readonly sourceMode: string | null;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly closeReason: CloseReason | null;
  readonly protocol: string | null;
  readonly protocolFields: Record<string, unknown> | null;
  readonly detail: string | null;
  durationMs(): number;
  firstBytes(): Buffer;
}

/** The event of a flow that ends (`flow`) or goes on (`update`: not closed, no close reason). */
export function flowEvent(f: EventFields, type: 'flow' | 'update', sensor: string): FlowEvent {
  return {
    id: f.id,
    type,
    openedAt: f.openedAt,
    closedAt: type === 'flow' ? Date.now() : null,
    sensor,
    listener: f.listener.name,
    src: f.src,
    dst: f.dst,
    peer: f.peer,
    proxyHeader: f.proxyHeader,
    route: f.route?.name ?? null,
    action: f.action,
    backend: f.backend,
    server: f.server,
    sourceMode: f.sourceMode,
    bytesIn: f.bytesIn,
    bytesOut: f.bytesOut,
    durationMs: f.durationMs(),
    closeReason: type === 'flow' ? f.closeReason : null,
    firstBytes: f.firstBytes(),
    protocol: f.protocol,
    protocolFields: f.protocolFields,
    count: 1,
    detail: f.detail,
  };
}
