// The recorder sits between the data path and the sinks. The data path only ever
// appends to a bounded in-memory queue (no I/O, no await, no throw); a timer hands the
// queue to every sink in batches. When sinks fall behind, events are counted as dropped
// rather than letting memory grow or flows wait.
import { randomFillSync } from 'node:crypto';
import type { Logger } from 'pino';
import type { ScanConfig } from '../config/types.js';
import type { Enricher } from '../enrich/mmdb.js';
import { ScanDetector, type ScanStats } from '../scan/detector.js';
import type { FlowEvent, Sink } from './event.js';
import type { RetentionStats } from './retention.js';
import type { StartJournal } from './writeahead.js';

const WARN_INTERVAL_MS = 10_000;
/** The longest the loop sleeps, per tick, for a sink that writes only when the loop is idle. */
const CATCH_UP_MS = 1000;
/** How often the scan detector looks for tracks that ended. */
const SCAN_SWEEP_MS = 1000;

export interface RecorderOptions {
  queueSize: number; // events waiting for sinks; beyond this they are dropped
  batchMs: number; // how often the queue is handed to the sinks
  log: Logger;
  journal?: StartJournal | null; // the write-ahead of flow starts (writeahead.ts); told when batches are written
  // events.scan: detect scans in the events recorded here. Only the recorder that writes the
  // sinks (one process, or the primary of workers) detects; a worker's forwards its events.
  scan?: ScanConfig | null;
}

export interface RecorderStats {
  queued: number; // waiting for the next batch
  writing?: number; // in the batch the sinks are writing now (a store writes in slices, or on its thread)
  written: number; // handed to the sinks (each event once, whatever the sinks answered)
  dropped: number; // refused because the queue was full or the recorder closed
  sinkErrors: number; // failed sink calls (write or reopen), one per sink per batch
  store?: RetentionStats | null; // the SQLite store's retention: rows deleted, size (null: no retention)
  scan?: ScanStats; // the scan detector's sources and scans (absent where it does not run)
}

// Ids come from one random buffer refilled every 256 ids: randomBytes(16) per flow makes a
// getpid() syscall (OpenSSL's fork check) each time, and costs many times the refill.
// The first 12 hex digits are the time in ms (as in UUIDv7), so a new id lands at the end
// of the events_id index instead of at a random page: an insert writes less WAL, and appends
// keep touching the same few pages as the store grows, where random ids touch more once the
// index outgrows SQLite's cache. (Measurements: docs/performance.md.)
const RANDOM_BYTES = 10;
const idPool = Buffer.allocUnsafe(RANDOM_BYTES * 256);
let idOffset = idPool.length;
let idMs = 0;
let idPrefix = '';

/** A new flow id: 32 lowercase hex characters, time-ordered (also sent upstream as the PROXY v2 UNIQUE_ID). */
export function newEventId(): string {
  if (idOffset === idPool.length) {
    randomFillSync(idPool);
    idOffset = 0;
  }
  const now = Date.now();
  if (now !== idMs) {
    // A double to hex text goes through fmod per digit: once per ms, not per flow.
    idMs = now;
    idPrefix = now.toString(16).padStart(12, '0');
  }
  const id = idPrefix + idPool.toString('hex', idOffset, idOffset + RANDOM_BYTES);
  idOffset += RANDOM_BYTES;
  return id;
}

export class Recorder {
  private queue: FlowEvent[] = [];
  private readonly sinks: Sink[];
  private readonly queueSize: number;
  private readonly log: Logger;
  private readonly timer: NodeJS.Timeout;
  private draining: Promise<void> = Promise.resolve(); // the last batch in flight, batches run one at a time
  private busy = false;
  private writing = 0; // events of the batch in the sinks' hands
  private closing: Promise<void> | null = null;
  private written = 0;
  private dropped = 0;
  private sinkErrors = 0;
  private lastDropWarn = Number.NEGATIVE_INFINITY;
  private readonly lastSinkWarn = new Map<string, number>();
  /** The start journal, and the flows that ended since the last batch (ids and generations). */
  readonly journal: StartJournal | null;
  private endIds: string[] = [];
  private endGenerations: number[] = [];
  /**
   * events.enrich's databases (src/enrich): each batch's sources looked up before the sinks
   * see it, off the data path. Set by `run` on the recorder that holds the real sinks (not a
   * worker's); replaced on reload.
   */
  enricher: Enricher | null = null;
  private readonly scanner: ScanDetector | null;
  private lastSweep = 0;

  constructor(sinks: Sink[], opts: RecorderOptions) {
    this.scanner = opts.scan ? new ScanDetector(opts.scan) : null;
    this.sinks = [...sinks];
    this.journal = opts.journal ?? null;
    this.queueSize = Math.max(0, Math.floor(opts.queueSize));
    this.log = opts.log;
    this.timer = setInterval(() => this.tick(), Math.max(1, opts.batchMs));
    // The recorder must never be what keeps the process alive; close() flushes on shutdown.
    this.timer.unref();
  }

  /**
   * Queues one event. Called on the data path: never blocks, never throws. `generation`: the
   * journal generation of the flow this event ends (StartJournal.start), -1 for none.
   */
  record(e: FlowEvent, generation = -1): void {
    if (generation >= 0) this.settle(e.id, generation);
    if (this.scanner) {
      try {
        this.scanner.observe(e);
      } catch {
        // a malformed event must not cost the record itself
      }
    }
    if (this.closing === null && this.queue.length < this.queueSize) {
      this.queue.push(e);
      return;
    }
    this.dropped++;
    const now = Date.now();
    if (now - this.lastDropWarn >= WARN_INTERVAL_MS) {
      this.lastDropWarn = now;
      try {
        this.log.warn(
          { dropped: this.dropped, queueSize: this.queueSize },
          `event queue full: ${this.dropped} events dropped so far`,
        );
      } catch {
        // a broken logger must not break the data path
      }
    }
  }

  /** A journaled flow that ends without an event (or whose event was dropped): settled with the next batch. */
  settle(id: string, generation: number): void {
    if (generation < 0 || this.journal === null) return;
    this.endIds.push(id);
    this.endGenerations.push(generation);
  }

  /** Writes every event queued now to every sink; resolves when they have answered. */
  flush(): Promise<void> {
    const next = this.draining.then(() => this.drain());
    this.draining = next.catch(() => {}); // one bad batch must not stall every later one
    return next;
  }

  /** Asks every sink to reopen its files (SIGUSR1 after logrotate). */
  reopen(): void {
    for (const sink of this.sinks) {
      try {
        sink.reopen();
      } catch (err) {
        this.sinkFailed(sink, err, 'reopen');
      }
    }
  }

  /** Stops the timer, flushes, then closes the sinks (last opened first). Idempotent. */
  close(): Promise<void> {
    if (this.closing === null) this.closing = this.shutdown();
    return this.closing;
  }

  stats(): RecorderStats {
    return {
      queued: this.queue.length,
      writing: this.writing,
      written: this.written,
      dropped: this.dropped,
      sinkErrors: this.sinkErrors,
      ...this.storeStats(),
      ...(this.scanner ? { scan: this.scanner.stats() } : {}),
    };
  }

  /** `{ store }` when a sink runs retention, else nothing (the stats stay as they were). */
  private storeStats(): { store?: RetentionStats } {
    for (const sink of this.sinks) {
      const store = (sink as { stats?: () => RetentionStats | null }).stats?.();
      if (store) return { store };
    }
    return {};
  }

  private async shutdown(): Promise<void> {
    clearInterval(this.timer);
    // Scans still going are reported as far as they got.
    this.sweepScans(true);
    await this.flush();
    for (const sink of [...this.sinks].reverse()) {
      try {
        await sink.close();
      } catch (err) {
        this.sinkFailed(sink, err, 'close');
      }
    }
    this.journal?.close();
  }

  /** Records the scans whose tracks ended (all of them with `all`). */
  private sweepScans(all = false): void {
    if (!this.scanner) return;
    const now = Date.now();
    if (!all && now - this.lastSweep < SCAN_SWEEP_MS) return;
    this.lastSweep = now;
    for (const e of this.scanner.sweep(newEventId, now, all)) {
      if (this.queue.length < this.queueSize) this.queue.push(e);
      else this.dropped++;
    }
  }

  private tick(): void {
    this.sweepScans();
    // A sink that writes only while the loop sleeps (the store thread at idle priority) gets
    // the CPU now if it wanted it: a loop busy since the last tick would starve it.
    let answered = false;
    for (const sink of this.sinks) if (sink.catchUp?.(CATCH_UP_MS)) answered = true;
    if (this.busy) {
      // A slow sink must not stack up batches: the tick passes while one is in flight, or,
      // when it was answered just now, comes again once the answer has been taken.
      if (answered) setImmediate(() => this.tick()).unref();
      return;
    }
    if (this.queue.length === 0 && this.endIds.length === 0) return;
    void this.flush();
  }

  private async drain(): Promise<void> {
    if (this.queue.length === 0 && this.endIds.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    // The flows whose events are in this batch (or that have none): settled once it is written.
    const ids = this.endIds;
    const generations = this.endGenerations;
    this.endIds = [];
    this.endGenerations = [];
    this.busy = true;
    this.writing = batch.length;
    try {
      if (batch.length > 0 && this.enricher) {
        try {
          this.enricher.apply(batch);
        } catch {
          // apply() does not throw; a database bug must not cost a batch
        }
      }
      if (batch.length > 0) await Promise.all(this.sinks.map((sink) => this.writeTo(sink, batch)));
      this.written += batch.length;
      this.journal?.settled(ids, generations);
    } finally {
      this.busy = false;
      this.writing = 0;
    }
  }

  private async writeTo(sink: Sink, batch: FlowEvent[]): Promise<void> {
    try {
      await sink.write(batch);
    } catch (err) {
      this.sinkFailed(sink, err, 'write', batch.length);
    }
  }

  private sinkFailed(sink: Sink, err: unknown, op: string, events?: number): void {
    this.sinkErrors++;
    // A full disk fails every batch; say so once per interval per sink, with the count.
    const now = Date.now();
    if (now - (this.lastSinkWarn.get(sink.name) ?? Number.NEGATIVE_INFINITY) < WARN_INTERVAL_MS) return;
    this.lastSinkWarn.set(sink.name, now);
    try {
      this.log.warn(
        { err, sink: sink.name, op, events, sinkErrors: this.sinkErrors },
        `event sink ${sink.name} failed to ${op}`,
      );
    } catch {
      // never let logging turn a sink failure into a crash
    }
  }
}
