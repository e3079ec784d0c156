// contain.sink: honeygate's listener for the TCP connections contain_sink redirects (render.ts).
// It accepts what a contained honeypot tried to open — a wget of malware, a C2 check-in, spam —
// reads its first bytes for contain.sink.hold at most, closes, and records one `egress` event
// with the original destination (SO_ORIGINAL_DST) and those bytes. Nothing is ever forwarded.
import net from 'node:net';
import type { ContainSink } from '../config/types.js';
import { blankEvent, type CloseReason, type FlowEvent } from '../events/event.js';
import { newEventId, type Recorder } from '../events/recorder.js';
import type { Logger } from '../log.js';
import { normalizeIp } from '../net/address.js';
import { originalDst, socketFd } from '../net/native.js';

/** At most this many connections held at once (the rate rule bounds it first: rate x hold). */
export const SINK_MAX_OPEN = 1024;

export interface SinkOptions {
  sink: ContainSink;
  firstBytes: number; // limits.firstBytes
  sensor: string;
}

export class EgressSink {
  private server: net.Server | null = null;
  private readonly open = new Set<net.Socket>();

  constructor(
    private opts: SinkOptions,
    private readonly log: Logger,
    private readonly recorder: Recorder,
  ) {}

  get port(): number {
    return this.opts.sink.port;
  }

  /** Listens on every local address (dual stack, or IPv4 alone without IPv6); throws when it cannot. */
  async start(): Promise<void> {
    const server = net.createServer((s) => this.accept(s));
    server.on('error', (err) => this.log.error({ code: 'HG_ERR_LISTEN' }, `contain.sink: ${err.message}`));
    const listen = (host: string) =>
      new Promise<void>((resolve, reject) => {
        const fail = (err: Error) => reject(err);
        server.once('error', fail);
        server.listen({ host, port: this.opts.sink.port, backlog: 511 }, () => {
          server.off('error', fail);
          resolve();
        });
      });
    try {
      await listen('::');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EAFNOSUPPORT' && code !== 'EADDRNOTAVAIL') throw sinkError(this.opts.sink.port, err);
      try {
        await listen('0.0.0.0');
      } catch (err4) {
        throw sinkError(this.opts.sink.port, err4);
      }
    }
    this.server = server;
    this.log.info({ port: this.opts.sink.port }, 'contain.sink listening');
  }

  /** New options; the listener moves when the port changed. */
  async reload(opts: SinkOptions): Promise<void> {
    const moved = opts.sink.port !== this.opts.sink.port;
    if (moved) await this.stop();
    this.opts = opts;
    if (moved) await this.start();
  }

  /** Closes the listener; connections still held are closed and recorded (`shutdown`). */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const s of this.open) s.emit('hg-shutdown');
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(sock: net.Socket): void {
    const openedAt = Date.now();
    const src = { ip: normalizeIp(sock.remoteAddress ?? '') ?? '', port: sock.remotePort ?? 0 };
    let dst = { ip: '', port: 0 };
    let detail: string | null = null;
    try {
      const fd = socketFd(sock);
      const o = fd === null ? null : originalDst(fd);
      if (o) dst = { ip: normalizeIp(o.host) ?? o.host, port: o.port };
      else detail = 'no original destination: conntrack does not track the connection';
    } catch (err) {
      detail = `no original destination: ${(err as Error).message}`;
    }
    const chunks: Buffer[] = [];
    let kept = 0;
    let bytesIn = 0;
    let done = false;
    const finish = (reason: CloseReason) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this.open.delete(sock);
      sock.destroy();
      this.recorder.record(
        sinkEvent({
          sensor: this.opts.sensor,
          openedAt,
          closedAt: Date.now(),
          src,
          dst,
          bytesIn,
          firstBytes: Buffer.concat(chunks),
          reason,
          detail,
        }),
      );
    };
    sock.on('error', () => finish('client-reset'));
    if (this.open.size >= SINK_MAX_OPEN) {
      detail = `the sink holds ${SINK_MAX_OPEN} connections already: closed at once`;
      finish('limit-global');
      return;
    }
    this.open.add(sock);
    const timer = setTimeout(() => finish('capture-timeout'), this.opts.sink.holdMs);
    timer.unref();
    sock.on('data', (chunk: Buffer) => {
      bytesIn += chunk.length;
      if (kept < this.opts.firstBytes) {
        const part = chunk.subarray(0, this.opts.firstBytes - kept);
        chunks.push(Buffer.from(part));
        kept += part.length;
      }
      if (kept >= this.opts.firstBytes) finish('capture-done');
    });
    sock.on('end', () => finish('capture-done'));
    sock.on('close', () => finish('capture-done'));
    sock.on('hg-shutdown', () => finish('shutdown'));
  }
}

function sinkError(port: number, cause: unknown): Error {
  return new Error(`contain.sink cannot listen on port ${port}: ${(cause as Error).message}`, { cause });
}

/** The event of one connection the sink held. */
export function sinkEvent(f: {
  sensor: string;
  openedAt: number;
  closedAt: number;
  src: { ip: string; port: number };
  dst: { ip: string; port: number };
  bytesIn: number;
  firstBytes: Buffer;
  reason: CloseReason;
  detail: string | null;
}): FlowEvent {
  return blankEvent({
    id: newEventId(),
    type: 'egress',
    openedAt: f.openedAt,
    closedAt: f.closedAt,
    sensor: f.sensor,
    listener: 'contain.sink',
    src: f.src,
    dst: f.dst,
    action: 'capture',
    bytesIn: f.bytesIn,
    closeReason: f.reason,
    firstBytes: f.firstBytes,
    protocol: 'tcp',
    protocolFields: { sink: true },
    count: 1,
    detail:
      f.detail ??
      `contained: TCP connection from honeypot ${f.src.ip} to ${f.dst.ip} port ${f.dst.port} held by the sink, ${f.bytesIn} byte${f.bytesIn === 1 ? '' : 's'} received`,
  });
}
