// JSON lines sink: one event per line, named after the Elastic Common Schema so that
// Filebeat (or Elastic Agent) can ship the file with no ingest pipeline. Our own fields
// live under `honeygate.*`.
//
// Writes are synchronous appends on one fd: a batch is a few kB into the page cache, and
// it makes reopen() (SIGUSR1 after logrotate renamed the file) exact: every line written
// before it is in the old file, every line after it in the new one, nothing in between.

import { closeSync, fstatSync, ftruncateSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname } from 'node:path';
import { HoneygateError } from '../errors.js';
import type { FlowEvent, Sink } from './event.js';
import { escapeBytes, safeJson } from './format.js';

const EVENT_TYPES: Record<FlowEvent['type'], string[]> = {
  flow: ['connection', 'end'],
  update: ['connection', 'info'],
  rejected: ['connection', 'denied'],
  firewall: ['change'],
  egress: ['connection', 'denied'],
};

/** One line of the file. Optional fields are left out, not null, when the event has no value. */
export interface EcsDocument {
  '@timestamp'?: string;
  event: {
    id: string;
    kind: 'event';
    category: string[];
    type: string[];
    action?: string;
    reason?: string;
    start?: string;
    end?: string;
    duration: number; // nanoseconds
    dataset: 'honeygate.flow';
  };
  observer: { name: string; type: 'honeypot-gateway' };
  source: { ip?: string; port?: number; bytes: number };
  destination: { ip?: string; port?: number; bytes: number };
  network: { transport: string; protocol?: string; bytes: number };
  honeygate: {
    type: string;
    listener: string;
    route?: string;
    backend?: string;
    server?: string;
    source_mode?: string;
    proxy_header?: string;
    peer?: { ip: string; port: number };
    first_bytes: string; // base64
    first_bytes_text: string; // printable, non-printables escaped
    protocol_fields?: Record<string, unknown>;
    count: number;
    detail?: string;
  };
}

/** Maps an event to its ECS document (nested objects; absent values are left out). */
export function toEcs(e: FlowEvent): EcsDocument {
  const at = e.closedAt ?? e.openedAt + e.durationMs; // close time, or the update's time
  const first = Buffer.isBuffer(e.firstBytes) ? e.firstBytes : Buffer.from(e.firstBytes ?? []);
  return compact<EcsDocument>({
    '@timestamp': iso(at),
    event: {
      id: e.id,
      kind: 'event',
      category: e.type === 'firewall' ? ['configuration'] : ['network'],
      type: EVENT_TYPES[e.type] ?? ['connection'],
      action: e.action ?? undefined,
      reason: e.closeReason ?? undefined,
      start: iso(e.openedAt),
      end: e.closedAt == null ? undefined : iso(e.closedAt),
      duration: Math.round(e.durationMs * 1_000_000), // ECS wants nanoseconds
      dataset: 'honeygate.flow',
    },
    observer: { name: e.sensor, type: 'honeypot-gateway' },
    // An ECS ip field must hold an IP: unknown ('') and aggregated ('*') sources are left out.
    source: { ip: ipOrUndefined(e.src.ip), port: e.src.port || undefined, bytes: e.bytesIn },
    destination: { ip: ipOrUndefined(e.dst.ip), port: e.dst.port || undefined, bytes: e.bytesOut },
    network: {
      // an egress event's protocol is its transport (tcp, udp, icmp): it has no application data
      transport: e.type === 'egress' ? (e.protocol ?? 'unknown') : 'tcp',
      protocol: e.type === 'egress' ? undefined : (e.protocol?.toLowerCase() ?? undefined),
      bytes: e.bytesIn + e.bytesOut,
    },
    honeygate: {
      type: e.type,
      listener: e.listener,
      route: e.route ?? undefined,
      backend: e.backend ?? undefined,
      server: e.server ?? undefined,
      source_mode: e.sourceMode ?? undefined,
      proxy_header: e.proxyHeader ?? undefined,
      peer: e.peer ? { ip: e.peer.ip, port: e.peer.port } : undefined,
      first_bytes: first.toString('base64'),
      first_bytes_text: escapeBytes(first),
      protocol_fields: e.protocolFields ?? undefined,
      count: e.count,
      detail: e.detail ?? undefined,
    },
  });
}

// Leaves absent values out of the document itself (not only its JSON text), one level deep.
function compact<T extends object>(doc: T): T {
  const top = doc as Record<string, unknown>;
  for (const [key, value] of Object.entries(top)) {
    if (value === undefined) delete top[key];
    else if (value && typeof value === 'object' && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value))
        if (v === undefined) delete (value as Record<string, unknown>)[k];
    }
  }
  return doc;
}

function ipOrUndefined(ip: string): string | undefined {
  return isIP(ip) ? ip : undefined;
}

function iso(ms: number): string | undefined {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

export class JsonlSink implements Sink {
  readonly name = 'jsonl';
  readonly path: string;
  private fd: number | null;

  /** Opens (creating it and its directory) `path` for appending. Throws HG_ERR_SINK. */
  constructor(path: string) {
    this.path = path;
    this.fd = this.open();
  }

  write(events: FlowEvent[]): void {
    if (events.length === 0) return;
    if (this.fd === null) this.fd = this.open(); // a failed reopen gets another chance here
    const lines = events.map((e) => line(e)).join('');
    const fd = this.fd;
    const size = fstatSync(fd).size;
    try {
      writeAll(fd, Buffer.from(lines, 'utf8'));
    } catch (err) {
      // A full disk can stop us mid-line: cut the fragment, or it would swallow the next event.
      try {
        ftruncateSync(fd, size);
      } catch {
        // nothing more to do; the error below says what failed
      }
      throw err;
    }
  }

  /** Closes and reopens the path, so lines go to the new file after logrotate moved the old one. */
  reopen(): void {
    this.closeFd();
    this.fd = this.open();
  }

  close(): void {
    this.closeFd();
  }

  private open(): number {
    try {
      mkdirSync(dirname(this.path), { recursive: true });
      return openSync(this.path, 'a', 0o640);
    } catch (err) {
      throw new HoneygateError('HG_ERR_SINK', `jsonl: cannot open ${this.path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  private closeFd(): void {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    closeSync(fd);
  }
}

function line(e: FlowEvent): string {
  try {
    return `${JSON.stringify(toEcs(e))}\n`;
  } catch {
    // protocolFields JSON cannot hold (BigInt, a cycle): keep the event, flatten that field.
    const doc = toEcs({ ...e, protocolFields: null });
    doc.honeygate.protocol_fields = JSON.parse(safeJson(e.protocolFields) ?? 'null') ?? undefined;
    return `${JSON.stringify(doc)}\n`;
  }
}

// writeSync may write less than asked (signals, quotas); loop until all is out.
function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) {
    const n = writeSync(fd, buf, off, buf.length - off);
    if (n <= 0) throw new HoneygateError('HG_ERR_SINK', 'jsonl: the file accepted no bytes');
    off += n;
  }
}
