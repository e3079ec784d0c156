// The `events.nats` section: where a gateway publishes its events (the fleet sink), and how
// `honeygate fleet init` sets up the stream and `honeygate collect` reads it. Raw shape
// (natsSchema) and defaulted type (NatsConfig); paths resolve against the config's directory.
import { resolve } from 'node:path';
import type { z } from 'zod';
import {
  conv,
  describe,
  intIn,
  list,
  nonEmptyText,
  obj,
  parseSize,
  positiveDuration,
  text,
} from '../config/zod.js';

/** A NATS server URL: nats://, tls:// or a bare host:port (nats.js accepts all three). */
function serverUrl(v: unknown): string {
  const s = nonEmptyText(v).trim();
  if (!/^((nats|tls):\/\/)?[^\s/]+(:\d{1,5})?$/.test(s)) {
    throw new Error(`invalid NATS server ${describe(v)} (nats://HOST:PORT, tls://HOST:PORT or HOST:PORT)`);
  }
  return s;
}

/** A subject prefix: dot-separated tokens, no wildcards or spaces. */
function subjectPrefix(v: unknown): string {
  const s = text(v);
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(s)) {
    throw new Error(
      `invalid subject ${describe(v)} (dot-separated tokens of letters, digits, '_', '-'; no wildcards)`,
    );
  }
  return s;
}

/** A JetStream stream or consumer name: no spaces, dots or wildcards. */
function streamName(v: unknown): string {
  const s = text(v);
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(s)) {
    throw new Error(`invalid name ${describe(v)} (letters, digits, '_', '-'; at most 64)`);
  }
  return s;
}

/** A retention age: 30d, 12h, 90m, or 0 for none (not a timer: no 24-day cap). */
function retentionAge(v: unknown): number {
  if (v === 0 || v === '0') return 0;
  const m = typeof v === 'string' ? /^\s*(\d+)\s*(s|m|h|d)\s*$/.exec(v) : null;
  if (!m) throw new Error(`invalid age ${describe(v)} (30d, 12h, 90m, 600s, or 0 for none)`);
  return Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's' | 'm' | 'h' | 'd'];
}

const pathOrNull = (v: unknown): string | null => (v === null || v === false || v === '' ? null : text(v));

export const natsTlsSchema = obj({
  ca: conv(pathOrNull).default(null),
  cert: conv(pathOrNull).default(null),
  key: conv(pathOrNull).default(null),
});

export const natsSchema = obj({
  servers: list(serverUrl, { min: 1 }),
  stream: conv(streamName).default('HONEYGATE_EVENTS'),
  subject: conv(subjectPrefix).default('honeygate.events'),
  credentials: conv(pathOrNull).default(null),
  tls: natsTlsSchema.optional(),
  outbox: conv(text).default('./data/nats-outbox.db'),
  outboxSize: conv(intIn(1000, 100_000_000)).default(1_000_000),
  ackTimeout: conv(positiveDuration).default(5000),
  replicas: conv(intIn(1, 5)).default(1),
  maxAge: conv(retentionAge).default(30 * 86_400_000),
  maxBytes: conv(parseSize).default(10 * 1024 ** 3),
  duplicateWindow: conv(positiveDuration).default(3_600_000),
  consumer: conv(streamName).default('honeygate-collector'),
});

export interface NatsConfig {
  servers: string[];
  stream: string; // the JetStream stream `fleet init` creates and the sink publishes into
  subject: string; // prefix: each sensor publishes on SUBJECT.<sensor token>
  credentials: string | null; // a .creds file (JWT + nkey seed)
  tls: { ca: string | null; cert: string | null; key: string | null } | null;
  outbox: string; // the on-disk outbox (SQLite), absolute
  outboxSize: number; // events the outbox holds at most; beyond, the oldest are dropped (counted)
  ackTimeoutMs: number; // how long one publish waits for its JetStream acknowledgement
  replicas: number; // stream replicas (fleet init)
  maxAgeMs: number; // stream retention by age, 0 = none (fleet init)
  maxBytes: number; // stream retention by size, 0 = none (fleet init)
  duplicateWindowMs: number; // JetStream de-duplication window (fleet init)
  consumer: string; // the collectors' durable consumer
}

export function assembleNats(n: z.output<typeof natsSchema>, baseDir: string): NatsConfig {
  const at = (p: string | null) => (p === null ? null : resolve(baseDir, p));
  return {
    servers: n.servers,
    stream: n.stream,
    subject: n.subject,
    credentials: at(n.credentials),
    tls: n.tls ? { ca: at(n.tls.ca), cert: at(n.tls.cert), key: at(n.tls.key) } : null,
    outbox: resolve(baseDir, n.outbox),
    outboxSize: n.outboxSize,
    ackTimeoutMs: n.ackTimeout,
    replicas: n.replicas,
    maxAgeMs: n.maxAge,
    maxBytes: n.maxBytes,
    duplicateWindowMs: n.duplicateWindow,
    consumer: n.consumer,
  };
}

/** A sensor name as one subject token: anything but letters, digits, '_' and '-' becomes '_' (host names have dots). */
export function sensorToken(sensor: string): string {
  return sensor.replace(/[^A-Za-z0-9_-]/g, '_') || '_';
}

/** The subject a sensor publishes on. */
export function sensorSubject(cfg: Pick<NatsConfig, 'subject'>, sensor: string): string {
  return `${cfg.subject}.${sensorToken(sensor)}`;
}
