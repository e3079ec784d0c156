// The native relay stage (native/relay.cc, over the epoll core in native/relay_core.cc).
// With the addon, the relay accepts on every listener's socket, so a flow costs no
// net.Socket until a stage needs its bytes in JS (an inbound PROXY header, a protocol
// peek, capture): then take() hands the socket to Node. A flow forwarded without that is
// dialed and copied by the relay too; JS keeps every decision and the Flow record, and
// hears back in batches.
//
// HONEYGATE_RELAY=off keeps everything in Node (the lever's "before" in bench/).
import net from 'node:net';
import type { Endpoint } from '../config/types.js';
import { HoneygateError } from '../errors.js';
import type { Address, CloseReason } from '../events/event.js';
import type { Logger } from '../log.js';
import { socketIp } from '../net/address.js';
import {
  createRelay,
  type NativeRelay,
  nativeAvailable,
  type RelayBoundary,
  relayBoundary,
} from '../net/native.js';
import type { BoundSocket } from './listener.js';
import { IdTable } from './live.js';

/** Whether listeners go through the relay: the addon loads and HONEYGATE_RELAY is not "off". */
export function relayWanted(): boolean {
  return process.env.HONEYGATE_RELAY !== 'off' && nativeAvailable().ok;
}

export interface RelayEnd {
  reason: CloseReason;
  bytesIn: number;
  bytesOut: number;
  firstBytes: Buffer | null;
  detail: string | null;
}

export interface DialPlan {
  header: Buffer | null; // sent before the attacker's bytes (PROXY protocol)
  local: Address | null; // connect from here (transparent: the attacker's ip:port)
  transparent: boolean;
}

/** Who hears, once, that the relay ended a flow itself (a close, a reset, a cap): the Flow. */
export interface RelayOwner {
  relayEnded(end: RelayEnd): void;
}

/** One accepted connection the relay holds. */
export class RelayConn {
  closed = false;
  /**
   * An object, not a closure: a closure made per flow in the Flow's constructor kept whole
   * flows alive through two scavenges, so each was promoted (docs/performance.md, the
   * latency tail: 434-476 B promoted per flow with it, 192-241 B with this).
   */
  owner: RelayOwner | null = null;
  /** The port the last dial went out from when the plan's local port was taken; 0: as planned. */
  fromPort = 0;
  private dial: { done: (err: Error | null) => void; server: Endpoint; timeoutMs: number } | null = null;

  constructor(
    readonly relay: Relay,
    readonly id: number,
  ) {}

  /** The attacker's socket as a paused net.Socket; the relay lets go of it. */
  take(): net.Socket {
    const fd = this.relay.native.take(this.id);
    this.forget();
    if (fd < 0) throw new HoneygateError('HG_ERR_NATIVE', `relay: flow ${this.id} is not waiting`);
    // pauseOnCreate: as net.Server's pauseOnConnect, nothing is read before a stage asks.
    const options = { fd, allowHalfOpen: true, readable: true, writable: true, pauseOnCreate: true };
    return new net.Socket(options);
  }

  /** Ends the flow from JS: FIN (or RST) to the attacker, the honeypot's socket closed. */
  close(reset = false): void {
    if (this.closed) return;
    this.relay.native.close(this.id, reset);
    this.forget();
  }

  /**
   * Dials the server in the relay and, once connected, relays both ways there. `done` is
   * called once: with null when connected, else with HG_ERR_UPSTREAM_CONNECT (the flow then
   * waits again: another server, or a fallback). A callback, not a promise: this runs for
   * every flow, and a promise with its async caller cost 2.5 KB of garbage per flow.
   */
  forward(
    server: Endpoint,
    plan: DialPlan,
    timeoutMs: number,
    caps: { firstBytes: number; maxBytesIn: number; maxBytesOut: number },
    done: (err: Error | null) => void,
  ): void {
    if (this.closed) return done(new Error('flow closed'));
    // The dial spec: numbers written in place (no object per flow), strings as arguments.
    const { dial: spec, dialFields: at } = this.relay;
    spec[at.port] = server.port;
    spec[at.localPort] = plan.local?.port ?? 0;
    spec[at.transparent] = plan.transparent ? 1 : 0;
    spec[at.mark] = 0;
    spec[at.timeoutMs] = timeoutMs;
    spec[at.firstCap] = caps.firstBytes;
    spec[at.maxIn] = caps.maxBytesIn;
    spec[at.maxOut] = caps.maxBytesOut;
    const error = this.relay.native.forward(this.id, server.host, plan.local?.ip ?? null, plan.header);
    if (error !== undefined) return done(connectError(server, error));
    // The relay overwrites localPort with the port it fell back to (native/relay.cc).
    this.fromPort = spec[at.localPort] !== (plan.local?.port ?? 0) ? spec[at.localPort]! : 0;
    this.dial = { done, server, timeoutMs };
  }

  /** bytesIn and bytesOut so far, or null once the relay no longer has the flow. */
  counters(): readonly [number, number] | null {
    if (this.closed || !this.relay.native.counters(this.id)) return null;
    return [this.relay.counters[0]!, this.relay.counters[1]!];
  }

  /** The attacker's first bytes so far, or null once the relay no longer has the flow. */
  firstBytes(): Buffer | null {
    return this.closed ? null : this.relay.native.firstBytes(this.id);
  }

  dialed(error: string | null): void {
    const dial = this.dial;
    this.dial = null;
    if (!dial) return;
    if (error === null) return dial.done(null);
    dial.done(
      connectError(dial.server, error === 'timeout' ? `no answer within ${dial.timeoutMs} ms` : error),
    );
  }

  forget(): void {
    this.closed = true;
    this.relay.conns.delete(this.id);
    this.dialed('flow closed');
  }
}

/** inet_ntop()'s text as honeygate writes addresses: IPv4 (v4-mapped ones included) as is. */
function canonical(text: string): string {
  return text.includes(':') ? (socketIp(text) ?? text) : text;
}

function connectError(server: Endpoint, why: string): HoneygateError {
  return new HoneygateError('HG_ERR_UPSTREAM_CONNECT', `${server.host}:${server.port}: ${why}`);
}

/** `shed`: accepted on the reserve descriptor because descriptors ran out: end it at once. */
export type OnRelayAccept = (
  conn: RelayConn,
  bound: BoundSocket,
  src: Address,
  dst: Address | null,
  shed: boolean,
) => void;

/** An accept or dial error that means this process (EMFILE) or the host (ENFILE) is out of descriptors. */
export function isFdExhaustion(err: unknown): boolean {
  for (let e = err as (Error & { code?: string; cause?: unknown }) | undefined, i = 0; e && i < 4; i++) {
    if (e.code === 'EMFILE' || e.code === 'ENFILE') return true;
    if (typeof e.message === 'string' && /\bE[MN]FILE\b/.test(e.message)) return true;
    e = e.cause as typeof e;
  }
  return typeof err === 'string' && /\bE[MN]FILE\b/.test(err);
}

export class Relay {
  readonly native: NativeRelay;
  readonly counters = new Float64Array(2);
  /** forward()'s dial spec, at dialFields' indexes (native/boundary.h's DialField). */
  readonly dial: Float64Array;
  readonly dialFields: RelayBoundary['dial'];
  readonly conns = new IdTable<RelayConn>();
  private readonly bound = new Map<number, BoundSocket>();
  private nextTag = 1;
  private lastAcceptWarning = 0;
  /** The listener tag whose next accepted record took the reserve descriptor (native/relay.cc). */
  private shedNext = -1;
  private readonly records: RelayBoundary['records'];
  private readonly closeReasons: RelayBoundary['closeReasons'];

  constructor(
    private readonly onAccept: OnRelayAccept,
    private readonly log: Logger,
    private readonly onFdExhausted: () => void = () => {},
  ) {
    const boundary = relayBoundary();
    ({ records: this.records, closeReasons: this.closeReasons, dial: this.dialFields } = boundary);
    this.dial = new Float64Array(boundary.dial.length);
    this.native = createRelay(this.onRecords, this.counters, this.dial);
  }

  /** Accepts on fd for `bound` from now on; returns the tag that unlisten() takes. */
  listen(fd: number, bound: BoundSocket, flags: number): number {
    const tag = this.nextTag++;
    this.native.listen(fd, tag, flags);
    this.bound.set(tag, bound);
    return tag;
  }

  /** A flow Node holds, taken back (its socket's fd is duplicated); null when that fails. */
  adopt(fd: number): RelayConn | null {
    const id = this.native.adopt(fd);
    if (id < 0) return null;
    const conn = new RelayConn(this, id);
    this.conns.add(conn);
    return conn;
  }

  /**
   * Closes the listening socket; flows it accepted go on. The connections the kernel had
   * queued on it are accepted and reported first (onAccept runs for each before this returns).
   */
  unlisten(tag: number): void {
    this.native.unlisten(tag);
    this.bound.delete(tag);
  }

  destroy(): void {
    for (const conn of this.conns.values()) conn.forget();
    this.native.destroy();
  }

  // The records' layout is native/relay.cc's header comment, their tags native/boundary.h's.
  // Each record's numbers and strings are consumed before it is acted on: a throw must not
  // desynchronize the rest.
  private readonly onRecords = (n: Float64Array, s: string[], firsts: Buffer | null): void => {
    let i = 0;
    let k = 0; // the next string
    const tags = this.records;
    while (i < n.length) {
      const type = n[i]!;
      const id = n[i + 1]!; // the listener's tag in acceptFailed
      try {
        if (type === tags.accepted) {
          const bound = this.bound.get(n[i + 2]!);
          const src = { ip: canonical(s[k++]!), port: n[i + 3]! };
          const dstPort = n[i + 4]!;
          const dst = dstPort >= 0 ? { ip: canonical(s[k++]!), port: dstPort } : null;
          i += 5;
          const shed = this.shedNext === n[i - 3]!;
          this.shedNext = -1;
          const conn = new RelayConn(this, id);
          this.conns.add(conn);
          if (!bound)
            conn.close(true); // its listener closed in this very batch
          else this.onAccept(conn, bound, src, dst, shed);
        } else if (type === tags.dialed) {
          i += 2;
          this.conns.get(id)?.dialed(null);
        } else if (type === tags.dialFailed) {
          const message = s[k++]!;
          i += 2;
          this.conns.get(id)?.dialed(message);
        } else if (type === tags.finished) {
          const start = n[i + 5]!;
          const end: RelayEnd = {
            reason: this.closeReasons[n[i + 2]!] ?? 'error',
            bytesIn: n[i + 3]!,
            bytesOut: n[i + 4]!,
            firstBytes: start >= 0 && firsts ? firsts.subarray(start, n[i + 6]!) : null,
            detail: n[i + 7] === 1 ? s[k++]! : null,
          };
          i += 8;
          const conn = this.conns.get(id);
          if (conn) {
            // The flow ends first (closed: it must not close the relay's flow again), then a
            // dial still waiting hears that the flow closed, not that the server failed.
            conn.closed = true;
            conn.owner?.relayEnded(end);
            conn.forget();
          }
        } else if (type === tags.acceptFailed) {
          const message = s[k++]!;
          i += 2;
          if (isFdExhaustion(message)) {
            this.shedNext = id;
            this.onFdExhausted();
          }
          this.acceptFailed(this.bound.get(id), message);
        } else {
          throw new Error(`relay: unknown record ${type}`);
        }
      } catch (err) {
        // One flow's failure must not lose the rest of the batch; an unknown record would.
        this.log.error({ err }, 'relay record failed');
        if (!Object.values(tags).includes(type)) return;
      }
    }
  };

  private acceptFailed(bound: BoundSocket | undefined, message: string): void {
    const now = Date.now();
    if (now - this.lastAcceptWarning < 10_000) return;
    this.lastAcceptWarning = now;
    this.log.warn(
      { code: 'HG_ERR_LISTEN', listener: bound?.listener, address: bound?.address },
      isFdExhaustion(message)
        ? `out of file descriptors (${message}): new flows are refused as fd-exhausted until some close (raise LimitNOFILE= or ulimit -n)`
        : `cannot accept more connections (${message}); retrying every 100 ms`,
    );
  }
}
