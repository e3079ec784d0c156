// A batched datagram socket over the addon's UdpPort (native/udp.cc): datagrams come in
// recvmmsg batches, one JS call per batch, and go out in sendmmsg batches. send() only
// queues; every port with queued datagrams is flushed once, in a microtask after the
// current batch's JS, so a batch of datagrams in makes one sendmmsg per socket out, where
// Node's dgram makes a syscall and a callback per datagram each way.
//
// On EAGAIN the rest stays queued until the socket is writable again, as dgram's would, but
// only up to MAX_QUEUED_BYTES: past that a datagram is dropped and reported to onError as
// ENOBUFS (dgram's queue has no bound, and a reply flood toward a full socket would grow it
// without end). A datagram the kernel refuses for another reason (an ICMP error queued on a
// connected socket, EPERM from a firewall) is skipped and reported to onError; the rest of
// the queue still goes.

import type { Address } from '../../events/event.js';
import { type NativeUdpPort, type UdpBatch, udpPort } from '../../net/native.js';

const EAGAIN = 11;
const EWOULDBLOCK = EAGAIN;
const ENOBUFS = 105;
const EINVAL = 22;
const MAX_QUEUED_BYTES = 4 * 1024 * 1024; // per socket: a few socket buffers' worth

const dirty = new Set<UdpBatchPort>();
let scheduled = false;

function flushAll(): void {
  scheduled = false;
  for (const port of dirty) port.flush();
  dirty.clear();
}

export class UdpBatchPort {
  private readonly native: NativeUdpPort;
  private payloads: Buffer[] = [];
  private hosts: string[] | null;
  private ports: number[] | null;
  private start = 0;
  private queuedBytes = 0;
  private waiting = false;
  private closed = false;

  /**
   * Owns fd from here on. connected: the socket has one peer (udpConnect): datagrams go to
   * it and come without addresses. onError: a datagram the kernel refused, with its errno.
   */
  constructor(
    fd: number,
    onBatch: UdpBatch,
    connected: boolean,
    private readonly onError: (errno: number) => void = () => {},
  ) {
    this.hosts = connected ? null : [];
    this.ports = connected ? null : [];
    this.native = udpPort(fd, onBatch, () => this.writable(), !connected);
  }

  /** Queues payload for `to` (ignored on a connected port); it leaves after this batch's JS. */
  send(payload: Buffer, to?: Address): void {
    if (this.closed) return;
    if (this.queuedBytes + payload.length > MAX_QUEUED_BYTES) {
      this.onError(ENOBUFS);
      return;
    }
    this.queuedBytes += payload.length;
    this.payloads.push(payload);
    if (this.hosts) {
      this.hosts.push(to!.ip);
      this.ports!.push(to!.port);
    }
    if (this.waiting) return;
    dirty.add(this);
    if (!scheduled) {
      scheduled = true;
      queueMicrotask(flushAll);
    }
  }

  /** Sends what is queued, in batches, until done or the socket is full. */
  flush(): void {
    while (!this.closed && !this.waiting && this.start < this.payloads.length) {
      let r: number;
      try {
        r = this.native.send(this.payloads, this.start, this.hosts, this.ports);
      } catch {
        r = -EINVAL; // a "Usage:" from the addon (an address it cannot parse): skip that datagram
      }
      if (r > 0) {
        for (let i = this.start; i < this.start + r; i++) this.queuedBytes -= this.payloads[i]!.length;
        this.start += r;
      } else if (r === -EAGAIN || r === -EWOULDBLOCK || r === -ENOBUFS) {
        this.waiting = true;
        this.native.waitWritable();
        return;
      } else {
        this.queuedBytes -= this.payloads[this.start]!.length;
        this.start++; // refused: skipped, the rest still go
        this.onError(-r);
      }
    }
    if (this.start >= this.payloads.length) this.reset();
  }

  private reset(): void {
    this.payloads = [];
    this.queuedBytes = 0;
    if (this.hosts) {
      this.hosts = [];
      this.ports = [];
    }
    this.start = 0;
  }

  private writable(): void {
    this.waiting = false;
    this.flush();
  }

  /** Sends what it still can, then closes the socket. */
  close(): void {
    if (this.closed) return;
    if (!this.waiting) this.flush();
    this.closed = true;
    dirty.delete(this);
    this.reset();
    this.native.close();
  }
}
