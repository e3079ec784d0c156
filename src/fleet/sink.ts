// The `nats` sink: the recorder hands it batches (off the data path, like every sink); it
// encodes them as messages of many events (codec.ts), appends those to its on-disk outbox and
// returns. A publisher loop of its own sends the outbox, oldest first, to JetStream with each
// message's id (Nats-Msg-Id), and deletes what the stream acknowledged. While the broker is away the outbox holds the events, and the
// loop retries every second; a dead connection only delays, it never blocks a flow or a batch.
import type { JetStreamClient } from '@nats-io/jetstream';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { FlowEvent, Sink } from '../events/event.js';
import { encodeEvents } from './codec.js';
import { type NatsConfig, sensorSubject } from './config.js';
import { connectNats } from './connect.js';
import { Outbox } from './outbox.js';

/** Messages in flight at once (published, acknowledgement awaited): up to 4 MiB of events. */
const WINDOW = 64;
const RETRY_MS = 1000;
const WARN_INTERVAL_MS = 10_000;

export interface NatsSinkStats {
  published: number; // events sent to the broker (a retry counts again)
  acknowledged: number; // events the stream acknowledged (stored, or a duplicate it already had)
  duplicates: number; // of those, acknowledged as duplicates (a retry of a stored message)
  outbox: number; // events waiting in the outbox
  oldestAgeMs: number; // how long the oldest waiting event has waited; 0 when none
  overflowed: number; // events deleted unsent because the outbox was full
  connected: boolean;
}

/** The nats sinks open in this process, for the metrics (src/admin/metrics.ts). */
export const openNatsSinks = new Set<NatsSink>();

export class NatsSink implements Sink {
  readonly name = 'nats';
  private readonly outbox: Outbox;
  private readonly subject: string;
  private readonly sensor: string;
  private nc: NatsConnection | null = null;
  private js: JetStreamClient | null = null;
  private closed = false;
  private wake: (() => void) | null = null;
  private readonly loop: Promise<void>;
  private published = 0;
  private acknowledged = 0;
  private duplicates = 0;
  private lastWarn = Number.NEGATIVE_INFINITY;
  private away = false;

  /** Opens the outbox (throws HG_ERR_SINK) and starts connecting in the background. `owner`: see Outbox. */
  constructor(
    private readonly cfg: NatsConfig,
    sensor: string,
    private readonly log: Logger,
    createDirectory = false,
    owner: { uid: number; gid: number } | null = null,
  ) {
    this.outbox = new Outbox(cfg.outbox, cfg.outboxSize, createDirectory, owner);
    this.subject = sensorSubject(cfg, sensor);
    this.sensor = sensor;
    if (this.outbox.length > 0) {
      this.log.info(
        { outbox: this.outbox.length, path: cfg.outbox },
        'nats: events from an earlier run wait in the outbox',
      );
    }
    openNatsSinks.add(this);
    this.loop = this.run();
  }

  /** Appends the batch to the outbox (one transaction) and wakes the publisher. Never waits on the broker. */
  write(events: FlowEvent[]): void {
    const dropped = this.outbox.append(encodeEvents(events, this.sensor));
    if (dropped > 0) {
      this.warn(
        { overflowed: this.outbox.overflowed, outboxSize: this.cfg.outboxSize },
        `nats: outbox full (${this.cfg.outboxSize} events): ${this.outbox.overflowed} oldest events dropped unsent so far`,
      );
    }
    this.wake?.();
  }

  reopen(): void {}

  /** Stops publishing after the messages in flight, closes the connection and the outbox (what is left waits for the next start). */
  async close(): Promise<void> {
    if (this.closed) return;
    // One last chance for the final batch while connected: up to the ack timeout.
    const deadline = Date.now() + this.cfg.ackTimeoutMs;
    while (this.nc && !this.away && this.outbox.length > 0 && Date.now() < deadline) {
      this.wake?.();
      await new Promise((r) => setTimeout(r, 20));
    }
    this.closed = true;
    this.wake?.();
    await this.nc?.close().catch(() => {});
    await this.loop;
    openNatsSinks.delete(this);
    if (this.outbox.length > 0) {
      this.log.warn(
        { outbox: this.outbox.length, path: this.cfg.outbox },
        'nats: events left in the outbox for the next start',
      );
    }
    this.outbox.close();
  }

  stats(): NatsSinkStats {
    const oldest = this.outbox.oldestQueuedAt;
    return {
      published: this.published,
      acknowledged: this.acknowledged,
      duplicates: this.duplicates,
      outbox: this.outbox.length,
      oldestAgeMs: oldest === null ? 0 : Math.max(0, Date.now() - oldest),
      overflowed: this.outbox.overflowed,
      connected: this.nc !== null && !this.away,
    };
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      if (!this.nc) {
        try {
          this.nc = await connectNats(this.cfg, `honeygate ${this.subject}`);
          this.js = jetstream(this.nc, { timeout: this.cfg.ackTimeoutMs });
          this.watch(this.nc);
          this.log.info({ server: this.nc.getServer(), subject: this.subject }, 'nats: connected');
          this.away = false;
        } catch (err) {
          this.brokerAway(err);
          await this.sleep(RETRY_MS);
          continue;
        }
      }
      if (this.outbox.length === 0) {
        await this.sleep(RETRY_MS);
        continue;
      }
      const sent = await this.publishSome();
      if (!sent) await this.sleep(RETRY_MS);
    }
  }

  /** Publishes up to WINDOW of the oldest messages at once; deletes the acknowledged ones. False when none got through. */
  private async publishSome(): Promise<boolean> {
    const js = this.js!;
    const rows = this.outbox.peek(WINDOW);
    for (const r of rows) this.published += r.n;
    const results = await Promise.allSettled(
      rows.map((r) => js.publish(this.subject, r.data, { msgID: r.msgId, timeout: this.cfg.ackTimeoutMs })),
    );
    const acked: typeof rows = [];
    let failure: unknown = null;
    results.forEach((res, i) => {
      if (res.status === 'fulfilled') {
        acked.push(rows[i]!);
        this.acknowledged += rows[i]!.n;
        if (res.value.duplicate) this.duplicates += rows[i]!.n;
      } else failure ??= res.reason;
    });
    this.outbox.remove(acked);
    if (failure) {
      this.brokerAway(failure);
      return acked.length > 0;
    }
    if (this.away) {
      this.away = false;
      this.log.info({ outbox: this.outbox.length }, 'nats: publishing again');
    }
    return true;
  }

  private watch(nc: NatsConnection): void {
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') this.brokerAway(new Error(`disconnected from ${s.server}`));
        else if (s.type === 'reconnect') this.log.info({ server: s.server }, 'nats: reconnected');
      }
    })().catch(() => {});
  }

  private brokerAway(err: unknown): void {
    if (this.closed) return;
    this.away = true;
    this.warn(
      { err: (err as Error)?.message ?? String(err), outbox: this.outbox.length, servers: this.cfg.servers },
      `nats: broker unreachable; ${this.outbox.length} events wait in the outbox`,
    );
  }

  private warn(fields: Record<string, unknown>, msg: string): void {
    const now = Date.now();
    if (now - this.lastWarn < WARN_INTERVAL_MS) return;
    this.lastWarn = now;
    try {
      this.log.warn(fields, msg);
    } catch {
      // a broken logger must not stop the publisher
    }
  }

  /** Waits `ms`, or less when write() or close() wakes it. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      t.unref();
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake = () => {
        this.wake = null;
        done();
      };
    });
  }
}
