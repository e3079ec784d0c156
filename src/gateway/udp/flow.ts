// A UDP flow: the datagrams between one source and one destination (address and port
// each) on one listener, from the first datagram until `limits.udp.idleTimeout` passes
// with none either way. It has the TCP flow's words (route, action, backend, counts, first
// bytes, protocol) and records one event, with `transport: udp` and its datagram counts.
//
//   first datagram -> admit -> classify (that datagram) -> route -> action -> ... -> idle -> event
import { classifyDatagram } from '../../classifiers/index.js';
import type { ListenerConfig, Route } from '../../config/types.js';
import type { Address, CloseReason, FlowEvent, UdpCounts } from '../../events/event.js';
import { newEventId } from '../../events/recorder.js';
import { flowEnd, flowEvent } from '../flow.js';
import type { BoundSocket } from '../listener.js';
import type { Runtime } from '../runtime.js';
import type { Held } from './guard.js';

/** How a reply reaches the attacker: from the address and port it sent to. */
export interface Downstream {
  send(payload: Buffer, to: Address): void;
  close?(): void; // a per-flow transparent socket (tproxy): closed with the flow
}

/** Delivers one datagram received on a bound socket to the gateway. */
export type OnDatagram = (
  bound: BoundSocket,
  payload: Buffer,
  src: Address,
  dst: Address,
  downstream: () => Downstream,
) => void;

export class UdpFlow {
  readonly id = newEventId();
  readonly openedAt = Date.now();
  private readonly started = performance.now();
  lastActivity = performance.now();
  route: Route | null = null;
  action: FlowEvent['action'] = null;
  backend: string | null = null;
  server: string | null = null;
  sourceMode: string | null = null;
  bytesIn = 0;
  bytesOut = 0;
  readonly peer = null; // no PROXY header on a UDP listener
  readonly proxyHeader = null;
  readonly counts: UdpCounts = { datagramsIn: 0, datagramsOut: 0, heldDatagrams: 0, heldBytes: 0 };
  protocol: string | null = null;
  protocolFields: Record<string, unknown> | null = null;
  closeReason: CloseReason | null = null;
  detail: string | null = null;
  closed = false;
  journaled = -1;
  /** The action's per-datagram step (forward's send upstream, capture's reply); set by the action. */
  onDatagram: ((payload: Buffer) => void) | null = null;
  /** The upstream socket of a forward (a UdpBatchPort, or dgram's), closed with the flow. */
  upstream: { close(): void } | null = null;
  private first: Buffer[] = [];
  private firstLength = 0;
  private cleanups: (() => void)[] = [];
  private heldWhy: Held | null = null;

  constructor(
    readonly listener: ListenerConfig,
    readonly runtime: Runtime,
    readonly src: Address,
    readonly dst: Address,
    readonly downstream: Downstream,
  ) {}

  /** Counts one datagram from the attacker, keeps first bytes, classifies the first one. */
  received(payload: Buffer): void {
    this.lastActivity = performance.now();
    this.counts.datagramsIn++;
    this.bytesIn += payload.length;
    if (this.counts.datagramsIn === 1) {
      const v = classifyDatagram(payload);
      if ('match' in v && v.match) {
        this.protocol = v.protocol;
        this.protocolFields = v.fields;
      }
    }
    const room = this.runtime.config.limits.firstBytes - this.firstLength;
    if (room > 0) {
      // Copy: dgram's buffer is ours, but a slice would pin a larger one.
      this.first.push(Buffer.from(payload.subarray(0, room)));
      this.firstLength += Math.min(room, payload.length);
    }
  }

  /** A reply the guard let through was sent. */
  sent(bytes: number): void {
    this.lastActivity = performance.now();
    this.counts.datagramsOut++;
    this.bytesOut += bytes;
  }

  /** A reply the guard held back: counted, and the first reason kept for the event's detail. */
  held(bytes: number, why: Held): void {
    this.counts.heldDatagrams++;
    this.counts.heldBytes += bytes;
    this.heldWhy ??= why;
  }

  firstBytes(): Buffer {
    if (this.first.length > 1) this.first = [Buffer.concat(this.first)];
    return this.first[0] ?? Buffer.alloc(0);
  }

  defer(fn: () => void): void {
    this.cleanups.push(fn);
  }

  durationMs(): number {
    return Math.floor(performance.now() - this.started);
  }

  idleMs(now: number): number {
    return now - this.lastActivity;
  }

  /** Ends the flow once: releases in reverse order, closes its sockets, records the event. */
  finish(reason: CloseReason, detail?: string): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReason ??= reason;
    if (detail) this.detail ??= detail;
    if (this.heldWhy && !this.detail) {
      this.detail = `amplification guard held ${this.counts.heldDatagrams} replies (${this.counts.heldBytes} bytes; first by ${this.heldWhy})`;
    }
    for (let i = this.cleanups.length - 1; i >= 0; i--) {
      try {
        this.cleanups[i]!();
      } catch (err) {
        this.runtime.log.warn({ err, flow: this.id }, 'flow cleanup failed');
      }
    }
    this.cleanups = [];
    if (this.upstream) {
      try {
        this.upstream.close();
      } catch {
        // already closed (its error handler did)
      }
      this.upstream = null;
    }
    this.downstream.close?.();
    const event = this.toEvent();
    this.runtime.recorder.record(event, this.journaled);
    if (flowEnd.hasSubscribers) flowEnd.publish(event);
  }

  toEvent(): FlowEvent {
    return {
      ...flowEvent(this, 'flow', this.runtime.config.events.sensor),
      transport: 'udp',
      udp: { ...this.counts },
    };
  }
}
