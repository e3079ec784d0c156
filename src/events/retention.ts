// events.retention: keeps the SQLite store within an age and a size. It runs on the sink's
// own connection, on the event loop, in small steps: a step deletes at most MAX_ROWS of the
// oldest rows (by opened_at) in one transaction, then the loop is free for at least as long
// as the step took (flows, the recorder's batches) before the next one. A statement cannot
// be cut short, so the time box is kept by the batch size: a step that took longer than
// STEP_MS makes the next one smaller, a quick one makes it larger.
//
// Why not a thread of its own: SQLite has one writer at a time, so a deleting thread would
// make the sink's commit on the loop wait for its lock (busy_timeout), which is the stall we
// avoid. What does go to a thread is the WAL checkpoint (checkpointer.ts). Under `run` the
// sink's connection, and so retention with it, is itself on the store's thread
// (store-thread.ts): there the steps take turns with the batches, off the event loop.
//
// Freed pages are given back to the file system by `PRAGMA incremental_vacuum(N)`, in steps
// too; that needs auto_vacuum=INCREMENTAL, which a store gets when it is created
// (STORE_PRAGMAS). A store created before cannot switch without one full VACUUM (minutes
// on gigabytes, the store locked, twice its size on disk), which honeygate does not run on
// its own: there the freed pages are reused by new events, so the file stops growing but
// does not shrink (docs/events.md says how to convert it by hand).
//
// The rollup (rollup.ts) is trimmed after the events, in steps of its own: a bucket that
// ends at or before the oldest event left counts only deleted events, and goes. The bucket
// holding the oldest event stays (the views read that one from the events table).
import { readFileSync } from 'node:fs';
import type { Retention as Bounds } from '../config/types.js';
import type { Logger } from '../log.js';
import { DIM_SPANS, type Dim, SKETCH_SPANS, SPAN_MS, type Span } from './rollup.js';
import type { Database, Statement } from './sqlite-driver.js';

export type DeleteReason = 'max-age' | 'max-size';

export interface RetentionStats {
  deleted: Record<DeleteReason, number>; // rows deleted since start, by the bound that deleted them
  rollupDeleted: number; // rollup rows deleted since start (buckets older than the oldest event)
  storeBytes: number; // the store's size: page_count x page_size (the file, once checkpointed)
  freeBytes: number; // of which free pages, waiting for the incremental vacuum or new rows
  steps: number; // delete and vacuum steps run since start
  longestStepMs: number; // the longest of them: how long retention held the loop at once (wall clock)
  longestStepCpuMs: number; // the most CPU time of one step (this thread's), free of a busy machine's waits
  slowSteps: number; // steps over SLOW_STEP_CPU_MS of CPU: a page read on a VM whose disk I/O counts as CPU, a GC pause
}

export interface RetentionOptions {
  log?: Logger;
  intervalMs?: number; // how often the bounds are checked (a pass runs until they hold)
  stepMs?: number; // the time box of one step
  held?: () => boolean; // while true the connection is in the sink's transaction (a sliced write): steps wait
  now?: () => number; // the clock of maxAge (tests)
}

// Hourly source rows not yet summed into their days (rollup.ts foldSteps) stay until they are.
const UNFOLDED = " AND bucket < (SELECT until FROM rollup_folded WHERE dim = 'src')";
const INTERVAL_MS = 10_000;
const STEP_MS = 5;
const MIN_ROWS = 10;
const MAX_ROWS = 500; // rows deleted by one step, at most
const SLOW_STEP_CPU_MS = 50;
const MAX_PAGES = 256; // pages one vacuum step moves, at most
// Trimming for size stops a little under the bound, so that a store at its bound is not
// trimmed again by every check.
const LOW_WATER = 0.98;

export class StoreRetention {
  private readonly db: Database;
  private readonly bounds: Bounds;
  private readonly log: Logger | undefined;
  private readonly intervalMs: number;
  private readonly stepMs: number;
  private readonly held: () => boolean;
  private readonly now: () => number;
  private readonly deleteOlder: Statement;
  private readonly deleteOldest: Statement;
  private readonly oldest: Statement;
  private readonly rollupTrims: { span: Span; del: Statement }[];
  private readonly pageSize: number;
  private readonly incremental: boolean;
  private readonly deleted: Record<DeleteReason, number> = { 'max-age': 0, 'max-size': 0 };
  private rollupDeleted = 0;
  private rows = 100;
  private pages = 64;
  private timer: NodeJS.Timeout | null = null;
  private pass: Promise<void> | null = null;
  private closed = false;
  private pageCount = 0;
  private freePages = 0;

  constructor(db: Database, path: string, bounds: Bounds, opts: RetentionOptions = {}) {
    this.db = db;
    this.bounds = bounds;
    this.log = opts.log;
    this.intervalMs = opts.intervalMs ?? INTERVAL_MS;
    this.stepMs = opts.stepMs ?? STEP_MS;
    this.held = opts.held ?? (() => false);
    this.now = opts.now ?? Date.now;
    // The oldest rows first, through the opened_at index; seq (the rowid) makes the delete cheap.
    this.deleteOlder = db.prepare(
      'DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE opened_at < ? ORDER BY opened_at LIMIT ?)',
    );
    this.deleteOldest = db.prepare(
      'DELETE FROM events WHERE seq IN (SELECT seq FROM events ORDER BY opened_at LIMIT ?)',
    );
    this.oldest = db.prepare('SELECT opened_at AS t FROM events ORDER BY opened_at LIMIT 1');
    // Per span and dimension (the primary key's order): the oldest buckets' rows, a step's worth.
    this.rollupTrims = (Object.entries(DIM_SPANS) as [Dim, readonly Span[]][]).flatMap(([dim, spans]) =>
      spans.map((span) => ({
        span,
        del: db.prepare(
          `DELETE FROM rollup WHERE (span, dim, bucket, value) IN (
             SELECT span, dim, bucket, value FROM rollup
             WHERE span = '${span}' AND dim = '${dim}' AND bucket < ?${dim === 'src' && span === 'h' ? UNFOLDED : ''}
             ORDER BY bucket LIMIT ?)`,
        ),
      })),
    );
    // The distinct sources' sketches (rollup.ts SKETCH_SPANS), the same way.
    for (const [dim, spans] of Object.entries(SKETCH_SPANS)) {
      for (const span of spans) {
        this.rollupTrims.push({
          span,
          del: db.prepare(
            `DELETE FROM rollup_sketch WHERE (span, dim, bucket, value) IN (
               SELECT span, dim, bucket, value FROM rollup_sketch
               WHERE span = '${span}' AND dim = '${dim}' AND bucket < ? ORDER BY bucket LIMIT ?)`,
          ),
        });
      }
    }
    this.pageSize = db.pragma('page_size') as number;
    this.incremental = (db.pragma('auto_vacuum') as number) === 2;
    this.measure();
    if (!this.incremental) {
      this.log?.warn(
        { store: path },
        `event store ${path} was created without incremental vacuum: retention frees its pages for new events, but the file does not shrink (docs/events.md: converting a store)`,
      );
    }
  }

  /** Checks the bounds on the next turn of the loop (not inside the caller's start-up), then every interval. */
  start(): void {
    if (this.timer || this.closed) return;
    this.timer = setInterval(() => void this.run(), this.intervalMs);
    this.timer.unref();
    setTimeout(() => {
      if (!this.closed) void this.run();
    }, 0).unref();
  }

  /** One pass: deletes until both bounds hold, then vacuums. Resolves when done (a pass already running: that one). */
  run(): Promise<void> {
    if (this.pass) return this.pass;
    this.pass = this.trim()
      .catch((err) => {
        // A full disk or a reader's lock: the next check tries again.
        this.log?.warn({ err }, `event store retention failed: ${(err as Error).message}`);
      })
      .finally(() => {
        this.pass = null;
      });
    return this.pass;
  }

  stats(): RetentionStats {
    return {
      deleted: { ...this.deleted },
      rollupDeleted: this.rollupDeleted,
      storeBytes: this.pageCount * this.pageSize,
      freeBytes: this.freePages * this.pageSize,
      steps: this.steps,
      longestStepMs: this.longestStepMs,
      longestStepCpuMs: this.longestStepCpuMs,
      slowSteps: this.slowSteps,
    };
  }

  /** Stops after the current step; the connection stays the caller's. */
  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private async trim(): Promise<void> {
    const { maxAgeMs, maxBytes } = this.bounds;
    if (maxAgeMs !== null) {
      const cutoff = this.now() - maxAgeMs;
      while (!this.closed) {
        if (!(await this.free())) break;
        const asked = this.rows;
        if (this.step('max-age', () => this.deleteOlder.run([cutoff, asked])) < asked) break;
        await this.pause();
      }
    }
    if (maxBytes !== null && !this.closed) {
      this.measure();
      if (this.usedBytes() > maxBytes) {
        const target = Math.floor(maxBytes * LOW_WATER);
        while (!this.closed && this.usedBytes() > target) {
          if (!(await this.free())) break;
          const asked = this.rows;
          if (this.step('max-size', () => this.deleteOldest.run([asked])) === 0) break; // nothing left
          this.measure();
          await this.pause();
        }
      }
    }
    await this.trimRollup();
    await this.vacuum();
    if (!this.closed) this.measure();
  }

  /** Deletes the rollup's buckets that end at or before the oldest event left (all of them in an empty store). */
  private async trimRollup(): Promise<void> {
    const oldest = (this.oldest.get() as { t: number } | undefined)?.t;
    const until = oldest === undefined ? this.now() : Number(oldest);
    for (const { span, del } of this.rollupTrims) {
      // bucket + span <= until: the bucket ends before the oldest event.
      const cutoff = until - SPAN_MS[span] + 1;
      while (!this.closed) {
        if (!(await this.free())) break;
        const asked = this.rows;
        const t0 = this.clock();
        const n = del.run([cutoff, asked]).changes;
        this.rows = this.resize(this.rows, this.since(t0), MIN_ROWS, MAX_ROWS);
        this.rollupDeleted += n;
        if (n < asked) break;
        await this.pause();
      }
    }
  }

  /** Runs one delete, counts its rows, and sizes the next step after this one's time. */
  private step(reason: DeleteReason, del: () => { changes: number }): number {
    const t0 = this.clock();
    const n = del().changes;
    this.deleted[reason] += n;
    this.rows = this.resize(this.rows, this.since(t0), MIN_ROWS, MAX_ROWS);
    return n;
  }

  /** Gives the free pages back to the file system, MAX_PAGES at most per step. */
  private async vacuum(): Promise<void> {
    if (!this.incremental || this.closed) return;
    this.measure();
    while (!this.closed && this.freePages > 0) {
      if (!(await this.free())) break;
      const t0 = this.clock();
      this.db.exec(`PRAGMA incremental_vacuum(${this.pages})`);
      this.pages = this.resize(this.pages, this.since(t0), 16, MAX_PAGES);
      const before = this.freePages;
      this.measure();
      if (this.freePages >= before) break; // nothing moved: leave it to the next pass
      await this.pause();
    }
  }

  private clock(): { wall: number; cpu: number } {
    return { wall: performance.now(), cpu: threadCpuMs() };
  }

  /** A step's wall time (what sizes the next step), and its CPU time for the stats. */
  private since(t0: { wall: number; cpu: number }): number {
    const cpuMs = threadCpuMs() - t0.cpu;
    if (cpuMs > this.longestStepCpuMs) this.longestStepCpuMs = cpuMs;
    if (cpuMs > SLOW_STEP_CPU_MS) this.slowSteps++;
    return performance.now() - t0.wall;
  }

  /** Grows a quick step by a quarter (a row's cost varies: doubling overshot), shrinks a slow one in proportion to its overrun. */
  private resize(size: number, ms: number, min: number, max: number): number {
    this.lastStepMs = ms;
    this.steps++;
    if (ms > this.longestStepMs) this.longestStepMs = ms;
    if (ms < this.stepMs / 2) return Math.min(max, Math.ceil(size * 1.25));
    if (ms > this.stepMs) return Math.max(min, Math.floor((size * this.stepMs) / ms));
    return size;
  }

  private lastStepMs = 0;
  private steps = 0;
  private longestStepMs = 0;
  private longestStepCpuMs = 0;
  private slowSteps = 0;

  /** Yields the loop for as long as the last step held it (at least 1 ms): half of the time at most is ours. */
  private pause(): Promise<void> {
    const ms = Math.min(100, Math.max(1, Math.ceil(this.lastStepMs)));
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  /**
   * Waits while the connection is in the sink's transaction (`held`); false once closed. The
   * caller's step must follow at once: nothing may come between the check and it.
   */
  private async free(): Promise<boolean> {
    while (this.held() && !this.closed) await new Promise((resolve) => setTimeout(resolve, 1));
    return !this.closed;
  }

  private measure(): void {
    this.pageCount = this.db.pragma('page_count') as number;
    this.freePages = this.db.pragma('freelist_count') as number;
  }

  private usedBytes(): number {
    return (this.pageCount - this.freePages) * this.pageSize;
  }
}

/**
 * This thread's CPU time, ms: /proc/thread-self/schedstat, so the checkpoint thread's and GC
 * helpers' work during a step on a busy machine is not counted as the step's; the process's
 * time where that file is missing.
 */
function threadCpuMs(): number {
  try {
    return Number(readFileSync('/proc/thread-self/schedstat', 'latin1').split(' ')[0]) / 1e6;
  } catch {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  }
}
